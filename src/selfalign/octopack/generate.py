"""HumanEvalPack samples from a checkpoint, through the same serving path as every generation.

One request per (language, task), in language then task order, with the harness's prompt for the
task kind and format (:func:`~selfalign.octopack.humanevalpack.build_prompt`: ``octocoder``,
``instruct`` or ``sc2-instruct``), its stop words for the language, and ``n`` choices (the
server returns them in one response: OctoPack's setting is n = 20 at temperature 0.2, the
default here is greedy n = 1). The output is what :mod:`selfalign.octopack.score` reads, one
line per task::

    {"language": "python", "task_id": "Python/0", "completions": ["<text after the prompt>", ...],
     "finish_reasons": ["stop", ...]}

A request the server refuses keeps its line, with no completions and an ``error`` (scored as a
missing task: its samples fail): a task never silently disappears. For ``explainsynthesize`` the
descriptions come from an ``explaindescribe`` samples file (its first completion per task, post-
processed as the harness does): the describe step's output is the second step's only view of
the task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
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
from ..provenance import model_dir_digest
from ..records import JsonObj, RecordError, iter_jsonl, sha256_file
from ..runtime import StageStats
from ..serving import ServingSettings, serve
from .humanevalpack import (
    FORMATS,
    LANGUAGES,
    TASKS,
    Task,
    build_prompt,
    load_tasks,
    postprocess,
    stop_words,
)

log = logging.getLogger(__name__)

#: Bump when how samples are built from completions changes: stale resumable parts are dropped.
PACK_GENERATE_VERSION = 1


@dataclass(frozen=True)
class PackGenParams:
    """How HumanEvalPack samples are drawn. ``max_tokens`` bounds the new tokens (the harness
    bounds prompt and generation together, ``--max_length_generation 2048``)."""

    format: str = "octocoder"
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 0.95
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown prompt format {self.format!r}: expected one of {FORMATS}")
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError("n > 1 samples need temperature > 0 (greedy choices are all the same)")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sampling(self, language: str) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature,
                              top_p=self.top_p if self.temperature > 0 else 1.0, n=self.n, seed=self.seed,
                              stop=stop_words(language))


def read_descriptions(path: str | os.PathLike[str], tasks: Mapping[str, Sequence[Task]]) -> dict[tuple[str, str], str]:
    """``(language, task_id) -> description`` from an explaindescribe samples file: the first
    completion, post-processed as the harness does (cut to the docstring's length, stop words,
    lines copied from the solution removed); a task without one gets an empty description."""
    by_id = {(language, t.task_id): t for language, ts in tasks.items() for t in ts}
    out: dict[tuple[str, str], str] = {}
    for lineno, row in iter_jsonl(path, {"language": str, "task_id": str}):
        key = (row["language"], row["task_id"])
        if key not in by_id:
            continue
        completions = row.get("completions")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise RecordError(path, lineno, "expected a list of strings", field="completions")
        out[key] = postprocess(by_id[key], "explaindescribe", completions[0]) if completions else ""
    return out


def pack_requests(
    tasks: Mapping[str, Sequence[Task]],
    kind: str,
    params: PackGenParams,
    descriptions: Mapping[tuple[str, str], str] | None = None,
    prefix: str = "",
) -> list[CompletionRequest]:
    """One request per task, language then task order, ``index`` counting from 0."""
    if kind not in TASKS:
        raise ValueError(f"unknown HumanEvalPack task {kind!r}: expected one of {TASKS}")
    if kind == "explainsynthesize" and descriptions is None:
        raise ValueError("explainsynthesize needs the explaindescribe samples (its descriptions)")
    requests: list[CompletionRequest] = []
    for language in (lang for lang in LANGUAGES if lang in tasks):
        sampling = params.sampling(language)
        for task in tasks[language]:
            description = descriptions.get((language, task.task_id), "") if descriptions is not None else None
            prompt = build_prompt(task, kind, params.format, description)
            requests.append(CompletionRequest(index=len(requests), id=f"{language}/{task.task_id}",
                                              prompt=prefix + prompt, params=sampling))
    return requests


def sample_record(language: str, task: Task, result: CompletionResult) -> JsonObj:
    """One samples line from one response (see the module docstring)."""
    record: JsonObj = {"language": language, "task_id": task.task_id}
    if not result.ok:
        return {**record, "completions": [], "finish_reasons": [], "error": result.error}
    return {**record, "completions": [text for text, _ in result.choices],
            "finish_reasons": [reason for _, reason in result.choices]}


def generate_pack_samples(
    task_files: Mapping[str, str | Path],
    kind: str,
    out: str | os.PathLike[str],
    settings: ServingSettings,
    params: PackGenParams,
    *,
    limit: int | None = None,
    descriptions_path: str | Path | None = None,
    model_dir: str | Path | None = None,
    server_log: Path | None = None,
    base_url: str | None = None,
    show_progress: bool = True,
) -> StageStats:
    """Write ``out``: one samples line per task of ``kind`` for the languages of ``task_files``
    (first ``limit`` tasks each), resumable like every generation stage."""
    tasks = {language: load_tasks(task_files[language], language, limit) for language in LANGUAGES
             if language in task_files}
    descriptions = read_descriptions(descriptions_path, tasks) if descriptions_path is not None else None
    requests = pack_requests(tasks, kind, params, descriptions)
    by_index = [(language, task) for language in tasks for task in tasks[language]]

    make_record = one_record_per_request(lambda request, result: sample_record(*by_index[request.index], result))

    value = {
        "version": PACK_GENERATE_VERSION,
        "kind": kind,
        "files": {k: sha256_file(v) for k, v in sorted(task_files.items()) if k in tasks},
        "limit": limit,
        "params": params.to_dict(),
        "descriptions": sha256_file(descriptions_path) if descriptions_path is not None else None,
        "model": [str(model_dir or settings.model.name), settings.model.revision],
        "model_files": model_dir_digest(model_dir),
    }

    def run(url: str) -> StageStats:
        return run_generation(lambda: requests, out, settings.client_params(url), make_record,
                              fingerprint_value=value, desc=f"humanevalpack {kind}", show_progress=show_progress)

    with serve(settings, model_dir=model_dir, log_path=server_log, base_url=base_url) as url:
        stats = run(url)
    stats.extra.update({"kind": kind, "tasks": len(requests), "languages": list(tasks)})
    stats.check_balance()
    return stats
