"""LiveCodeBench samples judged in the sandbox: one verdict per (item, sample).

Every scenario's check is a Python program run in a pool of sandboxes (:class:`Job`); the
scenarios differ in the program (code generation and self repair: the grader and the tests; test
output prediction and code execution: an equality their own rules decide) and in what counts.

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
from ..evaluation.benchmarks import TITLES
from ..evaluation.metrics import mean_pass_at_k, pass_at_k_markdown
from ..records import JsonObj, RecordError, iter_jsonl, sha256_file
from ..runtime import StageStats, UnitPlan, UnitRun, drive, finish_counts, merge_units
from ..sandbox import SandboxPool, Verdict
from .codegen import TEST_TIMEOUT_S, Problem, extract_code, grading_program, program_timeout
from .grader import FEEDBACK_MARK


@dataclass(frozen=True)
class LcbSandboxParams:
    backend: str = "gvisor"
    workers: int = 2
    memory_mb: int = 4096
    test_timeout_s: int = TEST_TIMEOUT_S
    allow_unsandboxed: bool = False
    gvisor_platform: str | None = None

    sample_site: str | None = None  # what programs may import (code execution: numpy, pandas)
    # imported once in each sandbox's runner, before it forks a child per program: code execution's
    # numpy and pandas then cost nothing per check (1.3-1.7 s each under gVisor otherwise, against a
    # 3 s limit that a busy machine would then decide)
    preload: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "preload", tuple(self.preload))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LcbSandboxParams:
        check_params(cls, data, "livecodebench.sandbox")
        return cls(**dict(data))

    def pool(self, size: int) -> SandboxPool:
        from ..execution import resolve_sample_site
        from ..sandbox.runner import PRELOAD

        site = resolve_sample_site(self.sample_site)
        extra: dict[str, Any] = {}
        if self.preload:
            extra = {"preload": (*PRELOAD, *self.preload), "preload_path": (site,) if site else ()}
        return SandboxPool(min(self.workers, size), self.backend, memory_bytes=self.memory_mb << 20,
                           allow_unsandboxed=self.allow_unsandboxed, gvisor_platform=self.gvisor_platform,
                           sample_site=site, **extra)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


def grade(items: Sequence[tuple[Problem, str]], params: LcbSandboxParams) -> list[Verdict]:
    """The verdict of each (problem, extracted code), in input order."""
    return run_programs([(grading_program(p, code, params.test_timeout_s), program_timeout(p, params.test_timeout_s))
                         for p, code in items], params)


def run_programs(programs: Sequence[tuple[str, float]], params: LcbSandboxParams) -> list[Verdict]:
    """The verdict of each (program, wall-clock limit), in input order."""
    if not programs:
        return []
    with params.pool(len(programs)) as pool:
        return pool.map(lambda sandbox, item: sandbox.run(item[0], item[1]), list(programs))


def parse_feedback(verdict: Verdict) -> dict[str, Any] | None:
    """The grader's feedback line (LiveCodeBench's failure metadata), if the stdout tail holds it."""
    for line in reversed(verdict.stdout_tail.splitlines()):
        if line.startswith(FEEDBACK_MARK):
            try:
                value = json.loads(line[len(FEEDBACK_MARK):])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


#: Samples per resumable unit.
SAMPLES_PER_UNIT = 32
MISSING = "missing"


@dataclass(frozen=True)
class Sample:
    question_id: str
    index: int
    code: str | None  # extracted; None for a missing problem's stand-in


def read_samples(path: str | Path, problems: Sequence[Problem], code_block: str = "first") -> list[Sample]:
    """Every sample of ``path`` for ``problems`` (their order; each completion's code extracted,
    its ``code_block`` fenced block), with stand-ins for problems without a line (or whose request was refused): ``n``
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
            samples.extend(Sample(problem.question_id, k, extract_code(text, code_block))
                           for k, text in enumerate(found[1]))
    return samples


@dataclass(frozen=True)
class Job:
    """One sample's check: the fields its verdict row starts with, and the program to run (its
    wall-clock limit), or a verdict decided without running anything (``preset``: a missing
    sample fails, a code-execution answer that repeats the input is skipped)."""

    ident: JsonObj
    program: str | None = None
    timeout_s: float = 0.0
    preset: tuple[str, str] | None = None
    feedback: bool = False  # keep the grader's failure metadata in the row (self repair quotes it)


class _Scoring:
    """A list of :class:`Job` as a :class:`selfalign.runtime.UnitStage`, ``SAMPLES_PER_UNIT`` a unit."""

    def __init__(self, jobs: list[Job], params: LcbSandboxParams, key: JsonObj, stage: str) -> None:
        self.jobs, self.params, self.key, self.stage = jobs, params, key, stage

    def plan(self) -> UnitPlan:
        return UnitPlan(stage=self.stage, version=1, key=self.key, total=len(self.jobs),
                        per_unit=SAMPLES_PER_UNIT, drops=False, desc=self.stage, item="sample")

    def process(self, run: UnitRun) -> None:
        for unit in run.pending or []:
            chosen = [self.jobs[i] for i in run.plan.unit_range(unit)]
            verdicts = iter(run_programs([(j.program, j.timeout_s) for j in chosen if j.preset is None
                                          and j.program is not None], self.params))
            rows, seconds = [], 0.0
            for job in chosen:
                if job.preset is not None or job.program is None:
                    status, reason = job.preset or ("fail", MISSING)
                    rows.append({**job.ident, "status": status, "reason": reason})
                    continue
                verdict = next(verdicts)
                seconds += verdict.seconds
                # no timings in the verdicts: the same samples give the same bytes
                row = {**job.ident, "status": verdict.status, "reason": verdict.reason}
                if job.feedback and verdict.status != "pass":
                    row["feedback"] = parse_feedback(verdict)
                rows.append(row)
            run.write(unit, rows, {"n_in": len(rows), "n_out": len(rows), "drops": {},
                                   "extra": {"program_seconds": round(seconds, 3)}})
            run.advance(len(rows))

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        return merge_units(units)


def run_jobs(jobs: list[Job], out: Path, params: LcbSandboxParams, key: JsonObj, stage: str,
             show_progress: bool = True) -> tuple[list[JsonObj], StageStats]:
    """Run ``jobs`` into ``out`` (resumable) and return its rows."""
    key = {**key, "sandbox": {k: v for k, v in params.to_dict().items() if k != "workers"}}
    stats = drive(_Scoring(jobs, params, key, stage), out, show_progress=show_progress)
    return [row for _, row in iter_jsonl(out)], stats


def codegen_jobs(samples: Sequence[Sample], problems: Sequence[Problem], params: LcbSandboxParams) -> list[Job]:
    by_id = {p.question_id: p for p in problems}
    return [Job({"question_id": s.question_id, "sample": s.index},
                None if s.code is None else grading_program(by_id[s.question_id], s.code, params.test_timeout_s),
                program_timeout(by_id[s.question_id], params.test_timeout_s), feedback=True)
            for s in samples]


SKIPPED = "skip"


def summarize(rows: Sequence[Mapping[str, Any]], items: Sequence[tuple[Any, str]],
              ks: Sequence[int] = (1, 5, 10), key: Any = None) -> dict[str, Any]:
    """Overall and per difficulty: items, samples per item, passed, missing, pass@k (a fraction)
    for each ``k`` no larger than the fewest samples of an item. ``items``: (item key,
    difficulty); ``key(row)`` a row's item (default its question_id). A skipped sample (code
    execution's answer that repeats the input) does not count, unless all of an item's are
    skipped: then they all count as failures (LiveCodeBench's rule)."""
    key = key or (lambda row: row["question_id"])
    counts: dict[Any, list[int]] = {}
    missing: set[Any] = set()
    for row in rows:
        entry = counts.setdefault(key(row), [0, 0, 0])
        entry[2] += 1
        if row["status"] == SKIPPED:
            continue
        entry[0] += 1
        entry[1] += row["status"] == "pass"
        if row["reason"] == MISSING:
            missing.add(key(row))
    for entry in counts.values():
        if entry[0] == 0:
            entry[0] = entry[2]
    difficulty = dict(items)

    def group(ids: Sequence[Any]) -> dict[str, Any]:
        results = [(counts[i][0], counts[i][1]) for i in ids if i in counts]
        fewest = min((n for n, _ in results), default=0)
        return {"problems": len(results), "samples_per_problem": fewest,
                "passed": sum(c for _, c in results), "missing": sum(1 for i in ids if i in missing),
                "pass_at_k": {f"pass@{k}": round(mean_pass_at_k(results, k), 6) for k in ks if 0 < k <= fewest}}

    ids = [i for i, _ in items]
    return {"all": group(ids), **{d: group([i for i in ids if difficulty[i] == d])
                                  for d in ("easy", "medium", "hard") if any(difficulty[i] == d for i in ids)}}




def render_table(summary: Mapping[str, Any], window: str, scenario: str = "codegeneration") -> str:
    lines = [f"# LiveCodeBench {TITLES[scenario]}", "", f"Problems: {window}. pass@k in percent, scored in the sandbox.",
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
    scenario: str = "codegeneration",
    code_block: str = "first",
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score ``samples_path`` (code generation's or self repair's samples) on ``problems``; write
    verdicts.jsonl (resumable), summary.json and table.md into ``out_dir``; return the summary."""
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = read_samples(samples_path, problems, code_block)
    key: JsonObj = {"samples_sha256": sha256_file(samples_path), "problems": [p.question_id for p in problems],
                    "files": [sha256_file(f) for f in problem_files], "code_block": code_block}
    rows, stats = run_jobs(codegen_jobs(samples, problems, params), out / "verdicts.jsonl", params, key,
                           stage_name(scenario), show_progress)
    groups = summarize(rows, [(p.question_id, p.difficulty) for p in problems], ks)
    write_summary(out, scenario, window, params, groups)
    finish_scoring(out, stage_name(scenario), [samples_path, *problem_files], rows, groups, window, params, stats,
                   started)
    return json.loads((out / "summary.json").read_text())


def write_summary(out: Path, scenario: str, window: str, params: LcbSandboxParams, groups: Mapping[str, Any]) -> None:
    summary = {"scenario": scenario, "window": window, "backend": params.backend, "groups": groups}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (out / "table.md").write_text(render_table(groups, window, scenario))


def stage_name(scenario: str) -> str:
    return "livecodebench.score" + ("" if scenario == "codegeneration" else f".{scenario}")


def finish_scoring(out: Path, stage: str, inputs: Sequence[str | Path], rows: Sequence[Mapping[str, Any]],
                   groups: Mapping[str, Any], window: str, params: LcbSandboxParams, stats: StageStats,
                   started: float) -> None:
    finish_counts(
        out / "verdicts.jsonl", stage=stage, inputs=list(inputs),
        counts={"samples": len(rows), "passed": sum(r["status"] == "pass" for r in rows),
                "missing_problems": groups["all"]["missing"]},
        params={"window": window, "sandbox": params.to_dict()}, started=started,
        extra={"stats": {"program_seconds": round(float(stats.extra.get("program_seconds", 0.0)), 3)}},
    )


def read_answers(path: str | Path, keys: Sequence[str]) -> dict[str, list[str] | None]:
    """Each item's completions in ``path`` (lines ``{"id", "completions"}``); None for an item
    without a line or whose request was refused. An unknown or repeated id is an error."""
    known = set(keys)
    found: dict[str, tuple[int, list[str] | None]] = {}
    for lineno, row in iter_jsonl(path, {"id": str}):
        key = row["id"]
        if key not in known:
            raise RecordError(path, lineno, f"unknown item {key!r}", field="id")
        if key in found:
            raise RecordError(path, lineno, f"duplicate item {key!r} (first at line {found[key][0]})", field="id")
        completions = row.get("completions")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise RecordError(path, lineno, "expected a list of strings", field="completions")
        found[key] = (lineno, completions or None)
    return {key: found[key][1] if key in found else None for key in keys}


def prediction_jobs(items: Sequence[Any], answers: Mapping[str, list[str] | None], scenario: str,
                    cot: bool = False) -> list[Job]:
    """The checks of test output prediction or code execution answers (missing items: ``n``
    failures each, ``n`` the most answers any item has)."""
    from . import prediction

    n = max((len(a) for a in answers.values() if a), default=1)
    timeout = float(prediction.CHECK_TIMEOUT_S + 1)  # LiveCodeBench joins the check's process 1 s after its limit
    jobs: list[Job] = []
    for item in items:
        texts = answers.get(item.key)
        if not texts:
            jobs.extend(Job({"id": item.key, "sample": k}) for k in range(n))
            continue
        for k, text in enumerate(texts):
            ident = {"id": item.key, "sample": k}
            if scenario == "testoutputprediction":
                program = prediction.test_output_program(item, prediction.extract_test_output(text))
                preset = ("fail", "expected_not_json") if program is None else None
            else:
                program = prediction.execution_program(item, prediction.extract_execution(text, cot))
                preset = (SKIPPED, "contains_input") if program is None else None
            jobs.append(Job(ident, program, timeout, preset))
    return jobs


def score_predictions(
    samples_path: str | Path,
    items: Sequence[Any],
    scenario: str,
    out_dir: str | Path,
    params: LcbSandboxParams,
    *,
    problem_files: Sequence[str | Path] = (),
    window: str = "all",
    ks: Sequence[int] = (1,),
    cot: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score test output prediction or code execution answers: verdicts.jsonl (resumable),
    summary.json and table.md in ``out_dir``; return the summary."""
    if scenario not in ("testoutputprediction", "codeexecution"):
        raise ValueError(f"not a prediction scenario: {scenario!r}")
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = [item.key for item in items]
    jobs = prediction_jobs(items, read_answers(samples_path, keys), scenario, cot)
    key: JsonObj = {"samples_sha256": sha256_file(samples_path), "items": keys, "cot": cot,
                    "files": [sha256_file(f) for f in problem_files]}
    rows, stats = run_jobs(jobs, out / "verdicts.jsonl", params, key, stage_name(scenario), show_progress)
    groups = summarize(rows, [(item.key, item.difficulty) for item in items], ks, key=lambda row: row["id"])
    write_summary(out, scenario, window, params, groups)
    finish_scoring(out, stage_name(scenario), [samples_path, *problem_files], rows, groups, window, params, stats,
                   started)
    return json.loads((out / "summary.json").read_text())
