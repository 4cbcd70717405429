"""LiveCodeBench code-generation samples from a checkpoint, through the same serving path as every
generation stage: one request per problem (in problem order) with ``n`` choices.

Sampling defaults are LiveCodeBench's runner's (``lcb_runner/runner/parser.py``: n = 10,
temperature 0.2, top_p 0.95, max_tokens 2000, stop ``###``). The prompt is LiveCodeBench's for
StarCoder2-Instruct (``lcb``), or that text inside the release's SC2-Instruct template with a
fenced-code response prefix (``sc2-instruct``). One samples line per problem::

    {"question_id": "...", "completions": ["<answer>", ...], "finish_reasons": ["stop", ...]}

A request the server refuses keeps its line, with no completions and an ``error`` (scored as
failures, never dropped).
"""

from __future__ import annotations

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
from ..records import JsonObj, sha256_file
from ..runtime import StageStats
from ..serving import ServingSettings, serve
from .codegen import Problem, build_prompt

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


def prompt_for(problem: Problem, fmt: str) -> str:
    """The prompt text one request sends."""
    text = build_prompt(problem)
    if fmt == "sc2-instruct":
        return SC2_INSTRUCT_PROMPT.format(instruction=text.rstrip(), response="```python\n")
    return text


def lcb_requests(problems: Sequence[Problem], params: LcbGenParams) -> list[CompletionRequest]:
    sampling = params.sampling()
    return [CompletionRequest(index=i, id=p.question_id, prompt=prompt_for(p, params.format), params=sampling)
            for i, p in enumerate(problems)]


def sample_record(problem: Problem, result: CompletionResult, fmt: str) -> JsonObj:
    """One samples line; with ``sc2-instruct`` the response prefix (an opened fence) is put back
    in front of each completion, so the code block is whole for extraction."""
    record: JsonObj = {"question_id": problem.question_id}
    if not result.ok:
        return {**record, "completions": [], "finish_reasons": [], "error": result.error}
    prefix = "```python\n" if fmt == "sc2-instruct" else ""
    return {**record, "completions": [prefix + text for text, _ in result.choices],
            "finish_reasons": [reason for _, reason in result.choices]}


def generate_lcb_samples(
    problems: Sequence[Problem],
    out: str | os.PathLike[str],
    settings: ServingSettings,
    params: LcbGenParams,
    *,
    problem_files: Sequence[str | Path] = (),
    model_dir: str | Path | None = None,
    server_log: Path | None = None,
    base_url: str | None = None,
    show_progress: bool = True,
) -> StageStats:
    """Write ``out``: one samples line per problem, resumable like every generation stage."""
    requests = lcb_requests(problems, params)
    make_record = one_record_per_request(lambda request, result: sample_record(problems[request.index], result,
                                                                               params.format))
    value = {
        "version": LCB_GENERATE_VERSION,
        "problems": [p.question_id for p in problems],
        "files": [sha256_file(f) for f in problem_files],
        "params": params.to_dict(),
        "model": [str(model_dir or settings.model.name), settings.model.revision],
        "model_files": model_dir_digest(model_dir),
    }

    def run(url: str) -> StageStats:
        return run_generation(lambda: requests, out, settings.client_params(url), make_record,
                              fingerprint_value=value, desc="livecodebench codegeneration", show_progress=show_progress)

    with serve(settings, model_dir=model_dir, log_path=server_log, base_url=base_url) as url:
        stats = run(url)
    stats.extra.update({"problems": len(problems)})
    stats.check_balance()
    return stats
