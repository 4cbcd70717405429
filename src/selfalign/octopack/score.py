"""Scoring HumanEvalPack samples in the language sandboxes: pass@k per language, as the harness.

A samples file is JSONL, one line per (language, task), any order::

    {"language": "python", "task_id": "Python/0", "completions": ["<text after the prompt>", ...]}

or, instead of ``completions``, ``generations``: code already post-processed, as the
bigcode-evaluation-harness saves it (``--save_generations``), so its files can be re-scored.
Each completion is post-processed as the harness does for the task kind
(:func:`~selfalign.octopack.humanevalpack.postprocess`), assembled into the language's test
program (:func:`~selfalign.octopack.humanevalpack.check_program`) and run by
:func:`~selfalign.octopack.execute.run_programs` (gVisor by default), one verdict per sample.
A task of the task file without a line in the samples (or whose line is a request the server
refused: an ``error`` and no completions) counts as ``missing``: its samples are
``n`` failures, ``n`` being the most samples any task has (so a task that could not be generated
lowers the score instead of vanishing). A completion whose program cannot be assembled (a Go
import outside the harness's helper) fails with reason ``build:<what>``.

Writes ``<out>/verdicts.jsonl`` (one line per sample, language then task then sample order,
resumable through :func:`selfalign.runtime.drive`), ``summary.json`` (per language: tasks,
samples, passed, pass@k for each ``k`` the sample count allows, from
:func:`selfalign.evaluation.metrics.mean_pass_at_k`) and ``table.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluation.metrics import mean_pass_at_k, pass_at_k_markdown
from ..records import JsonObj, RecordError, iter_jsonl, sha256_file
from ..runtime import StageStats, UnitPlan, UnitRun, drive, finish_counts, merge_units
from ..sandbox import Verdict
from .execute import PackSandboxParams, run_programs
from .humanevalpack import LANGUAGES, Task, TaskError, check_program, load_tasks, postprocess

#: The kinds whose samples are code run against the tests (explaindescribe writes text, which
#: explainsynthesize then turns into code).
SCORED_KINDS = ("synthesize", "fixtests", "fixdocs", "explainsynthesize")
MISSING = "missing"
SAMPLES_PER_UNIT = 32


@dataclass(frozen=True)
class Sample:
    language: str
    task_id: str
    index: int
    code: str | None  # the generation (post-processed); None for a missing task's stand-in


def read_samples(path: str | Path, tasks: Mapping[str, Sequence[Task]], kind: str) -> list[Sample]:
    """Every sample of ``path`` for the languages of ``tasks``, post-processed for ``kind``, in
    language then task order, with stand-ins for missing tasks. A line naming an unknown
    language or task, a task twice, or neither/both of ``completions`` and ``generations`` is an
    error naming the file and line."""
    if kind not in SCORED_KINDS:
        raise ValueError(f"unknown HumanEvalPack kind to score {kind!r}: expected one of {SCORED_KINDS}")
    by_key: dict[tuple[str, str], tuple[int, JsonObj]] = {}
    known = {language: {t.task_id: t for t in language_tasks} for language, language_tasks in tasks.items()}
    for lineno, row in iter_jsonl(path, {"language": str, "task_id": str}):
        language, task_id = row["language"], row["task_id"]
        if language not in LANGUAGES:
            raise RecordError(path, lineno, f"unknown language {language!r} (expected one of {LANGUAGES})",
                              field="language")
        if language not in known:
            continue  # a language not asked for
        if task_id not in known[language]:
            continue  # outside the limit, or not a task of this file: scored nowhere
        if row.get("error") and row.get("completions") == []:
            continue  # a request the server refused (octopack.generate): a missing task, counted
        texts = [row.get(name) for name in ("completions", "generations")]
        if sum(t is not None for t in texts) != 1:
            raise RecordError(path, lineno, "needs exactly one of 'completions' and 'generations'")
        field = "completions" if texts[0] is not None else "generations"
        values = row[field]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise RecordError(path, lineno, "expected a non-empty list of strings", field=field)
        if (language, task_id) in by_key:
            first = by_key[(language, task_id)][0]
            raise RecordError(path, lineno, f"duplicate task {language} {task_id!r} (first at line {first})",
                              field="task_id")
        by_key[(language, task_id)] = (lineno, row)
    n = max((len(r.get("completions") or r.get("generations") or []) for _, r in by_key.values()), default=1)
    samples: list[Sample] = []
    for language, language_tasks in tasks.items():
        for task in language_tasks:
            found = by_key.get((language, task.task_id))
            if found is None:
                samples.extend(Sample(language, task.task_id, k, None) for k in range(n))
                continue
            row = found[1]
            if "completions" in row and row["completions"] is not None:
                codes = [postprocess(task, kind, text) for text in row["completions"]]
            else:
                codes = list(row["generations"])
            samples.extend(Sample(language, task.task_id, k, code) for k, code in enumerate(codes))
    return samples


class _Scoring:
    """Scoring as a :class:`selfalign.runtime.UnitStage`: a unit is ``SAMPLES_PER_UNIT`` samples
    in language, task, sample order, run together over the sandbox pool."""

    def __init__(self, samples: list[Sample], tasks: Mapping[str, Sequence[Task]], params: PackSandboxParams,
                 key: JsonObj) -> None:
        self.samples, self.params, self.key = samples, params, key
        self.tasks = {(t.language, t.task_id): t for language_tasks in tasks.values() for t in language_tasks}

    def plan(self) -> UnitPlan:
        return UnitPlan(stage="octopack.score", version=1, key=self.key, total=len(self.samples),
                        per_unit=SAMPLES_PER_UNIT, drops=False, desc="HumanEvalPack score", item="sample")

    def process(self, run: UnitRun) -> None:
        for unit in run.pending or []:
            chosen = [self.samples[i] for i in run.plan.unit_range(unit)]
            verdicts: dict[int, Verdict] = {}
            items: list[tuple[str, str]] = []
            positions: list[int] = []
            for position, sample in enumerate(chosen):
                if sample.code is None:
                    verdicts[position] = Verdict("fail", MISSING, 0.0)
                    continue
                try:
                    program = check_program(self.tasks[(sample.language, sample.task_id)], sample.code)
                except TaskError as exc:
                    verdicts[position] = Verdict("fail", f"build:{exc}"[:80], 0.0)
                    continue
                items.append((sample.language, program))
                positions.append(position)
            for position, verdict in zip(positions, run_programs(items, self.params), strict=True):
                verdicts[position] = verdict
            # no timings in the verdicts: the same samples give the same bytes (they are in the sidecar)
            rows = [{"language": s.language, "task_id": s.task_id, "sample": s.index,
                     "status": verdicts[p].status, "reason": verdicts[p].reason} for p, s in enumerate(chosen)]
            seconds = sum(v.seconds for v in verdicts.values())
            run.write(unit, rows, {"n_in": len(rows), "n_out": len(rows), "drops": {},
                                   "extra": {"program_seconds": round(seconds, 3)}})
            run.advance(len(rows))

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        return merge_units(units)


def summarize(rows: Sequence[Mapping[str, Any]], ks: Sequence[int] = (1, 10, 100)) -> dict[str, Any]:
    """Per language: tasks, samples per task, samples passed, missing tasks and pass@k (a
    fraction) for each ``k`` no larger than the fewest samples of a task."""
    per_task: dict[str, dict[str, list[int]]] = {}
    missing: dict[str, set[str]] = {}
    for row in rows:
        counts = per_task.setdefault(row["language"], {}).setdefault(row["task_id"], [0, 0])
        counts[0] += 1
        counts[1] += row["status"] == "pass"
        if row["reason"] == MISSING:
            missing.setdefault(row["language"], set()).add(row["task_id"])
    out: dict[str, Any] = {}
    for language, tasks in per_task.items():
        results = [(n, c) for n, c in tasks.values()]
        fewest = min(n for n, _ in results)
        out[language] = {
            "tasks": len(results),
            "samples_per_task": fewest if fewest == max(n for n, _ in results) else [fewest, max(n for n, _ in results)],
            "passed": sum(c for _, c in results),
            "missing_tasks": len(missing.get(language, ())),
            "pass_at_k": {f"pass@{k}": round(mean_pass_at_k(results, k), 6) for k in ks if k <= fewest},
        }
    return out


def render_table(kind: str, summary: Mapping[str, Any]) -> str:
    """Markdown: one row per language, pass@k in percent."""
    lines = [f"# HumanEvalPack {kind}", "", *pass_at_k_markdown(
        ("language", "tasks", "samples per task"), ("missing tasks",),
        (((language, e["tasks"], e["samples_per_task"]), e["pass_at_k"], (e["missing_tasks"],))
         for language, e in summary.items()))]
    return "\n".join(lines) + "\n"


def score_samples(
    samples_path: str | Path,
    task_files: Mapping[str, str | Path],
    kind: str,
    out_dir: str | Path,
    params: PackSandboxParams,
    *,
    limit: int | None = None,
    ks: Sequence[int] = (1, 10, 100),
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score ``samples_path`` for ``kind`` on the tasks of ``task_files`` (first ``limit`` per
    language); write the verdicts, summary and table into ``out_dir`` and return the summary."""
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {language: load_tasks(task_files[language], language, limit) for language in LANGUAGES
             if language in task_files}
    samples = read_samples(samples_path, tasks, kind)
    key: JsonObj = {"samples_sha256": sha256_file(samples_path), "kind": kind, "limit": limit,
                    "files": {k: sha256_file(v) for k, v in sorted(task_files.items()) if k in tasks},
                    "sandbox": {k: v for k, v in params.to_dict().items() if k != "workers"}}
    stats = drive(_Scoring(samples, tasks, params, key), out / "verdicts.jsonl", show_progress=show_progress)
    rows = [row for _, row in iter_jsonl(out / "verdicts.jsonl")]
    languages = summarize(rows, ks)
    summary = {"kind": kind, "backend": params.backend, "limit": limit, "languages": languages}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (out / "table.md").write_text(render_table(kind, languages))
    finish_counts(
        out / "verdicts.jsonl", stage="octopack.score",
        inputs=[samples_path, *(task_files[language] for language in tasks)],
        counts={"samples": len(rows), "passed": sum(r["status"] == "pass" for r in rows),
                "missing_tasks": sum(e["missing_tasks"] for e in languages.values())},
        # wall seconds of every program, summed (a resumed unit keeps its first run's)
        extra={"stats": {"program_seconds": round(float(stats.extra.get("program_seconds", 0.0)), 3)}},
        params={"kind": kind, "limit": limit, "sandbox": params.to_dict()},
        started=started,
    )
    return summary
