"""Samples for EvalPlus from a checkpoint, through the same serving path as generation.

One greedy completion per task (512 new tokens, stop at ``\\n```````), the upstream text-to-code
prompt (:mod:`selfalign.evaluation.prompts`), sent with
:func:`selfalign.generation.client.run_generation` to the server the config names (vLLM on a
GPU, the CPU server in the tiny profile, or a running endpoint). Output is EvalPlus's samples
format, one line per task in dataset order::

    {"task_id": "HumanEval/0", "solution": "<code EvalPlus runs>", "completion": "<raw text>",
     "finish_reason": "stop"}

``solution`` is what upstream scored: for HumanEval the (stripped) task prompt the response
prefix repeated plus the completion up to its first fence; for MBPP the completion up to its
first fence. A request the server refuses keeps its line with an empty ``solution`` and an
``error`` (scored as a failure, counted in the sidecar): a task never silently disappears.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import check_params
from ..generation.client import (
    CompletionRequest,
    CompletionResult,
    SamplingParams,
    one_record_per_request,
    run_generation,
)
from ..provenance import model_dir_digest
from ..records import JsonObj
from ..runtime import StageStats
from ..serving import ServingSettings, serve
from .benchmarks import EVALPLUS, benchmark
from .prompts import EVAL_STOP, completion_code, eval_prompt

log = logging.getLogger(__name__)

#: Bump when how samples are built from completions changes: stale resumable parts are dropped.
EVAL_GENERATE_VERSION = 1

DATASETS = EVALPLUS  # the registry's EvalPlus benchmarks


@dataclass(frozen=True)
class EvalParams:
    """The ``evaluation:`` section: which releases, how to sample, how much to score."""

    humaneval_version: str = "v0.1.9"
    mbpp_version: str = "v0.1.0"
    max_tokens: int = 512
    temperature: float = 0.0
    limit: int | None = None  # first N tasks of each dataset (tiny profile); null = all
    mirrors: Sequence[str] = ()
    cache_dir: str = "~/.cache/selfalign/benchmarks"
    sandbox: Mapping[str, Any] = field(default_factory=dict)  # the scorer's (evaluation.score)
    prepend_bos: bool = True
    """The release's generation path (``llm_wrapper.py``: ``EncodingConfig(add_bos=True)``)
    put the tokenizer's BOS before every eval prompt, when the tokenizer has one; the
    completions API sends text, so the BOS token's text goes in front (see :func:`bos_prefix`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mirrors", tuple(self.mirrors))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalParams:
        check_params(cls, data, "evaluation")  # types and bounds: the schema's
        return cls(**data)

    def version(self, dataset: str) -> str:
        """The release of ``dataset`` this config asks for (its registry row names the key)."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
        key = benchmark(dataset).version_param
        if key is None:
            raise ValueError(f"{dataset}: the registry names no evaluation key for its release")
        return str(getattr(self, key))

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, n=1, stop=EVAL_STOP
        )


def load_tasks(dataset: str, params: EvalParams) -> list[JsonObj]:
    """The pinned release's tasks, cut to ``params.limit``."""
    loader = benchmark(dataset).hook("loader")
    tasks: list[JsonObj] = loader(dataset, params.version(dataset), params.mirrors, params.cache_dir).tasks
    return tasks if params.limit is None else tasks[: params.limit]


def eval_requests(
    dataset: str, tasks: Sequence[Mapping[str, Any]], sampling: SamplingParams, prefix: str = ""
) -> list[CompletionRequest]:
    prompt = benchmark(dataset).hook("prompt")
    return [
        CompletionRequest(index=i, id=str(task["task_id"]), prompt=prefix + prompt(dataset, task).text,
                          params=sampling)
        for i, task in enumerate(tasks)
    ]


def bos_prefix(tokenizer: Any) -> str:
    """The text to put before a prompt so the server's tokens start with one BOS, as the
    release's did: nothing for a tokenizer without a BOS (the release's rule) or one that adds
    it itself; else the BOS token's text, which must encode to exactly the BOS id."""
    bos_id = tokenizer.bos_token_id
    if bos_id is None or tokenizer.bos_token is None:
        return ""
    if list(tokenizer("a")["input_ids"])[:1] == [bos_id]:
        return ""  # the server's tokenizer adds it (add_special_tokens, as vLLM's default)
    ids = list(tokenizer(tokenizer.bos_token, add_special_tokens=False)["input_ids"])
    if ids != [bos_id]:
        raise ValueError(f"the BOS token {tokenizer.bos_token!r} encodes to {ids}, not [{bos_id}]")
    return str(tokenizer.bos_token)


def load_bos_prefix(model: str | os.PathLike[str], revision: str | None) -> str:
    from transformers import AutoTokenizer

    return bos_prefix(AutoTokenizer.from_pretrained(str(model), revision=revision))


def sample_record(dataset: str, task: Mapping[str, Any], result: CompletionResult) -> JsonObj:
    """One EvalPlus sample from one completion (see the module docstring)."""
    if not result.ok:
        return {"task_id": task["task_id"], "solution": "", "completion": "", "finish_reason": None,
                "error": result.error}
    text, finish_reason = result.choices[0]
    code = completion_code(text)
    prompt = eval_prompt(dataset, task)
    if dataset == "humaneval":
        # the response prefix ends with the task prompt: the model continues inside it
        solution = prompt.response_prefix.split("```python\n", 1)[1] + code
    else:
        solution = code
    return {"task_id": task["task_id"], "solution": solution, "completion": text,
            "finish_reason": finish_reason}


def generate_samples(
    dataset: str,
    out: str | os.PathLike[str],
    settings: ServingSettings,
    params: EvalParams,
    *,
    model_dir: str | Path | None = None,
    server_log: Path | None = None,
    base_url: str | None = None,
    show_progress: bool = True,
) -> StageStats:
    """Write ``out``: one EvalPlus sample per task of ``dataset``, in dataset order."""
    tasks = load_tasks(dataset, params)
    sampling = params.sampling()
    prefix = ""
    if params.prepend_bos:
        prefix = load_bos_prefix(model_dir or settings.model.name, None if model_dir else settings.model.revision)
    requests = eval_requests(dataset, tasks, sampling, prefix)
    by_index = dict(enumerate(tasks))

    postprocess = benchmark(dataset).hook("postprocess")  # sample_record for EvalPlus

    make_record = one_record_per_request(lambda request, result: postprocess(dataset, by_index[request.index], result))

    value = {
        "version": EVAL_GENERATE_VERSION,
        "dataset": [dataset, params.version(dataset), params.limit],
        "sampling": sampling.to_json(),
        "model": [str(model_dir or settings.model.name), settings.model.revision],
        "model_files": model_dir_digest(model_dir),
        "prefix": prefix,
    }

    def run(url: str) -> StageStats:
        return run_generation(
            lambda: requests,
            out,
            settings.client_params(url),
            make_record,
            fingerprint_value=value,
            desc=f"eval {dataset}",
            show_progress=show_progress,
        )

    with serve(settings, model_dir=model_dir, log_path=server_log, base_url=base_url) as url:
        stats = run(url)
    stats.extra["dataset"] = dataset
    stats.extra["dataset_version"] = params.version(dataset)
    stats.extra["tasks"] = len(tasks)
    stats.extra["bos_prefix"] = prefix
    stats.extra["batch_invariant"] = settings.batch_invariant
    stats.check_balance()
    return stats
