"""LiveCodeBench code-generation samples judged in the sandbox: one verdict per (problem, code).

Each sample is :func:`selfalign.livecodebench.codegen.grading_program` run as one Python module
in a pool of sandboxes (gVisor by default), under LiveCodeBench's whole-program limit
(:func:`~selfalign.livecodebench.codegen.program_timeout`) and a memory cap (LiveCodeBench's
``reliability_guard`` allows 4 GiB). A verdict passes only when every public and private test
passed; its reason names the first failure (``exception:WrongAnswer``,
``exception:TimeLimitExceeded``, the sample's own exception, or the sandbox's ``timeout``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import check_params
from ..evaluation.metrics import mean_pass_at_k, pass_at_k_markdown
from ..records import JsonObj, RecordError, iter_jsonl, sha256_file
from ..runtime import StageStats, UnitPlan, UnitRun, drive, finish_counts, merge_units
from ..sandbox import SandboxPool, Verdict
from .codegen import TEST_TIMEOUT_S, Problem, extract_code, grading_program, program_timeout


@dataclass(frozen=True)
class LcbSandboxParams:
    backend: str = "gvisor"
    workers: int = 2
    memory_mb: int = 4096
    test_timeout_s: int = TEST_TIMEOUT_S
    allow_unsandboxed: bool = False
    gvisor_platform: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LcbSandboxParams:
        check_params(cls, data, "livecodebench.sandbox")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def grade(items: Sequence[tuple[Problem, str]], params: LcbSandboxParams) -> list[Verdict]:
    """The verdict of each (problem, extracted code), in input order."""
    if not items:
        return []
    pool = SandboxPool(min(params.workers, len(items)), params.backend, memory_bytes=params.memory_mb << 20,
                       allow_unsandboxed=params.allow_unsandboxed, gvisor_platform=params.gvisor_platform)
    with pool:
        return pool.map(lambda sandbox, item: sandbox.run(
            grading_program(item[0], item[1], params.test_timeout_s),
            program_timeout(item[0], params.test_timeout_s)), items)


#: Samples per resumable unit.
SAMPLES_PER_UNIT = 32
MISSING = "missing"


@dataclass(frozen=True)
class Sample:
    question_id: str
    index: int
    code: str | None  # extracted; None for a missing problem's stand-in


def read_samples(path: str | Path, problems: Sequence[Problem]) -> list[Sample]:
    """Every sample of ``path`` for ``problems`` (their order; each completion's last fenced block
    extracted), with stand-ins for problems without a line (or whose request was refused): ``n``
    failures each, ``n`` the most samples any problem has. A line naming an unknown problem or a
    problem twice, or without a list of strings, is an error naming the file and line."""
    known = {p.question_id for p in problems}
    by_id: dict[str, tuple[int, list[str]]] = {}
    for lineno, row in iter_jsonl(path, {"question_id": str}):
        qid = row["question_id"]
        if qid not in known:
            raise RecordError(path, lineno, f"unknown problem {qid!r}", field="question_id")
        if qid in by_id:
            raise RecordError(path, lineno, f"duplicate problem {qid!r} (first at line {by_id[qid][0]})",
                              field="question_id")
        completions = row.get("completions")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise RecordError(path, lineno, "expected a list of strings", field="completions")
        if completions or not row.get("error"):
            by_id[qid] = (lineno, completions)
    n = max((len(c) for _, c in by_id.values()), default=1) or 1
    samples: list[Sample] = []
    for problem in problems:
        found = by_id.get(problem.question_id)
        if found is None or not found[1]:
            samples.extend(Sample(problem.question_id, k, None) for k in range(n))
        else:
            samples.extend(Sample(problem.question_id, k, extract_code(text)) for k, text in enumerate(found[1]))
    return samples


class _Scoring:
    """Scoring as a :class:`selfalign.runtime.UnitStage`, ``SAMPLES_PER_UNIT`` samples a unit."""

    def __init__(self, samples: list[Sample], problems: Sequence[Problem], params: LcbSandboxParams,
                 key: JsonObj) -> None:
        self.samples, self.params, self.key = samples, params, key
        self.problems = {p.question_id: p for p in problems}

    def plan(self) -> UnitPlan:
        return UnitPlan(stage="livecodebench.score", version=1, key=self.key, total=len(self.samples),
                        per_unit=SAMPLES_PER_UNIT, drops=False, desc="LiveCodeBench score", item="sample")

    def process(self, run: UnitRun) -> None:
        for unit in run.pending or []:
            chosen = [self.samples[i] for i in run.plan.unit_range(unit)]
            verdicts = iter(grade([(self.problems[s.question_id], s.code) for s in chosen if s.code is not None],
                                  self.params))
            rows, seconds = [], 0.0
            for sample in chosen:
                verdict = Verdict("fail", MISSING, 0.0) if sample.code is None else next(verdicts)
                seconds += verdict.seconds
                # no timings in the verdicts: the same samples give the same bytes
                rows.append({"question_id": sample.question_id, "sample": sample.index,
                             "status": verdict.status, "reason": verdict.reason})
            run.write(unit, rows, {"n_in": len(rows), "n_out": len(rows), "drops": {},
                                   "extra": {"program_seconds": round(seconds, 3)}})
            run.advance(len(rows))

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        return merge_units(units)


def summarize(rows: Sequence[Mapping[str, Any]], problems: Sequence[Problem],
              ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """Overall and per difficulty: problems, samples per problem, passed, missing, pass@k (a
    fraction) for each ``k`` no larger than the fewest samples of a problem."""
    counts: dict[str, list[int]] = {}
    missing: set[str] = set()
    for row in rows:
        entry = counts.setdefault(row["question_id"], [0, 0])
        entry[0] += 1
        entry[1] += row["status"] == "pass"
        if row["reason"] == MISSING:
            missing.add(row["question_id"])
    difficulty = {p.question_id: p.difficulty for p in problems}

    def group(ids: Sequence[str]) -> dict[str, Any]:
        results = [(counts[i][0], counts[i][1]) for i in ids if i in counts]
        fewest = min((n for n, _ in results), default=0)
        return {"problems": len(results), "samples_per_problem": fewest,
                "passed": sum(c for _, c in results), "missing": sum(1 for i in ids if i in missing),
                "pass_at_k": {f"pass@{k}": round(mean_pass_at_k(results, k), 6) for k in ks if 0 < k <= fewest}}

    ids = [p.question_id for p in problems]
    return {"all": group(ids), **{d: group([i for i in ids if difficulty[i] == d])
                                  for d in ("easy", "medium", "hard") if any(difficulty[i] == d for i in ids)}}


def render_table(summary: Mapping[str, Any], window: str) -> str:
    lines = ["# LiveCodeBench code generation", "", f"Problems: {window}. pass@k in percent, scored in the sandbox.",
             "", *pass_at_k_markdown(
                 ("difficulty", "problems", "samples per problem"), ("missing",),
                 (((name, e["problems"], e["samples_per_problem"]), e["pass_at_k"], (e["missing"],))
                  for name, e in summary.items()))]
    return "\n".join(lines) + "\n"


def score_samples(
    samples_path: str | Path,
    problems: Sequence[Problem],
    out_dir: str | Path,
    params: LcbSandboxParams,
    *,
    problem_files: Sequence[str | Path] = (),
    window: str = "all",
    ks: Sequence[int] = (1, 5, 10),
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score ``samples_path`` on ``problems``; write verdicts.jsonl (resumable), summary.json and
    table.md into ``out_dir``; return the summary."""
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = read_samples(samples_path, problems)
    key: JsonObj = {"samples_sha256": sha256_file(samples_path), "problems": [p.question_id for p in problems],
                    "files": [sha256_file(f) for f in problem_files],
                    "sandbox": {k: v for k, v in params.to_dict().items() if k != "workers"}}
    stats = drive(_Scoring(samples, problems, params, key), out / "verdicts.jsonl", show_progress=show_progress)
    rows = [row for _, row in iter_jsonl(out / "verdicts.jsonl")]
    groups = summarize(rows, problems, ks)
    summary = {"scenario": "codegeneration", "window": window, "backend": params.backend, "groups": groups}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (out / "table.md").write_text(render_table(groups, window))
    finish_counts(
        out / "verdicts.jsonl", stage="livecodebench.score", inputs=[samples_path, *problem_files],
        counts={"samples": len(rows), "passed": sum(r["status"] == "pass" for r in rows),
                "missing_problems": groups["all"]["missing"]},
        params={"window": window, "sandbox": params.to_dict()}, started=started,
        extra={"stats": {"program_seconds": round(float(stats.extra.get("program_seconds", 0.0)), 3)}},
    )
    return summary
