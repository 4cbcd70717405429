"""The execution filter: run each response's code and its self-written tests in a sandbox.

For every sample of every record: take the ```` ```python ```` blocks that parse (upstream's
``extract_code``: the same pattern, uncompilable blocks left out, the rest joined with a
newline), run them as one module in :mod:`selfalign.sandbox` (gVisor by default), and keep the
samples that pass, one output record each. A sample passes only when the whole module ran to
its end; see :class:`selfalign.sandbox.Verdict`.

Input records may be our ``responses.jsonl`` (``responses``: a list of ``{sample, response}``),
upstream's I->R output (``parsing_result``: a list of ``{response}``), or records with a single
``response`` (e.g. the published ``exec-filter`` sets, to re-check them). Output records keep
every field of their input record except the list of responses, and add ``response``,
``sample``, ``source_id`` (the input record's id), ``id`` (``<source_id>/<sample>``) and
``execution`` (status, reason and the time limit). Measured run times vary from run to run,
so they go to the sidecar (total, max, by status), not into the records, which stay
byte-identical on rerun.

How a sample runs is ``exec_mode``. ``config.yaml`` (the release) uses ``release``: the
release's ``execution_filter.py`` (0b19dbc) reproduced inside the sandbox -- ``exec(code)``
inside a function after evalplus's ``reliability_guard``, with the script's module globals,
``swallow_io`` and ``time_limit(4)``, the process joined for 10 s, exit status 0 a pass -- with
the release's numpy importable (``sample_site``). That mode rejects correct solutions whose
top-level functions call each other or themselves (their names land in the function's locals,
invisible to the functions), and passes a sample that calls ``os._exit(0)`` half-way. The
corrected overlay uses ``module``: the sample runs as one module and must run to its end.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import check_params
from .records import (
    JsonObj,
    RecordError,
    count_lines,
    iter_jsonl,
    sha256_file,
)
from .runtime import StageStats, UnitPlan, UnitRun, drive, merge_units, shard_bounds
from .sandbox.backends import validate_backend_choice
from .sandbox.verdict import Verdict

log = logging.getLogger(__name__)

#: Bump when how verdicts become records changes: stale resumable parts are dropped.
EXECUTION_VERSION = 1
#: ``execution.sample_site: bundled``: the packages scripts/setup.sh installs beside the venv.
BUNDLED = "bundled"
#: The release's ``p.join(timeout=10)``: how long a sample's process lived under exec_mode release.
RELEASE_JOIN_S = 10.0

#: Upstream's ``extract_code`` pattern: a fence that opens a line, up to the next fence line.
CODE_BLOCK = re.compile(r"^```python\s*\n(.*?)(?=^```)", re.DOTALL | re.MULTILINE)


def resolve_sample_site(value: str | None) -> str | None:
    """A ``sample_site`` setting as a directory: ``bundled`` is the packages scripts/setup.sh
    installs beside the running interpreter's venv (envs/sample-release.txt), ``bundled:<name>``
    those of envs/sample-<name>.txt; None stays None (stdlib only)."""
    if value is None:
        return None
    if value == BUNDLED:
        return str(Path(sys.prefix) / "sample-release")
    if value.startswith(BUNDLED + ":"):
        return str(Path(sys.prefix) / f"sample-{value.split(':', 1)[1]}")
    return str(Path(value).expanduser())


@dataclass(frozen=True)
class ExecutionParams:
    """How samples are run; ``backend`` none needs ``allow_unsandboxed: true`` and warns;
    ``image`` is backend podman's sandbox image (default ``localhost/selfalign/sandbox:latest``).
    """

    backend: str = "gvisor"
    timeout_s: float = 4.0
    memory_mb: int = 1024
    workers: int = 2
    allow_unsandboxed: bool = False
    exec_mode: str = "module"
    """``release``: the release's execution filter reproduced (``selfalign.sandbox.runner.
    release_run``); ``module``: the sample runs as one module and must run to its end;
    ``function``: module mode with the release's function-body scoping only."""
    sample_site: str | None = None
    """Packages samples may import (read-only in the sandbox): ``bundled`` is the release's
    numpy and tqdm that scripts/setup.sh (and the pipeline image) install from
    envs/sample-release.txt into ``<the running venv>/sample-release``; a path; None: stdlib
    only."""
    records_per_unit: int = 256
    image: str | None = None
    verdict_cache: bool = False
    """Run identical code once per unit and give each copy its verdict (the samples of one
    instruction are often identical); ``False``: every sample runs, as the release did."""
    max_response_chars: int | None = None
    """A sample whose response is longer is dropped as ``too_long`` without being parsed or run
    (bounded time for an oversized record); None: no cap, as the release had none."""
    recheck_time_limits: bool = True
    """A sample a time limit stopped (``timeout``; under exec_mode release also the alarm's
    ``exception:TimeoutException``) runs once more, alone, after its unit, and that verdict is
    final: load from the unit's other samples cannot decide it. False: one run, as the release."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionParams:
        check_params(cls, data, "execution")  # types, bounds, choices: the schema's
        made = cls(**dict(data))
        validate_backend_choice(made.backend, made.allow_unsandboxed, "execution", made.image)
        return made

    def resolved_sample_site(self) -> str | None:
        """``sample_site`` as a directory (``bundled``: beside the running interpreter's venv)."""
        return resolve_sample_site(self.sample_site)

    def process_timeout_s(self) -> float:
        """How long a sample's process may live: the release joined it for 10 s after its
        4 s alarm; otherwise ``timeout_s``."""
        return max(self.timeout_s, RELEASE_JOIN_S) if self.exec_mode == "release" else self.timeout_s

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def site_manifest(site: str | None) -> list[str]:
    """The distributions installed in a sample-packages directory (for fingerprints/sidecars)."""
    if not site or not os.path.isdir(site):
        return []
    return sorted(name.removesuffix(".dist-info") for name in os.listdir(site) if name.endswith(".dist-info"))


def compilable(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: source with NUL bytes
        return False
    return True


def extract_code(response: str) -> str:
    """The response's ```` ```python ```` blocks that parse, joined with newlines ('' if none)."""
    return "\n".join(block for block in CODE_BLOCK.findall(response) if compilable(block))


def samples_of(record: JsonObj, path: Path, line: int) -> list[tuple[int, str]]:
    """``(sample index, response text)`` of a record in any of the accepted shapes."""
    if "responses" in record:
        items, key = record["responses"], "responses"
    elif "parsing_result" in record:
        items, key = record["parsing_result"], "parsing_result"
    elif "response" in record:
        if not isinstance(record["response"], str):
            raise RecordError(path, line, f"expected str, got {type(record['response']).__name__}", "response")
        return [(0, record["response"])]
    else:
        raise RecordError(
            path, line, "no 'responses', 'parsing_result' or 'response' field", "responses"
        )
    if not isinstance(items, list):
        raise RecordError(path, line, f"expected list, got {type(items).__name__}", key)
    found = []
    for position, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("response"), str):
            raise RecordError(path, line, f"{key}[{position}] needs a string 'response'", key)
        sample = item.get("sample", position)
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise RecordError(path, line, f"{key}[{position}].sample must be an integer", key)
        found.append((sample, item["response"]))
    return found


@dataclass
class _Task:
    record: JsonObj
    sample: int
    response: str
    code: str
    #: why there is nothing to run when ``code`` is '': ``no_code`` (no Python block parses),
    #: ``nul_byte`` (a block holds a NUL byte, which no Python source can), ``too_long``
    skip: str = "no_code"


def sample_task(record: JsonObj, sample: int, response: str, cap: int | None) -> _Task:
    """One sample of a record as the stage will treat it: its code to run, or why there is none."""
    if cap is not None and len(response) > cap:
        return _Task(record, sample, response, "", "too_long")
    code = extract_code(response)
    if not code and any("\0" in block for block in CODE_BLOCK.findall(response)):
        return _Task(record, sample, response, "", "nul_byte")
    return _Task(record, sample, response, code)


def _unit_tasks(
    records: list[tuple[int, JsonObj]], path: Path, stats: StageStats, cap: int | None = None
) -> list[_Task]:
    """Every sample of the unit's records, in input order; one without code has ``code`` ''."""
    tasks = []
    for line, record in records:
        if "id" not in record:
            # The release's I->R output has no id: the line number is its stable id here.
            record["id"] = f"line{line:09d}"
            stats.extra["ids_from_line_numbers"] = stats.extra.get("ids_from_line_numbers", 0) + 1
        elif not isinstance(record["id"], str):
            raise RecordError(path, line, f"must be a string, got {type(record['id']).__name__}", "id")
        for sample, response in samples_of(record, path, line):
            stats.n_in += 1
            tasks.append(sample_task(record, sample, response, cap))
    return tasks


#: An object's address in a message (``<function f at 0x7f3a...>``).
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
#: A traceback frame in the sample's own code (the runner names it ``<sample>``).
_SAMPLE_FRAME = re.compile(r'^File "<sample>", line (?P<line>\d+)')


def drop_detail(verdict: Verdict, code: str | None = None) -> JsonObj:
    """What a failed sample's drop record says: the verdict, the exception and its message
    (the traceback's last line), the line of the sample that raised it (for an assertion: the
    test that failed; its source from ``code``), and the stderr tail.

    Only what the sample's code decides goes in (no wall time; no output of a sample that was
    cut off by a timeout, or of a sandbox that broke), so a rerun writes the same bytes.
    """
    detail: JsonObj = {"status": verdict.status, "reason": verdict.reason}
    if verdict.status != "fail":
        return detail
    stderr = _ADDRESS.sub("0x…", verdict.stderr_tail)  # object addresses differ from run to run
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    if verdict.reason.startswith("exception:") or verdict.reason == "assertion":
        detail["exception"] = last
    for line in reversed(lines):
        found = _SAMPLE_FRAME.match(line.strip())
        if found:
            number = int(found["line"])
            source = code.splitlines()[number - 1].strip() if code and 0 < number <= len(code.splitlines()) else None
            detail["failing_line"] = {"line": number, "source": source}
            break
    detail["stderr_tail"] = stderr
    return detail


def time_decided(verdict: Verdict) -> bool:
    """Whether a time limit gave this verdict: the sandbox's (``timeout``) or the release's
    ``time_limit`` alarm inside the sample (exec_mode release)."""
    return verdict.status == "timeout" or verdict.reason == "exception:TimeoutException"


def _recheck(pool: Any, codes: list[str], verdicts: list[Verdict], timeout_s: float) -> tuple[list[Verdict], int]:
    """Run each sample a time limit stopped once more, one at a time (no other sample of the pool
    beside it), and keep that verdict: ``(verdicts, how many re-ran)``."""
    again = [i for i, verdict in enumerate(verdicts) if time_decided(verdict)]
    if not again:
        return verdicts, 0
    verdicts = list(verdicts)
    for i in again:
        [verdicts[i]] = pool.run_many([codes[i]], timeout_s=timeout_s)
    return verdicts, len(again)


def _output_record(task: _Task, status: str, reason: str, params: ExecutionParams) -> JsonObj:
    base = {
        k: v for k, v in task.record.items() if k not in ("responses", "parsing_result", "response")
    }
    return {
        **base,
        "id": f"{task.record['id']}/{task.sample}",
        "source_id": task.record["id"],
        "sample": task.sample,
        "response": task.response,
        "execution": {"status": status, "reason": reason, "time_limit_s": params.timeout_s},
    }


def _shard_units(
    path: Path, lo: int, hi: int, per_unit: int
) -> Iterator[list[tuple[int, JsonObj]]]:
    unit: list[tuple[int, JsonObj]] = []
    for index, (line, record) in enumerate(iter_jsonl(path, unique="id")):
        if index >= hi:
            break
        if index < lo:
            continue
        unit.append((line, record))
        if len(unit) == per_unit:
            yield unit
            unit = []
    if unit:
        yield unit


def run_execution(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    params: ExecutionParams,
    *,
    shard: int = 0,
    num_shards: int = 1,
    show_progress: bool = True,
) -> StageStats:
    """Execute one shard's samples and write the passing ones; returns counts for the sidecar.

    Counts are of samples: ``n_in`` every sample read, ``n_out`` those that passed, drops by
    reason (``no_code``, ``fail:<reason>``, ``timeout``, ``error:<reason>``). Resumable in
    units of ``records_per_unit`` input records (:func:`selfalign.runtime.drive`).
    """
    return drive(_Execution(Path(input_path), params, shard, num_shards), output, show_progress=show_progress)


@dataclass
class _Execution:
    """The execution filter as a :class:`selfalign.runtime.UnitStage`: a unit is
    ``records_per_unit`` input records, run on one :class:`~selfalign.sandbox.SandboxPool`."""

    path: Path
    params: ExecutionParams
    shard: int
    num_shards: int
    lo: int = field(default=0, init=False)  # the shard's records, set by plan()
    hi: int = field(default=0, init=False)

    def plan(self) -> UnitPlan:
        self.lo, self.hi = shard_bounds(count_lines(self.path), self.shard, self.num_shards)
        params = self.params
        return UnitPlan(
            stage="execute",
            version=EXECUTION_VERSION,
            key={
                "input_sha256": sha256_file(self.path),
                "shard": [self.shard, self.num_shards, self.lo, self.hi],
                "params": {k: v for k, v in params.to_dict().items() if k != "workers"},
                "sample_packages": site_manifest(params.resolved_sample_site()),
            },
            total=self.hi - self.lo,
            per_unit=params.records_per_unit,
            desc=f"execute {self.shard:04d}",
        )

    def process(self, run: UnitRun) -> None:
        from .sandbox import SandboxPool

        params = self.params
        sandbox_kwargs: dict[str, Any] = {
            "timeout_s": params.process_timeout_s(),
            "memory_bytes": params.memory_mb << 20,
            "exec_mode": params.exec_mode,
            "release_alarm_s": params.timeout_s,
            "sample_site": params.resolved_sample_site(),
        }
        if params.backend == "none":
            sandbox_kwargs["allow_unsandboxed"] = True
        if params.image is not None:
            sandbox_kwargs["image"] = params.image
        with SandboxPool(params.workers, params.backend, **sandbox_kwargs) as pool:
            for unit, records in enumerate(_shard_units(self.path, self.lo, self.hi, params.records_per_unit)):
                if unit in run.done:
                    continue
                kept, stats = self._run_unit(pool, records)
                run.write(unit, kept, stats)
                run.advance(len(records))

    def _run_unit(self, pool: Any, records: list[tuple[int, JsonObj]]) -> tuple[list[JsonObj], StageStats]:
        params = self.params
        stats = StageStats()
        tasks = _unit_tasks(records, self.path, stats, params.max_response_chars)
        codes = [t.code for t in tasks if t.code]
        # with the verdict cache, each distinct code of the unit runs once (same limits,
        # sandbox and mode for the whole stage, so the code decides the verdict)
        distinct = list(dict.fromkeys(codes)) if params.verdict_cache else codes
        verdicts = pool.run_many(distinct, timeout_s=params.process_timeout_s())
        seconds: dict[str, float] = {}
        for verdict in verdicts:  # sandbox time: each run once
            seconds[verdict.status] = seconds.get(verdict.status, 0.0) + verdict.seconds
        rechecked = 0
        if params.recheck_time_limits:
            verdicts, rechecked = _recheck(pool, distinct, verdicts, params.process_timeout_s())
        if params.verdict_cache:
            by_code = dict(zip(distinct, verdicts, strict=True))
            verdicts = [by_code[code] for code in codes]
        ran = iter(verdicts)
        kept: list[JsonObj] = []
        for task in tasks:  # in input order, so the drop records are too
            sample_id = f"{task.record['id']}/{task.sample}"
            if not task.code:
                detail: JsonObj = {"response_tail": task.response}
                if task.skip == "too_long":
                    detail = {"chars": len(task.response), "limit": params.max_response_chars}
                stats.drop(task.skip, id=sample_id, detail=detail)
                continue
            verdict = next(ran)
            if verdict.status == "pass":
                kept.append(_output_record(task, verdict.status, verdict.reason, params))
                stats.n_out += 1
            elif verdict.status == "timeout":
                stats.drop("timeout", id=sample_id, detail=drop_detail(verdict))
            else:
                stats.drop(f"{verdict.status}:{verdict.reason}", id=sample_id, detail=drop_detail(verdict, task.code))
        if next(ran, None) is not None:
            raise AssertionError("the sandbox pool returned more verdicts than it was given samples")
        stats.extra = {
            "seconds_by_status": {k: round(v, 3) for k, v in sorted(seconds.items())},
            "records": len(records),
            "ids_from_line_numbers": stats.extra.get("ids_from_line_numbers", 0),
            "sandbox_runs": len(distinct),
            "rechecks": rechecked,
        }
        return kept, stats

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        result = merge_units(units)
        by_status = result.extra.get("seconds_by_status") or {}
        result.extra = {
            **({"seconds_by_status": {k: round(v, 3) for k, v in sorted(by_status.items())}} if by_status else {}),
            **{key: result.extra.get(key, 0)
               for key in ("records", "ids_from_line_numbers", "sandbox_runs", "rechecks")},
            "backend": self.params.backend,
            "exec_mode": self.params.exec_mode,
            "verdict_cache": self.params.verdict_cache,
            "sample_packages": site_manifest(self.params.resolved_sample_site()),
        }
        return result
