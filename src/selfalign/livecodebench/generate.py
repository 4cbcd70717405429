"""LiveCodeBench samples from a checkpoint, any scenario, through the same serving path as every
generation stage: one request per item (in item order; self repair: per failing sample) with
``n`` choices.

Sampling defaults are LiveCodeBench's runner's (``lcb_runner/runner/parser.py``: n = 10,
temperature 0.2, top_p 0.95, max_tokens 2000, stop ``###``). The prompt is LiveCodeBench's for
StarCoder2-Instruct (``lcb``), or that text inside the release's SC2-Instruct template with a
fenced-code response prefix for the code scenarios (``sc2-instruct``). One samples line per
request, its fields first (``question_id``; ``id`` for the prediction scenarios)::

    {"question_id": "...", "completions": ["<answer>", ...], "finish_reasons": ["stop", ...]}

A request the server refuses keeps its line, with no completions and an ``error`` (scored as
failures, never dropped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..generation.client import (
    CompletionRequest,
    CompletionResult,
    SamplingParams,
    one_record_per_request,
    run_generation,
)
from ..prompt_template import SC2_INSTRUCT_PROMPT
from ..provenance import model_dir_digest
from ..records import JsonObj
from ..runtime import StageStats
from ..serving import ServingSettings, serve

LCB_GENERATE_VERSION = 1
FORMATS = ("lcb", "sc2-instruct")


@dataclass(frozen=True)
class LcbGenParams:
    format: str = "lcb"
    max_tokens: int = 2000
    temperature: float = 0.2
    top_p: float = 0.95
    n: int = 10
    stop: tuple[str, ...] = ("###",)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown LiveCodeBench prompt format {self.format!r}: expected one of {FORMATS}")
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError("n > 1 samples need temperature > 0 (greedy choices are all the same)")
        object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def sampling(self) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature,
                              top_p=self.top_p if self.temperature > 0 else 1.0, n=self.n, seed=self.seed,
                              stop=self.stop)


def wrap(text: str, fmt: str, response: str = "```python\n") -> str:
    """The prompt text one request sends: LiveCodeBench's, or it inside the SC2-Instruct
    template with ``response`` as the response's start."""
    if fmt == "sc2-instruct":
        return SC2_INSTRUCT_PROMPT.format(instruction=text.rstrip(), response=response)
    return text


def sample_record(ident: JsonObj, result: CompletionResult, fmt: str, response: str = "```python\n") -> JsonObj:
    """One samples line; with ``sc2-instruct`` the response's start (an opened fence for the code
    scenarios) is put back in front of each completion, so extraction sees the whole answer."""
    if not result.ok:
        return {**ident, "completions": [], "finish_reasons": [], "error": result.error}
    prefix = response if fmt == "sc2-instruct" else ""
    return {**ident, "completions": [prefix + text for text, _ in result.choices],
            "finish_reasons": [reason for _, reason in result.choices]}


def generate_prompts(
    prompts: Sequence[tuple[JsonObj, str]],
    out: str | os.PathLike[str],
    settings: ServingSettings,
    params: LcbGenParams,
    *,
    scenario: str,
    response: str = "```python\n",
    fingerprint: JsonObj | None = None,
    model_dir: str | Path | None = None,
    server_log: Path | None = None,
    base_url: str | None = None,
    show_progress: bool = True,
) -> StageStats:
    """Write ``out``: one line per (fields, LiveCodeBench prompt) in order, its ``n`` completions
    after the fields; resumable like every generation stage."""
    sampling = params.sampling()
    requests = [CompletionRequest(index=i, id=json.dumps(ident, sort_keys=True),
                                  prompt=wrap(text, params.format, response), params=sampling)
                for i, (ident, text) in enumerate(prompts)]
    make_record = one_record_per_request(lambda request, result: sample_record(
        prompts[request.index][0], result, params.format, response))
    value = {
        "version": LCB_GENERATE_VERSION,
        "scenario": scenario,
        **(fingerprint or {}),
        "params": params.to_dict(),
        "model": [str(model_dir or settings.model.name), settings.model.revision],
        "model_files": model_dir_digest(model_dir),
    }
    with serve(settings, model_dir=model_dir, log_path=server_log, base_url=base_url) as url:
        stats = run_generation(lambda: requests, out, settings.client_params(url), make_record,
                               fingerprint_value=value, desc=f"livecodebench {scenario}", show_progress=show_progress)
    stats.extra.update({"items": len(prompts)})
    stats.check_balance()
    return stats
