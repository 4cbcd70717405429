"""Scoring code samples on HumanEval+ / MBPP+ with EvalPlus, every sample run in the sandbox.

One sandbox run per task: a short program, started in a fresh process inside a
:class:`selfalign.sandbox.Sandbox` (gVisor by default), that

1. computes the ground truth of the task's canonical solution on its base (then plus) inputs
   with ``evalplus.gen.util.trusted_exec(record_time=True)`` *in the same sandbox*, so the
   per-input reference times, and with them the time limits, are measured on the same (possibly
   slow or loaded) machine as the sample, and
2. checks the sample with ``evalplus.eval.untrusted_check`` against those outputs, with
   evalplus 0.2.1's defaults (``fast_check``, ``min_time_limit=1.0``,
   ``gt_time_limit_factor=4.0``): each input's limit is ``max(1 s, 4 x reference time)``.

What is passed mirrors evalplus 0.2.1's ``evalplus/evaluate.py`` exactly: the solution is the
sample's ``solution`` field, or the task's ``prompt`` + the sample's ``completion``; the
reference is ``prompt + canonical_solution``; MBPP inputs go through
``mbpp_deserialize_inputs`` (tuples, sets, complex numbers) and MBPP fail tests through
``mbpp_serialize_inputs``; ``output_not_none`` is set for the MBPP tasks whose entry point is in
``MBPP_OUTPUT_NOT_NONE_TASKS``; ``atol`` is the task's (evalplus >= 0.2.0 raises a zero ``atol``
to 1e-6 when the expected value is a float); a failing task lists the one input it failed on
(``fast_check``), none when it failed on the first input. Base and plus inputs are both always
checked, and ``plus`` counts as passed only when ``base`` passed too (what evalplus reports as
the "+" pass@1).

evalplus itself is imported inside the sandbox from the host's site-packages directory, mounted
read-only. The sandbox needs a ``/dev/shm`` (multiprocessing's semaphores) and a per-run
memory limit of at least evalplus's own 4 GiB RLIMIT_AS (default 8 GiB here).

Outcomes that are not evalplus's own: a task with no sample is a ``fail`` with reason
``missing sample`` (counted, never dropped); a run that exceeds the sandbox's whole-program
limit gives ``timeout`` for the parts it did not report; a broken sandbox is retried once, then
gives ``error``. Only ``pass`` counts.

Resumable: tasks are scored in units of ``tasks_per_unit`` through
:func:`selfalign.runtime.drive` (``<out>.tasks.jsonl.parts``), so a killed run
only scores unfinished units on rerun, and the output's bytes equal those of an uninterrupted
run. Run times and sandbox counts go to the sidecar, never into the output.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import pickle
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config import check_params
from ..records import (
    JsonObj,
    RecordError,
    atomic_writer,
    iter_jsonl,
    sha256_file,
)
from ..runtime import StageStats, UnitPlan, UnitRun, drive
from ..sandbox.backends import validate_backend_choice
from .benchmarks import EVALPLUS, Tasks, benchmark, paper_pass_at_1
from .metrics import mean_pass_at_k

log = logging.getLogger(__name__)

#: Bump when how verdicts become records changes: stale resumable parts are then dropped.
SCORE_VERSION = 1

DATASETS = EVALPLUS  # the registry's EvalPlus benchmarks
EVALPLUS_VERSION = "0.2.1"
"""The evalplus release whose checker (and rules) we run; another installed version is refused."""

#: pass@1 (percent) published on the StarCoder2-Instruct model card, base and plus (the registry's).
PAPER_PASS_AT_1: dict[str, tuple[float, float]] = paper_pass_at_1()

MISSING_SAMPLE = "missing sample"
PARTS = ("base", "plus")

CHECKERS = ("evalplus-0.2.1", "release")
"""``evalplus-0.2.1``: the installed evalplus' own ``unsafe_execute`` (float outputs within
``atol``, 1e-6 where a task's is 0). ``release``: what evalplus 25e195e0 (v0.2.2-19-g25e195e,
the release's requirements.txt) did in the release's environment: its special oracles, with
``MBPP_OUTPUT_SET_EQ_TASKS``, and an exact comparison for every output, floats included:
``reliability_guard`` sets ``subprocess.Popen = None``, and with numpy 1.26 the first
``np.testing`` access imports ``numpy.testing``, which calls ``subprocess.run`` and raises, so
``assert_allclose`` was never reached and every non-identical float failed."""

#: evalplus 25e195e0's ``MBPP_OUTPUT_SET_EQ_TASKS`` (set comparison of list outputs; not in 0.2.1).
MBPP_OUTPUT_SET_EQ_TASKS = (
    "similar_elements",  # Mbpp/2
    "find_char_long",  # Mbpp/7
    "common_in_nested_lists",  # Mbpp/111
    "extract_singly",  # Mbpp/140
    "larg_nnum",  # Mbpp/232
    "intersection_array",  # Mbpp/249
    "find_dissimilar",  # Mbpp/579
    "Diff",  # Mbpp/769
)


class ScoreError(RuntimeError):
    """Scoring cannot proceed (wrong evalplus version, a sandbox that never starts, ...)."""


# ------------------------------------------------------------------------------------ params


@dataclass(frozen=True)
class DataParams:
    """Where the pinned EvalPlus release is found (see :func:`selfalign.fetch.fetch_pinned`)."""

    mirrors: list[str] = field(default_factory=list)
    cache_dir: str = "~/.cache/selfalign/benchmarks"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataParams:
        check_params(cls, data, "evaluation")  # the evaluation section's mirrors and cache_dir
        made = cls(**dict(data))
        if not isinstance(made.mirrors, list) or not all(isinstance(m, str) for m in made.mirrors):
            raise ValueError("data.mirrors must be a list of directory paths")
        return made

    def to_dict(self) -> dict[str, Any]:
        return {"mirrors": list(self.mirrors), "cache_dir": self.cache_dir}


@dataclass(frozen=True)
class ScoreParams:
    """How samples are run.

    ``timeout_s`` bounds one task's whole sandbox run (ground truth and both checks); the
    per-input limits are evalplus's (``max(min_time_limit, gt_time_limit_factor x reference
    time)``), so this is only a safety net. ``memory_mb`` is the run's RLIMIT_AS (evalplus sets
    4 GiB itself inside, so it must be more). ``backend`` ``none`` needs ``allow_unsandboxed``.
    """

    backend: str = "gvisor"
    memory_mb: int = 8192
    nproc: int = 64
    timeout_s: float = 3600.0
    min_time_limit: float = 1.0
    gt_time_limit_factor: float = 4.0
    call_cap_s: float = 60.0  # evalplus's cap per untrusted_check call (its 60 s; lowered by tests)
    workers: int = 2
    tasks_per_unit: int = 8
    allow_unsandboxed: bool = False
    gvisor_platform: str | None = None
    image: str | None = None  # backend podman's sandbox image (None: localhost/selfalign/sandbox)
    checker: str = "evalplus-0.2.1"  # or "release" (see CHECKERS)
    recheck_time_limits: bool = True
    """A part failed by a time limit is checked once more on CPU time before it is final (see
    :mod:`.evalplus_job`), so a busy machine gives the idle machine's verdicts; False: evalplus's
    one wall-clock check."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreParams:
        check_params(cls, data, "evaluation.sandbox")  # types, bounds, choices: the schema's
        made = cls(**dict(data))
        validate_backend_choice(
            made.backend, made.allow_unsandboxed, "evaluation.sandbox", made.image
        )
        return made

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def result_params(self) -> dict[str, Any]:
        """The parameters that can change a verdict (not the worker count or unit size)."""
        return {
            k: v for k, v in self.to_dict().items() if k not in ("workers", "tasks_per_unit")
        }


# -------------------------------------------------------------------------------- reading


def load_tasks(dataset: str, version: str | None, data: DataParams) -> Tasks:
    """Every task of ``dataset`` at ``version`` (default: the release the paper used)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    loader = benchmark(dataset).hook("loader")
    tasks: Tasks = loader(dataset, version, data.mirrors, data.cache_dir)
    return tasks


def read_samples(path: str | os.PathLike[str], tasks: Tasks) -> dict[str, str]:
    """``task_id -> solution`` from a samples JSONL (plain or ``.gz``), one sample per task.

    A record needs a string ``task_id`` and a string ``solution`` or ``completion``; as in
    evalplus, the solution is ``solution`` when present, else the task's prompt + ``completion``.
    A ``task_id`` that is not in the release, a second sample for one task, or a missing or
    mistyped field is a :class:`RecordError` naming the file, the line and the field.
    """
    by_id = {t["task_id"]: t for t in tasks.tasks}
    raw, _ = _read_samples_raw(Path(path), set(by_id))
    return {
        task_id: text if kind == "solution" else by_id[task_id]["prompt"] + text
        for task_id, (kind, text) in raw.items()
    }


def _read_samples_raw(
    path: Path, known: set[str]
) -> tuple[dict[str, tuple[str, str]], int]:
    """``task_id -> (kind, text)`` where kind is ``solution`` or ``completion``; and the count."""
    found: dict[str, tuple[str, str]] = {}
    lines: dict[str, int] = {}
    for line, record in iter_jsonl(path):
        task_id = record.get("task_id")
        if not isinstance(task_id, str):
            raise RecordError(path, line, "missing or not a string", "task_id")
        if task_id not in known:
            raise RecordError(path, line, f"unknown task {task_id!r} (not in the EvalPlus release)", "task_id")
        if task_id in found:
            raise RecordError(
                path, line, f"second sample for {task_id} (first on line {lines[task_id]}); scoring takes one per task", "task_id"
            )
        if "solution" in record:
            kind = "solution"
        elif "completion" in record:
            kind = "completion"
        else:
            raise RecordError(path, line, "needs a 'completion' or a 'solution'", "completion")
        if not isinstance(record[kind], str):
            raise RecordError(path, line, f"expected str, got {type(record[kind]).__name__}", kind)
        found[task_id] = (kind, record[kind])
        lines[task_id] = line
    return found, len(found)


# ------------------------------------------------------------------------ one task's run

#: What runs in the sandbox: :mod:`selfalign.evaluation.evalplus_job`'s source, a real module
#: (linted and type-checked like the rest), followed by its ``run(<job>, <tag>)`` call.
_PROGRAM = (Path(__file__).with_name("evalplus_job.py")).read_text(encoding="utf-8")


def evalplus_site() -> str:
    """The site-packages directory evalplus is installed in (mounted read-only in the sandbox)."""
    try:
        import evalplus
    except ImportError as exc:
        raise ScoreError(f"evalplus is not installed: pip install evalplus=={EVALPLUS_VERSION}") from exc
    version = metadata.version("evalplus")
    if version != EVALPLUS_VERSION:
        raise ScoreError(
            f"evalplus {version} is installed, but scoring pins evalplus=={EVALPLUS_VERSION} "
            "(its comparison rules differ between releases)"
        )
    return str(Path(evalplus.__file__).resolve().parent.parent)


def _inputs(dataset: str, task: JsonObj, part: str) -> list[Any]:
    """A task's base/plus inputs as evalplus's loaders give them (MBPP: deserialized)."""
    inputs = task[f"{part}_input"]
    if dataset == "mbpp":
        from evalplus.data.mbpp import mbpp_deserialize_inputs

        inputs = mbpp_deserialize_inputs(task["task_id"], inputs)
    return list(inputs)


def _fail_tests(dataset: str, task_id: str, inputs: list[Any], status: str, n_details: int) -> list[Any]:
    """evalplus's ``get_failed_tests`` without ``--test-details``: the one input it failed on."""
    if status == "pass" or n_details == 0 or n_details >= len(inputs):
        return []
    failed = [inputs[n_details]]
    if dataset == "mbpp":
        from evalplus.data.mbpp import mbpp_serialize_inputs

        failed = mbpp_serialize_inputs(task_id, failed)
    # Tuples become lists, as in evalplus's JSON; anything else JSON cannot hold becomes repr.
    result: list[Any] = json.loads(json.dumps(failed, default=repr))
    return result


def build_job(dataset: str, task: JsonObj, solution: str, params: ScoreParams, site: str) -> str:
    """The program scoring ``solution`` on ``task`` in the sandbox (:mod:`.evalplus_job`), with
    ``{tag!r}`` where the per-run tag goes."""
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

    job = {
        "site": site,
        "dataset": dataset,
        "solution": solution,
        "reference": task["prompt"] + task["canonical_solution"],
        "entry_point": task["entry_point"],
        "atol": task["atol"],
        "output_not_none": dataset == "mbpp" and task["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS,
        "base_input": _inputs(dataset, task, "base"),
        "plus_input": _inputs(dataset, task, "plus"),
        "min_time_limit": params.min_time_limit,
        "gt_time_limit_factor": params.gt_time_limit_factor,
        "call_cap_s": params.call_cap_s,
        "checker": params.checker,
        "recheck": params.recheck_time_limits,
        "set_eq_tasks": list(MBPP_OUTPUT_SET_EQ_TASKS),
    }
    blob = base64.b64encode(pickle.dumps(job, protocol=4)).decode("ascii")
    return _PROGRAM + f"\nrun({blob!r}, {{tag!r}})\n"


@dataclass
class TaskOutcome:
    """One task's verdict (``record``, for the output) and its run's facts (for the sidecar)."""

    record: JsonObj
    seconds: float = 0.0
    gt_seconds: float = 0.0
    sandbox_status: str = "none"
    attempts: int = 0
    phases: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    rechecks: list[JsonObj] = field(default_factory=list)  # each re-checked part's facts


def _parse_lines(stdout: str, tag: str) -> dict[str, JsonObj]:
    parts: dict[str, JsonObj] = {}
    for line in stdout.splitlines():
        if line.startswith(tag):
            try:
                obj = json.loads(line[len(tag) :])
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("part") in PARTS:
                parts[obj["part"]] = obj
    return parts


def score_task(sandbox: Any, dataset: str, task: JsonObj, solution: str | None, params: ScoreParams, site: str) -> TaskOutcome:
    """Score one task's sample in ``sandbox`` (a started :class:`selfalign.sandbox.Sandbox`)."""
    task_id = task["task_id"]
    if solution is None:
        return TaskOutcome({"task_id": task_id, "base_status": "fail", "plus_status": "fail", "reason": MISSING_SAMPLE})
    # The podman backend's image has its own evalplus (same pin) where the host's is not mounted.
    template = build_job(dataset, task, solution, params, sandbox.backend.site_packages(site))
    outcome = TaskOutcome({})
    for attempt in (1, 2):
        tag = f"EVALPLUS-VERDICT-{secrets.token_hex(8)} "
        sent = time.perf_counter()
        verdict = sandbox.run(template.replace("{tag!r}", repr(tag), 1), timeout_s=params.timeout_s)
        outcome.phases["host_seconds"] += time.perf_counter() - sent - verdict.seconds
        outcome.attempts = attempt
        outcome.seconds += verdict.seconds
        outcome.sandbox_status = f"{verdict.status}:{verdict.reason}"
        parts = _parse_lines(verdict.stdout_tail, tag)
        if verdict.status == "error" and len(parts) < len(PARTS) and attempt == 1:
            log.warning("%s: sandbox error (%s); retrying once", task_id, verdict.reason)
            continue
        break
    record: JsonObj = {"task_id": task_id}
    reasons = []
    if set(parts) == set(PARTS) and all("elapsed" in parts[p] for p in PARTS):
        program = max(float(parts[p]["elapsed"]) for p in PARTS)
        outcome.phases["runner_seconds"] += verdict.seconds - program  # fork, limits, wipe
        outcome.phases["program_start_seconds"] += float(parts[PARTS[0]]["started"])
        for p in PARTS:
            outcome.phases["ground_truth_seconds"] += float(parts[p]["gt_wall"])
            outcome.phases["checks_seconds"] += float(parts[p]["check_wall"])
            outcome.phases["check_calls"] += int(parts[p]["calls"])
    for part in PARTS:
        got = parts.get(part)
        if got is not None and "status" in got:
            status = str(got["status"])
            if isinstance(got.get("recheck"), dict):
                outcome.rechecks.append({"task_id": task_id, "part": part, **got["recheck"]})
            outcome.gt_seconds += float(got.get("gt_seconds", 0.0))
            fails = _fail_tests(dataset, task_id, _inputs(dataset, task, part), status, int(got.get("n_details", 0)))
        elif got is not None:
            status, fails = "error", []
            reasons.append(f"{part}: {got.get('error')}")
        elif verdict.status == "timeout":
            status, fails = "timeout", []
            reasons.append(f"{part}: sandbox time limit ({params.timeout_s:g} s) reached")
        else:
            status, fails = "error", []
            reasons.append(f"{part}: sandbox {verdict.status}:{verdict.reason}")
        record[f"{part}_status"] = status
        if fails:
            record[f"{part}_fail_tests"] = fails
    if reasons:
        record["reason"] = "; ".join(reasons)
    outcome.record = record
    return outcome


# ------------------------------------------------------------------------------ the stage


#: What every task's program imports (see :mod:`.evalplus_job`), preloaded by the scoring runner.
SCORER_PRELOAD: tuple[str, ...] = (
    "traceback", "typing", "base64", "copy", "json", "pickle", "multiprocessing.heap", "numpy",
    "evalplus.eval", "evalplus.eval.utils", "evalplus.eval._special_oracle", "evalplus.gen.util",
)


def _sandbox_kwargs(params: ScoreParams, site: str) -> dict[str, Any]:
    return {
        "timeout_s": params.timeout_s,
        "memory_bytes": params.memory_mb << 20,
        "nproc": params.nproc,
        "extra_ro_paths": (site,),
        "allow_unsandboxed": params.allow_unsandboxed,
        "gvisor_platform": params.gvisor_platform,
        "tail_bytes": 64 << 10,
        "image": params.image,
        # Imported once per sandbox instead of once per task (numpy alone is ~0.3 s of system
        # calls under gVisor's ptrace platform); evalplus.evaluate's own process holds them too.
        "preload": SCORER_PRELOAD,
        "preload_path": (site,),
    }


def scoring_sandbox(params: ScoreParams, site: str) -> Any:
    """One sandbox set up as the scorer's (for scoring single tasks by hand, and tests)."""
    from ..sandbox import Sandbox

    return Sandbox(params.backend, **_sandbox_kwargs(params, site))


def _pool(params: ScoreParams, site: str, n_workers: int) -> Any:
    """``n_workers`` scoring sandboxes, each started on its first task with a sample."""
    from ..sandbox import SandboxPool

    return SandboxPool(n_workers, params.backend, **_sandbox_kwargs(params, site))


def _sum_phases(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: defaultdict[str, float] = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            total[key] += value
    return {key: round(value, 3) for key, value in sorted(total.items())}


@dataclass
class _Scoring:
    """Scoring as a :class:`selfalign.runtime.UnitStage`: a unit is ``tasks_per_unit`` tasks in
    dataset order, scored on a :class:`~selfalign.sandbox.SandboxPool` of ``params.workers``
    sandboxes; each unit is written once its last task is scored."""

    tasks: list[JsonObj]
    solutions: Mapping[str, str]
    dataset: str
    params: ScoreParams
    site: str
    key: JsonObj

    def plan(self) -> UnitPlan:
        return UnitPlan(stage="eval.score", version=SCORE_VERSION, key=self.key, total=len(self.tasks),
                        per_unit=self.params.tasks_per_unit, drops=False, desc=f"score {self.dataset}",
                        item="task")

    def process(self, run: UnitRun) -> None:
        units = {u: run.plan.unit_range(u) for u in run.pending or ()}
        pending: dict[int, dict[int, TaskOutcome]] = {u: {} for u in units}

        def finish(unit: int, index: int, outcome: TaskOutcome) -> None:
            pending[unit][index] = outcome
            run.advance(1)
            if len(pending[unit]) == len(units[unit]):
                finished = pending.pop(unit)
                outcomes = [finished[i] for i in units[unit]]
                stats = {
                    "seconds": round(sum(o.seconds for o in outcomes), 3),
                    "gt_seconds": round(sum(o.gt_seconds for o in outcomes), 3),
                    "max_seconds": round(max(o.seconds for o in outcomes), 3),
                    "sandbox": dict(Counter(o.sandbox_status for o in outcomes if o.attempts)),
                    "retries": sum(max(0, o.attempts - 1) for o in outcomes),
                    "rechecks": [r for o in outcomes for r in o.rechecks],
                    "phases": _sum_phases(o.phases for o in outcomes),
                }
                run.write(unit, [o.record for o in outcomes], stats)

        check = benchmark(self.dataset).hook("checker")  # score_task for EvalPlus

        def work(sandbox: Any, item: tuple[int, int]) -> TaskOutcome:
            task = self.tasks[item[1]]
            solution = self.solutions.get(task["task_id"])
            # a task without a sample is scored as missing, without a sandbox
            return check(sandbox if solution is not None else None, self.dataset, task, solution,
                              self.params, self.site)

        items = [(u, i) for u, indices in units.items() for i in indices]
        pool = _pool(self.params, self.site, max(1, min(self.params.workers, len(items))))
        try:
            pool.map(work, items, lambda position, outcome: finish(*items[position], outcome))
        finally:
            pool.close()

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        """Every task in is a task out: the verdicts are the records; the units' timings and
        sandbox counts are kept under ``extra['units']`` for the sidecar."""
        return StageStats(n_in=len(self.tasks), n_out=len(self.tasks),
                          extra={"units": units, "n_units": run.plan.n_units, "resumed": len(run.done)})


def _pass_at_1(passed: int, n: int) -> float:
    """Greedy pass@1 over ``n`` tasks (one sample each) of which ``passed`` passed."""
    return round(mean_pass_at_k([(1, 1)] * passed + [(1, 0)] * (n - passed), 1), 6)


def summarize(records: Sequence[JsonObj]) -> tuple[int, int]:
    """``(base passed, plus passed)``; plus counts only where base passed too (evalplus's "+")."""
    base = sum(r["base_status"] == "pass" for r in records)
    plus = sum(r["base_status"] == "pass" and r["plus_status"] == "pass" for r in records)
    return base, plus


@dataclass
class ScoreResult:
    """What :func:`run_score` wrote (``result`` is the output file's content) and its facts."""

    result: JsonObj
    meta: JsonObj


def run_score(
    samples: str | os.PathLike[str],
    dataset: str,
    out: str | os.PathLike[str],
    *,
    version: str | None = None,
    data: DataParams | None = None,
    params: ScoreParams | None = None,
    limit: int | None = None,
    published: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> ScoreResult:
    """Score ``samples`` on ``dataset`` (first ``limit`` tasks) and write ``out`` (JSON).

    ``out`` gets ``{dataset, version, data_sha256, evalplus_version, n_tasks, n_samples,
    missing_samples, base: {passed, pass_at_1}, plus: {passed, pass_at_1}, tasks: {task_id:
    {base_status, plus_status, base_fail_tests?, plus_fail_tests?, reason?}}}`` (tasks in
    dataset order), plus ``agreement`` (see :func:`compare_with_published`) when ``published``
    is given. Timings and sandbox counts are returned in ``meta``, for the sidecar.
    """
    started = time.time()
    data = data or DataParams()
    params = params or ScoreParams()
    site = evalplus_site()
    release = load_tasks(dataset, version, data)
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1")
    tasks = release.tasks[:limit] if limit is not None else release.tasks
    samples_path = Path(samples)
    solutions = read_samples(samples_path, release)
    in_scope = {t["task_id"] for t in tasks}
    solutions_in_scope = {k: v for k, v in solutions.items() if k in in_scope}
    out = Path(out)
    parts_output = out.with_name(out.name + ".tasks.jsonl")
    key = {
        "dataset": dataset,
        "release": release.version,
        "data_sha256": release.sha256,
        "samples_sha256": sha256_file(samples_path),
        "n_tasks": len(tasks),
        "evalplus": metadata.version("evalplus"),
        "params": params.result_params(),
    }
    scoring = _Scoring(list(tasks), solutions_in_scope, dataset, params, site, key)
    summary = drive(scoring, parts_output, show_progress=show_progress)
    unit_stats: list[JsonObj] = summary.extra["units"]
    n_units, resumed = summary.extra["n_units"], summary.extra["resumed"]
    records = [rec for _, rec in iter_jsonl(parts_output)]
    parts_output.unlink()
    if [r["task_id"] for r in records] != [t["task_id"] for t in tasks]:
        raise ScoreError(f"{out}: scored tasks do not match the release's order (stale parts?)")
    base, plus = summarize(records)
    n = len(records)
    missing = sum(r.get("reason") == MISSING_SAMPLE for r in records)
    result: JsonObj = {
        "dataset": dataset,
        "version": release.version,
        "data_sha256": release.sha256,
        "evalplus_version": metadata.version("evalplus"),
        "n_tasks": n,
        "n_samples": len(solutions_in_scope),
        "missing_samples": missing,
        "base": {"passed": base, "pass_at_1": _pass_at_1(base, n)},
        "plus": {"passed": plus, "pass_at_1": _pass_at_1(plus, n)},
        "tasks": {r["task_id"]: {k: v for k, v in r.items() if k != "task_id"} for r in records},
    }
    if published is not None:
        result["agreement"] = compare_with_published(result, published)
    write_result(out, result)
    statuses: Counter[str] = Counter()
    for r in records:
        for part in PARTS:
            statuses[f"{part}:{r[f'{part}_status']}"] += 1
    sandbox_counts: Counter[str] = Counter()
    for s in unit_stats:
        sandbox_counts.update(s.get("sandbox", {}))
    rechecks = [r for s in unit_stats for r in s.get("rechecks", ())]
    meta: JsonObj = {
        "counts": {"tasks": n, "samples": len(solutions_in_scope), "missing_samples": missing,
                   "base_passed": base, "plus_passed": plus,
                   "samples_outside_limit": len(solutions) - len(solutions_in_scope)},
        "statuses": dict(sorted(statuses.items())),
        "timing": {
            "sandbox_seconds": round(sum(s.get("seconds", 0.0) for s in unit_stats), 3),
            "ground_truth_seconds": round(sum(s.get("gt_seconds", 0.0) for s in unit_stats), 3),
            "max_task_seconds": max((s.get("max_seconds", 0.0) for s in unit_stats), default=0.0),
            "wall_seconds": round(time.time() - started, 3),
            # summed over the tasks that reported them; see _PROGRAM and score_task
            "phases": _sum_phases(s.get("phases", {}) for s in unit_stats),
        },
        "sandbox": {"verdicts": dict(sorted(sandbox_counts.items())),
                    "retries": sum(s.get("retries", 0) for s in unit_stats),
                    "units": n_units, "units_resumed": resumed},
        # parts a time limit failed, checked again on CPU time (see evalplus_job): how many, how
        # many passed the re-check (a first check the machine's load decided), and each one
        "rechecks": {"parts": len(rechecks), "passed": sum(r["status"] == "pass" for r in rechecks),
                     "each": rechecks},
        "inputs": [str(samples_path), str(release.path), *([str(published)] if published else [])],
        "params": {"dataset": dataset, "version": release.version, "limit": limit,
                   "data": data.to_dict(), "sandbox": params.to_dict()},
    }
    return ScoreResult(result, meta)


def write_result(out: str | os.PathLike[str], result: Mapping[str, Any]) -> None:
    """Write the result JSON deterministically: keys in the order built, tasks in dataset order."""
    with atomic_writer(out) as handle:
        json.dump(result, handle, indent=1, ensure_ascii=False)
        handle.write("\n")


# ---------------------------------------------------------------------------- comparison


def load_published(path: str | os.PathLike[str]) -> dict[str, JsonObj]:
    """``task_id -> {base_status, plus_status}`` of a published evalplus ``eval_results.json``
    (plain or ``.gz``); the first sample of each task."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        try:
            doc = json.load(handle)
        except ValueError as exc:
            raise RecordError(path, 0, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("eval"), dict):
        raise RecordError(path, 0, "expected an evalplus result object with an 'eval' mapping", "eval")
    found: dict[str, JsonObj] = {}
    for task_id, runs in doc["eval"].items():
        if not isinstance(runs, list) or not runs or not isinstance(runs[0], dict):
            raise RecordError(path, 0, f"eval[{task_id!r}] must be a non-empty list of objects", "eval")
        found[task_id] = {"base_status": runs[0].get("base_status"), "plus_status": runs[0].get("plus_status")}
    return found


def _passes(entry: Mapping[str, Any]) -> tuple[bool, bool]:
    base = entry.get("base_status") == "pass"
    return base, base and entry.get("plus_status") == "pass"


def compare_with_published(result: Mapping[str, Any], published: str | os.PathLike[str]) -> JsonObj:
    """Agreement of ``result`` (our output) with a published evalplus result file, per task.

    Compared: whether each task passes base, and whether it passes plus (base and plus, as
    evalplus counts it), over the tasks we scored. ``disagreements`` lists the tasks where
    either differs, with both sides' raw statuses.
    """
    theirs = load_published(published)
    ours: Mapping[str, Mapping[str, Any]] = result["tasks"]
    compared = [t for t in ours if t in theirs]
    agree = {"base": 0, "plus": 0}
    totals = {"ours": [0, 0], "published": [0, 0]}
    disagreements = []
    for task_id in compared:
        mine, other = _passes(ours[task_id]), _passes(theirs[task_id])
        for i in range(2):
            totals["ours"][i] += mine[i]
            totals["published"][i] += other[i]
        agree["base"] += mine[0] == other[0]
        agree["plus"] += mine[1] == other[1]
        if mine != other:
            disagreements.append(
                {
                    "task_id": task_id,
                    "differs": [p for p, a, b in zip(PARTS, mine, other, strict=True) if a != b],
                    "ours": {p: ours[task_id][f"{p}_status"] for p in PARTS},
                    "published": {p: theirs[task_id][f"{p}_status"] for p in PARTS},
                }
            )
    return {
        "published": Path(published).name,
        "published_sha256": sha256_file(published),
        "n_compared": len(compared),
        "not_in_published": [t for t in ours if t not in theirs],
        "base": {"agree": agree["base"], "ours_passed": totals["ours"][0], "published_passed": totals["published"][0]},
        "plus": {"agree": agree["plus"], "ours_passed": totals["ours"][1], "published_passed": totals["published"][1]},
        "disagreements": disagreements,
    }


# --------------------------------------------------------------------------------- table


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


#: The columns of :func:`table_rows` (and of ``eval/table.md``).
TABLE_HEADER = (
    "dataset",
    "release",
    "tasks",
    "base pass@1",
    "plus pass@1",
    "paper base",
    "paper plus",
    "agreement base",
    "agreement plus",
)


def table_rows(results: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row of :data:`TABLE_HEADER` cells per scored file: base/plus pass@1 beside the
    paper's numbers and the agreement with published verdicts if any."""
    rows = []
    for res in results:
        paper = PAPER_PASS_AT_1.get(res["dataset"])
        agreement = res.get("agreement")
        if agreement:
            n = agreement["n_compared"]
            agree = [f"{agreement[p]['agree']}/{n}" for p in PARTS]
        else:
            agree = ["–", "–"]
        rows.append(
            [
                {"humaneval": "HumanEval(+)", "mbpp": "MBPP(+)"}.get(res["dataset"], res["dataset"]),
                str(res["version"]),
                str(res["n_tasks"]),
                f"{_pct(res['base']['pass_at_1'])} ({res['base']['passed']})",
                f"{_pct(res['plus']['pass_at_1'])} ({res['plus']['passed']})",
                f"{paper[0]:.1f}" if paper else "–",
                f"{paper[1]:.1f}" if paper else "–",
                *agree,
            ]
        )
    return rows


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """:func:`table_rows` as a markdown table."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines.extend("| " + " | ".join(row) + " |" for row in table_rows(results))
    return "\n".join(lines) + "\n"


def write_table(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> str:
    """Read score files and write :func:`markdown_table` of them to ``out``; returns the text."""
    results = []
    for path in inputs:
        with open(path, encoding="utf-8") as handle:
            results.append(json.load(handle))
    text = markdown_table(results)
    with atomic_writer(out) as handle:
        handle.write(text)
    return text
