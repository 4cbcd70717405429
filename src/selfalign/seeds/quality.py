"""The high-quality subset of the seeds: functions that return a value and type-check cleanly.

This reproduces bigcode's ``seed_gathering/high_quality_subset.py``, in its order:

1. **Return check.** A function is kept only if some ``return`` statement in it carries a value.
   Like upstream, this is the tree-sitter query ``(return_statement) @return`` over the whole
   function text (nested definitions included), and a statement counts when its node has more
   than one child (the ``return`` keyword plus an expression).
2. **Import inference.** ``autoimport.fix_code`` adds the imports a function needs (and drops
   unused ones, moving imports to the top), under a time limit; on a timeout or an error the
   code is kept unchanged and the failure is counted.
3. **Type check.** Pyright checks batches of functions, each written to its own ``<sha1>.py``;
   a function whose file has any ``error`` diagnostic is dropped.

Where we differ from upstream, and why:

* Upstream silently dropped a whole batch when Pyright crashed or timed out. Here a failed run
  is retried, then bisected down to single functions, so one pathological function costs only
  itself; a function on which Pyright still fails is dropped as ``pyright_failed`` and its id
  is reported in the stats.
* Pyright is run with ``--pythonpath sys.executable`` and an empty ``pyrightconfig.json`` in its
  working directory, so import resolution uses exactly this environment and no configuration
  file above the temporary directory can leak in. Which imports resolve is therefore a property
  of the environment: it is recorded in the stats (``pyright_python``), together with the
  Pyright and autoimport versions.
* autoimport runs in a pool of worker processes instead of under ``SIGALRM`` in the main
  process, so a hung call can be killed without taking the stage with it, and its "objects of
  the project in the current directory" lookup is switched off (it imports a module named after
  the working directory, which would make the output depend on where the stage is started;
  upstream's working directory was not an importable package, so it never contributed there).
* Upstream batched 250 *survivors of the return check*; a unit here is ``pyright_batch_size``
  *input records*, so Pyright batches can be smaller. Pyright checks each file on its own, so
  this changes only speed, never which functions are kept.

Determinism: units are contiguous slices of the shard, written in input order; autoimport is a
pure function of the code, and Pyright's verdict on a file does not depend on the other files in
its batch. The output bytes therefore depend neither on ``workers`` nor on how many units a
killed run had finished (timeouts aside, which depend on the machine by nature).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from multiprocessing.pool import Pool
from pathlib import Path
from types import FrameType
from typing import Any

import tree_sitter_python
from autoimport.model import SourceCode
from tree_sitter import Language, Parser, Query, QueryCursor

from ..config import check_params
from ..records import (
    JsonObj,
    RecordError,
    count_lines,
    iter_jsonl,
    sha256_file,
)
from ..runtime import StageStats, UnitPlan, UnitRun, drive, shard_bounds
from ..runtime.resume import UnitResult

log = logging.getLogger(__name__)

#: Upstream's query: every return statement, wherever it is in the function.
RETURN_QUERY = "(return_statement) @return"

#: Bumped when this stage's logic changes, so resumable parts of an older version are dropped.
QUALITY_VERSION = 1

#: The Pyright command (argv prefix) to run instead of the installed one; tests put a fake here.
#: None means :func:`pyright_command`'s default.
PYRIGHT_COMMAND: list[str] | None = None

#: How much longer than its own alarm an autoimport call may take before its worker is killed.
#: The alarm interrupts Python code; this backstop is for a call stuck where signals cannot
#: reach it (inside a C extension), which would otherwise block a worker forever.
AUTOIMPORT_HARD_GRACE_S = 10.0

#: How long a fresh autoimport worker pool may take to answer its first call.
WORKER_START_TIMEOUT_S = 120.0

#: How long ``pyright --version`` may take (the PyPI wrapper may first fetch the npm package).
VERSION_TIMEOUT_S = 300.0

_TAIL_CHARS = 400


# ------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class QualityParams:
    """The ``seeds.quality`` section of the config; defaults are upstream's values."""

    require_return: bool = True
    infer_imports: bool = True
    autoimport_timeout_s: float = 10.0
    pyright_batch_size: int = 250
    pyright_timeout_s: float = 120.0
    pyright_retries: int = 2

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityParams:
        """Build from a config mapping; an unknown key is a typo, so it is an error, not ignored."""
        check_params(cls, data, "seeds.quality")  # types and bounds: the schema's
        return cls(**data)


# ------------------------------------------------------------------------------ return check


@cache
def _language() -> Language:
    return Language(tree_sitter_python.language())


@cache
def _return_query() -> Query:
    return Query(_language(), RETURN_QUERY)


@cache
def _parser() -> Parser:
    """One parser per process: building one per function would cost more than the parse."""
    return Parser(_language())


def has_return_value(code: str) -> bool:
    """Whether any ``return`` statement in ``code`` returns a value (upstream's rule).

    A bare ``return`` has one child (the keyword); ``return x`` has two. Returns in nested
    functions and classes count too, as they did upstream. tree-sitter is used rather than
    :mod:`ast` for upstream's error recovery: code that does not fully parse is judged on the
    statements tree-sitter still recognises.
    """
    tree = _parser().parse(code.encode("utf-8", "surrogatepass"))
    captures = QueryCursor(_return_query()).captures(tree.root_node)
    return any(node.child_count > 1 for node in captures.get("return", []))


# -------------------------------------------------------------------------- import inference


class _AlarmTimeout(Exception):
    """Raised in an autoimport worker by its alarm."""


def _raise_alarm(signum: int, frame: FrameType | None) -> None:
    raise _AlarmTimeout


class _SourceCode(SourceCode):
    """autoimport's fixer without its lookup in "the project in the current directory".

    That lookup imports a module named after the working directory, so the output would depend
    on where the stage is started (and could run arbitrary import-time code).
    """

    @staticmethod
    def _find_package_in_our_project(name: str) -> str | None:
        return None


def _fix_code(code: str) -> str:
    """``autoimport.fix_code(code)`` with its defaults, minus the project lookup."""
    return _SourceCode(code).fix()


def _autoimport_init() -> None:
    """Make a worker's autoimport independent of where the stage was started.

    autoimport resolves an undefined name ``x`` to ``import x`` when a module ``x`` is
    importable, so the working directory must not be on ``sys.path``.
    """
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]


def _ping() -> bool:
    return True


def _autoimport_task(code: str, timeout_s: float) -> tuple[str, str | None]:
    """Run autoimport on one function in a worker: ``(code, None)`` or ``(original, reason)``."""
    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        fixed = _fix_code(code)
    except _AlarmTimeout:
        return code, "timeout"
    except Exception as exc:  # autoimport's failures are many and undocumented: keep the code
        return code, f"error: {type(exc).__name__}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return fixed, None


class _ImportFixer:
    """A pool of autoimport worker processes with per-call time limits.

    Each call has an alarm in its worker (``timeout``). A call that outlives its alarm by
    :data:`AUTOIMPORT_HARD_GRACE_S` (``hard_timeout``: stuck in C code, or its worker died) is
    given up on: the pool is killed and restarted, and the calls after it are resubmitted.
    """

    def __init__(self, workers: int, timeout_s: float):
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self._pool: Pool | None = None

    def _start(self) -> Pool:
        if self._pool is None:
            # spawn, not fork: the parent has threads (Pyright runners, tqdm's monitor).
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(self.workers, initializer=_autoimport_init)
            # Wait for a worker to be up, so that start-up does not eat into the first call's
            # time; a pool whose workers die on start-up would otherwise respawn them forever.
            try:
                self._pool.apply_async(_ping).get(timeout=WORKER_START_TIMEOUT_S)
            except Exception as exc:
                self.close()
                raise RuntimeError(
                    f"autoimport worker processes did not start within {WORKER_START_TIMEOUT_S:g} s"
                    " (is the main module importable? see the workers' errors above)"
                ) from exc
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> _ImportFixer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fix_many(self, codes: Sequence[str]) -> list[tuple[str, str | None]]:
        """``(new code, failure reason or None)`` for each code, in order."""
        results: list[tuple[str, str | None]] = []
        while len(results) < len(codes):
            pool = self._start()
            handles = [
                pool.apply_async(_autoimport_task, (code, self.timeout_s))
                for code in codes[len(results) :]
            ]
            # Tasks start in submission order, so by the time the previous result is in, this
            # one has been running (or starts at once): the wait below bounds its own run time.
            for handle in handles:
                code = codes[len(results)]
                try:
                    results.append(handle.get(timeout=self.timeout_s + AUTOIMPORT_HARD_GRACE_S))
                except multiprocessing.TimeoutError:
                    log.warning(
                        "autoimport ignored its %.1f s alarm for %.0f s more; restarting workers",
                        self.timeout_s,
                        AUTOIMPORT_HARD_GRACE_S,
                    )
                    results.append((code, "hard_timeout"))
                    self.close()
                    break
                except Exception as exc:  # raised in the worker outside the task's own handler
                    results.append((code, f"error: {type(exc).__name__}"))
        return results


def infer_imports(code: str, timeout_s: float) -> tuple[str, str | None]:
    """Add the imports ``code`` needs with autoimport, in a worker process, within ``timeout_s``.

    Returns ``(new code, None)``, or ``(code, reason)`` unchanged when autoimport timed out
    (``"timeout"``, ``"hard_timeout"``) or raised (``"error: <exception type>"``). Starts a
    worker per call; :func:`run_quality` keeps a pool instead.
    """
    with _ImportFixer(1, timeout_s) as fixer:
        return fixer.fix_many([code])[0]


# ------------------------------------------------------------------------------------ Pyright


def pyright_command() -> list[str]:
    """The Pyright command: :data:`PYRIGHT_COMMAND`, else the console script beside ``python``.

    The script next to ``sys.executable`` (not the first ``pyright`` on ``PATH``) is the one
    installed with this environment; without it, ``python -m pyright``.
    """
    if PYRIGHT_COMMAND is not None:
        return list(PYRIGHT_COMMAND)
    script = Path(sys.executable).parent / "pyright"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pyright"]


def _pyright_env() -> dict[str, str]:
    # The PyPI wrapper would otherwise ask the network for the latest version on every run.
    return {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}


def pyright_version(command: Sequence[str] | None = None) -> str:
    """The version Pyright reports (e.g. ``1.1.414``), recorded with the stage's stats."""
    argv = [*(command if command is not None else pyright_command()), "--version"]
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=VERSION_TIMEOUT_S,
        env=_pyright_env(),
    )
    found = re.findall(r"^pyright (\S+)\s*$", proc.stdout, flags=re.MULTILINE)
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"{shlex.join(argv)} failed (exit code {proc.returncode}): "
            f"{_tail(proc.stderr or proc.stdout)}"
        )
    return str(found[-1])


def _tail(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


@dataclass
class PyrightReport:
    """How much Pyright work a type check took, for the stats."""

    runs: int = 0
    retries: int = 0
    bisections: int = 0
    seconds: float = 0.0
    #: each checked file's first error, ``line:column: message (rule)``, for the drop records
    first_errors: dict[str, str] = field(default_factory=dict)
    #: :attr:`first_errors` per code given to :func:`typecheck_report`, in its order
    errors_by_code: list[str | None] = field(default_factory=list)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill Pyright and everything it started: the PyPI wrapper runs ``node`` as a child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
        proc.kill()
        proc.wait()


def _parse_output(
    returncode: int, stdout: str, stderr: str, names: list[str], first: dict[str, str] | None = None
) -> dict[str, int] | str:
    """Per-file error counts from Pyright's JSON, or why this run cannot be trusted; with
    ``first``, each file's first error message goes into it (only when the run is trusted)."""
    if returncode not in (0, 1):
        return f"exit code {returncode}: {_tail(stderr or stdout)}"
    try:
        data = json.loads(stdout)
    except ValueError:
        return f"exit code {returncode} with unparsable JSON output: {_tail(stdout or stderr)}"
    diagnostics = data.get("generalDiagnostics") if isinstance(data, dict) else None
    if not isinstance(diagnostics, list):
        return "JSON output without a generalDiagnostics list"
    counts = dict.fromkeys(names, 0)
    messages: dict[str, str] = {}
    for diag in diagnostics:
        if not isinstance(diag, dict) or diag.get("severity") != "error":
            continue
        file = diag.get("file")
        name = Path(file).name if isinstance(file, str) else None
        if name not in counts:
            return (
                f"an error outside the checked files ({file!r}): {_tail(str(diag.get('message')))}"
            )
        counts[name] += 1
        if name not in messages:
            messages[name] = _diagnostic_text(diag)
    summary = data.get("summary")
    analyzed = summary.get("filesAnalyzed") if isinstance(summary, dict) else None
    if isinstance(analyzed, int) and analyzed != len(names):
        return f"analyzed {analyzed} of {len(names)} files"
    if (returncode == 1) != any(counts.values()):
        return f"exit code {returncode} disagrees with {sum(counts.values())} error diagnostic(s)"
    if first is not None:
        first.update(messages)
    return counts


def _diagnostic_text(diag: dict[str, Any]) -> str:
    """``line:column: message (rule)`` of one Pyright diagnostic (1-based, as editors show)."""
    start = (diag.get("range") or {}).get("start") or {}
    where = f"{int(start.get('line', -1)) + 1}:{int(start.get('character', -1)) + 1}" if start else "?"
    rule = f" ({diag['rule']})" if diag.get("rule") else ""
    return f"{where}: {diag.get('message', '')}{rule}"


def _run_pyright(
    names: list[str],
    files: dict[str, bytes],
    command: list[str],
    timeout_s: float,
    report: PyrightReport,
) -> dict[str, int] | str:
    """One Pyright run over ``names``: per-file error counts, or why the run failed."""
    with tempfile.TemporaryDirectory(prefix="selfalign-pyright-") as tmp:
        root = Path(tmp)
        # Pins Pyright's defaults: without it, a config file above $TMPDIR would be used.
        (root / "pyrightconfig.json").write_text("{}\n", encoding="utf-8")
        for name in names:
            (root / name).write_bytes(files[name])
        argv = [*command, "--outputjson", "--pythonpath", sys.executable, *names]
        report.runs += 1
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_pyright_env(),
            start_new_session=True,  # its own process group, so a timeout can kill node too
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return f"timed out after {timeout_s:g} s"
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            report.seconds += time.monotonic() - started
    return _parse_output(
        proc.returncode,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
        names,
        report.first_errors,
    )


def _check_files(
    names: list[str],
    files: dict[str, bytes],
    command: list[str],
    params: QualityParams,
    report: PyrightReport,
) -> dict[str, int | None]:
    """Error counts for ``names``, retrying failed runs and bisecting batches that keep failing.

    A run that fails ``1 + pyright_retries`` times is split in halves, each checked the same
    way, so a function that crashes or hangs Pyright is isolated in about ``log2(batch)``
    levels while the rest of its batch is still judged. A single file that keeps failing
    gets None.
    """
    attempts = 1 + params.pyright_retries
    reason = ""
    for attempt in range(1, attempts + 1):
        outcome = _run_pyright(names, files, command, params.pyright_timeout_s, report)
        if not isinstance(outcome, str):
            return dict(outcome)
        reason = outcome
        if attempt < attempts:
            report.retries += 1
            log.warning(
                "pyright failed on %d file(s) (%s); retry %d of %d",
                len(names),
                reason,
                attempt,
                params.pyright_retries,
            )
    if len(names) == 1:
        log.warning(
            "pyright failed %d time(s) on %s alone (%s); giving up on it",
            attempts,
            names[0],
            reason,
        )
        return {names[0]: None}
    mid = len(names) // 2
    report.bisections += 1
    log.warning(
        "pyright failed %d time(s) on %d files (%s); bisecting into %d + %d",
        attempts,
        len(names),
        reason,
        mid,
        len(names) - mid,
    )
    results = _check_files(names[:mid], files, command, params, report)
    results.update(_check_files(names[mid:], files, command, params, report))
    return results


def typecheck_report(
    codes: Sequence[str], params: QualityParams, command: Sequence[str] | None = None
) -> tuple[list[int | None], PyrightReport]:
    """:func:`typecheck`, plus how many runs, retries and bisections it took."""
    argv = list(command) if command is not None else pyright_command()
    files: dict[str, bytes] = {}
    names: list[str] = []
    for code in codes:
        data = code.encode("utf-8")
        name = hashlib.sha1(data).hexdigest() + ".py"  # upstream's file naming
        names.append(name)
        files.setdefault(name, data)  # identical functions share one file and one verdict
    report = PyrightReport()
    counts = _check_files(list(files), files, argv, params, report) if files else {}
    report.errors_by_code = [report.first_errors.get(name) for name in names]
    return [counts[name] for name in names], report


def typecheck(
    codes: Sequence[str], params: QualityParams, command: Sequence[str] | None = None
) -> list[int | None]:
    """Pyright's error count for each code (0 = clean), or None where Pyright kept failing.

    All codes are checked in one Pyright run (callers batch them), each in its own file
    ``<sha1>.py`` of a fresh temporary directory. ``command`` replaces :func:`pyright_command`.
    Exit codes 0 and 1 are normal results; any other exit code, output that is not Pyright's
    JSON, or a run longer than ``pyright_timeout_s`` (whose whole process group is then killed)
    is a failed run, retried ``pyright_retries`` times and then bisected. Codes must be
    encodable as UTF-8.
    """
    return typecheck_report(codes, params, command)[0]


# ---------------------------------------------------------------------------------- the stage


@dataclass
class _Prepared:
    """A unit after the return check and import inference, waiting for Pyright."""

    unit: int
    records: list[JsonObj]
    codes: list[str | None]  # the code to type-check, or None when the record was dropped
    stats: StageStats
    autoimport_errors: Counter[str] = field(default_factory=Counter)
    #: what autoimport did to each record's code: "added imports", "unchanged", or its failure
    autoimport: dict[int, str] = field(default_factory=dict)


def _shard_units(
    input_path: Path, lo: int, hi: int, per_unit: int, done: frozenset[int]
) -> Iterator[tuple[int, list[JsonObj]]]:
    """The pending units of records ``[lo, hi)`` of the input, validating every record read.

    The records before ``lo`` are read (and checked) too: they cannot be skipped without
    parsing, and line numbers in errors must be the file's.
    """
    records = itertools.islice(iter_jsonl(input_path, {"id": str, "content": str}), hi)
    unit_records: list[JsonObj] = []
    unit = 0
    for lineno, record in records:
        index = lineno - 1  # one record per line: the strict reader allows no blank lines
        if index < lo:
            continue
        if (index - lo) // per_unit != unit:
            if unit_records:
                yield unit, unit_records
            unit_records, unit = [], (index - lo) // per_unit
        if unit in done:
            continue
        try:
            record["content"].encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(
                input_path, lineno, "not encodable as UTF-8 (a lone surrogate?)", field="content"
            ) from None
        unit_records.append(record)
    if unit_records:
        yield unit, unit_records


def _prepare(
    unit: int, records: list[JsonObj], params: QualityParams, fixer: _ImportFixer | None
) -> _Prepared:
    """Return check and import inference for one unit (in this process and the autoimport pool)."""
    stats = StageStats(n_in=len(records))
    codes: list[str | None] = []
    for record in records:
        # no return value: dropped (as no_return) by _check_unit, in input order with the rest
        if params.require_return and not has_return_value(record["content"]):
            codes.append(None)
        else:
            codes.append(record["content"])
    prepared = _Prepared(unit, records, codes, stats)
    if fixer is not None:
        todo = [i for i, code in enumerate(codes) if code is not None]
        fixed = fixer.fix_many([records[i]["content"] for i in todo])
        for i, (code, failure) in zip(todo, fixed, strict=True):
            codes[i] = code
            prepared.autoimport[i] = failure or ("added imports" if code != records[i]["content"] else "unchanged")
            if failure is not None:
                prepared.autoimport_errors[failure.removeprefix("error: ")] += 1
                log.warning(
                    "%s: autoimport failed (%s); keeping its code", records[i]["id"], failure
                )
    return prepared


def _check_unit(prepared: _Prepared, params: QualityParams, command: list[str]) -> UnitResult:
    """Pyright for one prepared unit, and its records and stats (runs in a thread)."""
    todo = [(i, code) for i, code in enumerate(prepared.codes) if code is not None]
    counts, report = typecheck_report([code for _, code in todo], params, command)
    verdicts = {i: errors for (i, _), errors in zip(todo, counts, strict=True)}
    stats = prepared.stats
    out: list[JsonObj] = []
    failed_ids: list[str] = []
    first_errors = dict(zip((i for i, _ in todo), report.errors_by_code, strict=True))
    for i, record in enumerate(prepared.records):
        if i not in verdicts:
            stats.drop("no_return", id=record["id"], detail={"check": "the function returns no value"})
            continue
        errors = verdicts[i]
        autoimport = prepared.autoimport.get(i, "not run")
        if errors is None:
            stats.drop("pyright_failed", id=record["id"], detail={"autoimport": autoimport})
            failed_ids.append(record["id"])
            log.warning("%s: pyright kept failing on it; dropped as pyright_failed", record["id"])
        elif errors:
            stats.drop(
                "pyright_error",
                id=record["id"],
                detail={"errors": errors, "first_error": first_errors.get(i), "autoimport": autoimport},
            )
        else:
            out.append({**record, "content": prepared.codes[i]})
    stats.n_out = len(out)
    stats.check_balance()
    stats.extra = {
        "autoimport_failed": sum(prepared.autoimport_errors.values()),
        "autoimport_errors": dict(sorted(prepared.autoimport_errors.items())),
        "pyright_failed_ids": failed_ids,
        "pyright_runs": report.runs,
        "pyright_retries": report.retries,
        "pyright_bisections": report.bisections,
        "pyright_seconds": round(report.seconds, 3),
    }
    return UnitResult(out, stats.to_json())


def run_quality(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    params: QualityParams,
    shard: int = 0,
    num_shards: int = 1,
    workers: int = 1,
    show_progress: bool = True,
) -> StageStats:
    """Keep the functions of one shard of ``input_path`` that pass the quality checks.

    Input records need a string ``id`` and ``content``; a shard is the contiguous slice
    :func:`shard_bounds` gives it. Survivors keep every field, in input order, with ``content``
    replaced by the import-inferred code. Drops: ``no_return``, ``pyright_error``,
    ``pyright_failed``. Work is done in resumable units of ``pyright_batch_size`` records:
    after a kill, a rerun redoes only unfinished units. ``workers`` sizes the autoimport pool
    and the number of Pyright runs in flight.
    """
    stage = _Quality(Path(input_path), params, shard, num_shards, max(1, workers))
    return drive(stage, output_path, show_progress=show_progress)


@dataclass
class _Quality:
    """The quality checks as a :class:`selfalign.runtime.UnitStage`: a unit is
    ``pyright_batch_size`` records, one Pyright run; ``workers`` units in flight."""

    input_path: Path
    params: QualityParams
    shard: int
    num_shards: int
    workers: int
    lo: int = field(default=0, init=False)  # the shard's records, set by plan()
    hi: int = field(default=0, init=False)
    command: list[str] = field(default_factory=list, init=False)
    environment: dict[str, str] = field(default_factory=dict, init=False)

    def plan(self) -> UnitPlan:
        self.lo, self.hi = shard_bounds(count_lines(self.input_path), self.shard, self.num_shards)
        self.command = pyright_command()
        self.environment = {
            "pyright_version": pyright_version(self.command),
            "pyright_command": shlex.join(self.command),
            "pyright_python": sys.executable,
            "autoimport_version": metadata.version("autoimport"),
            "tree_sitter_python_version": metadata.version("tree-sitter-python"),
        }
        return UnitPlan(
            stage="seeds.quality",
            version=QUALITY_VERSION,
            key={
                "params": asdict(self.params),
                "input_sha256": sha256_file(self.input_path),
                "input_size": self.input_path.stat().st_size,
                "shard": self.shard,
                "num_shards": self.num_shards,
                **self.environment,
            },
            total=self.hi - self.lo,
            per_unit=self.params.pyright_batch_size,
            desc="quality",
        )

    def process(self, run: UnitRun) -> None:
        params, workers = self.params, self.workers
        fixer = _ImportFixer(workers, params.autoimport_timeout_s) if params.infer_imports else None
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyright") as threads:
                in_flight: dict[Future[UnitResult], int] = {}

                def drain(until: int) -> None:
                    while len(in_flight) > until:
                        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        for future in sorted(finished, key=in_flight.__getitem__):
                            unit = in_flight.pop(future)
                            result = future.result()
                            run.write(unit, result.records, result.stats)
                            run.advance(len(run.plan.unit_range(unit)))

                units = _shard_units(self.input_path, self.lo, self.hi, params.pyright_batch_size, run.done)
                for unit, records in units:
                    prepared = _prepare(unit, records, params, fixer)
                    in_flight[threads.submit(_check_unit, prepared, params, self.command)] = unit
                    drain(workers - 1)
                drain(0)
        finally:
            if fixer is not None:
                fixer.close()

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        return _summarize(units, self.environment, run.plan.n_units, len(run.done))


def _summarize(
    unit_stats: list[JsonObj], environment: dict[str, str], n_units: int, resumed: int
) -> StageStats:
    """Add up the units' stats (in unit order, so failed ids stay in input order)."""
    stats = StageStats()
    autoimport_errors: Counter[str] = Counter()
    failed_ids: list[str] = []
    sums = dict.fromkeys(
        ("autoimport_failed", "pyright_runs", "pyright_retries", "pyright_bisections"), 0
    )
    seconds = 0.0
    for summary in unit_stats:
        stats.merge(StageStats.from_json(summary))
        extra = summary["extra"]
        for key in sums:
            sums[key] += extra[key]
        autoimport_errors.update(extra["autoimport_errors"])
        failed_ids.extend(extra["pyright_failed_ids"])
        seconds += extra["pyright_seconds"]
    stats.extra = {
        **environment,
        **sums,
        "autoimport_errors": dict(sorted(autoimport_errors.items())),
        "pyright_failed_ids": failed_ids,
        "pyright_seconds": round(seconds, 3),
        "units": n_units,
        "units_resumed": resumed,
    }
    return stats
