"""What runs in the sandbox to score one EvalPlus task: its source is sent as the program.

:func:`selfalign.evaluation.score.build_job` sends this file's text followed by
``run(<job>, <tag>)``, the job pickled and base64-encoded. The sandboxed interpreter executes it
as a script with evalplus's site-packages on its path, never as part of ``selfalign``: it
imports only the standard library at module level (the host imports it for nothing but its
text, and a test that runs :func:`run` directly).

For each part (base, then plus) it computes the ground truth of the task's canonical solution
with ``evalplus.gen.util.trusted_exec(record_time=True)`` in the same sandbox, then checks the
sample with ``evalplus.eval.untrusted_check``. The sample runs in evalplus's forked child with
its output swallowed; only this parent prints lines starting with ``tag``, after the child is
gone, and the host takes the last tagged line of each part.

A part that fails because a time limit fired (evalplus's wall-clock ``time_limit`` on an input,
or its cap on a whole call) is re-checked once before its verdict is final (``job["recheck"]``):
from the input the limit stopped at, with the reference's times measured again beside it as CPU
time, and each input's limit, ``max(min_time_limit, factor x reference CPU time)``, applied to
the sample's CPU time (``ITIMER_PROF``), with a wall-clock limit of that times the slowdown a
fixed spin just measured (for a sample that waits instead of computing). CPU time is what a busy machine does not inflate, so the re-check gives the
idle machine's verdict; on an idle machine it is the same limit as the first check's.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle
import sys
import time
from typing import Any


def _cap_calls(job: dict[str, Any]) -> None:
    """evalplus's cap per call (its EVALPLUS_TIMEOUT_PER_TASK, which 0.2.1 reads as a string and
    cannot use): tests lower it to reach the resumption in :func:`_checks` in seconds."""
    import evalplus.eval as ev

    class CapOs:  # the real os (reliability_guard's changes included) but for one variable
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def getenv(self, key: str, default: Any = None) -> Any:
            return job["call_cap_s"] if key == "EVALPLUS_TIMEOUT_PER_TASK" else os.getenv(key, default)

    ev.os = CapOs()


class _Limits:
    """What the installed ``time_limit`` does (set in the parent before evalplus forks its child,
    which inherits it) and whether a limit fired in the child (shared memory)."""

    def __init__(self) -> None:
        import multiprocessing

        self.fired = multiprocessing.RawValue("i", 0)
        self.cpu = False  # re-check: limits apply to CPU time
        self.slowdown = 1.0  # re-check: wall-clock limit = CPU limit x this


def _watch_time_limits(limits: _Limits) -> None:
    """Replace evalplus's ``time_limit`` (looked up in its module by ``unsafe_execute``, and by
    :func:`_release_checker`'s copy) with one that records that it fired and, in a re-check,
    limits the CPU time too."""
    import contextlib
    import signal

    import evalplus.eval as ev
    from evalplus.eval.utils import TimeoutException

    wall_limit = ev.time_limit

    @contextlib.contextmanager
    def cpu_limit(seconds: float) -> Any:
        def handler(signum: int, frame: Any) -> None:
            raise TimeoutException("Timed out (CPU time)!")

        signal.signal(signal.SIGPROF, handler)
        signal.setitimer(signal.ITIMER_PROF, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    @contextlib.contextmanager
    def time_limit(seconds: float) -> Any:
        try:
            if limits.cpu:
                with wall_limit(seconds * limits.slowdown), cpu_limit(seconds):
                    yield
            else:
                with wall_limit(seconds):
                    yield
        except TimeoutException:
            limits.fired.value = 1
            raise

    ev.time_limit = time_limit


def _reference_cpu_times(job: dict[str, Any], inputs: list[Any]) -> list[float]:
    """The reference's CPU time per input. evalplus's ``trusted_exec`` records wall-clock time
    only, hence this loop (its own, with the clock changed)."""
    globals_: dict[str, Any] = {}
    exec(job["reference"], globals_)
    fn = globals_[job["entry_point"]]
    cpu: list[float] = []
    for inp in copy.deepcopy(inputs):
        c0 = time.process_time()
        fn(*inp)
        cpu.append(time.process_time() - c0)
    return cpu


def _slowdown(cpu_s: float = 0.1) -> float:
    """Wall-clock seconds per CPU second of a spin now (at least 1): how much a busy machine
    stretches this process's time. A fixed spin, not the reference's run, whose inputs often
    take less than the CPU clock resolves."""
    w0, c0 = time.perf_counter(), time.process_time()
    while time.process_time() - c0 < cpu_s:
        pass
    return max(1.0, (time.perf_counter() - w0) / (time.process_time() - c0))


def _release_checker(job: dict[str, Any]) -> None:
    """evalplus 25e195e0's ``unsafe_execute`` as the release ran it (see ``score.CHECKERS``): its
    special oracles, set equality for ``MBPP_OUTPUT_SET_EQ_TASKS``, and an exact comparison
    otherwise. ``untrusted_check`` looks ``unsafe_execute`` up in its module when it forks, so
    this replaces it."""
    import evalplus.eval as ev
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS, _poly
    from evalplus.eval.utils import create_tempdir, reliability_guard, swallow_io

    def release_execute(dataset: str, entry_point: str, code: str, inputs: list[Any], expected: list[Any],
                        time_limits: list[float], atol: float, fast_check: bool, stat: Any, details: Any,
                        progress: Any) -> None:
        with create_tempdir():
            import shutil

            rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
            reliability_guard(maximum_memory_bytes=4 * 1024 * 1024 * 1024)
            exec_globals: dict[str, Any] = {}
            try:
                with swallow_io():
                    exec(code, exec_globals)
                    fn = exec_globals[entry_point]
                for i, inp in enumerate(inputs):
                    try:
                        with ev.time_limit(time_limits[i]):  # :func:`_watch_time_limits`'s
                            with swallow_io():
                                out = fn(*inp)
                        exp = expected[i]
                        exact_match = out == exp
                        if dataset == "mbpp":
                            if entry_point == "are_equivalent":
                                exact_match = True
                            elif entry_point == "sum_div":
                                exact_match = exact_match or out == 0
                            elif entry_point in job["set_eq_tasks"]:
                                exact_match = set(out) == set(exp)
                            elif entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
                                exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
                        if dataset == "humaneval" and entry_point == "find_zero":
                            assert _poly(*inp, out) <= atol
                        # the release's np.testing.assert_allclose raised: only exact passes
                        assert exact_match
                    except BaseException:
                        if fast_check:
                            raise
                        details[i] = False
                        progress.value += 1
                        continue
                    details[i] = True
                    progress.value += 1
                stat.value = ev._SUCCESS
            except BaseException:
                stat.value = ev._FAILED
            shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir

    ev.unsafe_execute = release_execute


def _checks(job: dict[str, Any], inputs: list[Any], expected: list[Any],
            ref_time: list[float]) -> tuple[str, int, int]:
    """``(status, inputs finished, calls)`` of the sample on ``inputs``.

    evalplus caps one call at min(60 s, sum of the inputs' limits) + 1 s: an absolute cap that a
    slow or loaded machine hits although every input stays within its own limit (Mbpp/599). A
    call the cap stops ("timeout") after passing some inputs goes on from the first unfinished
    one in a new call, so only the per-input limits decide; a call that finishes no input is a
    timeout. A part within the cap is one call, exactly as in evalplus.
    """
    from evalplus.eval import untrusted_check

    calls, start = 0, 0
    while True:
        calls += 1
        status, details = untrusted_check(
            job["dataset"], job["solution"], inputs[start:], job["entry_point"],
            expected=expected[start:], atol=job["atol"], ref_time=ref_time[start:],
            fast_check=True, min_time_limit=job["min_time_limit"],
            gt_time_limit_factor=job["gt_time_limit_factor"],
        )
        done = start + len(details)
        if status != "timeout" or not len(details) or done >= len(inputs):
            return status, done, calls
        start = done


def _check_part(job: dict[str, Any], limits: _Limits, inputs: list[Any], expected: list[Any],
                ref_time: list[float]) -> tuple[str, int, int, dict[str, Any] | None]:
    """:func:`_checks` on a part, then, where a time limit decided a failure, the re-check (see
    the module's docstring): ``(status, inputs finished, calls, the re-check's facts or None)``."""
    limits.fired.value = 0
    status, done, calls = _checks(job, inputs, expected, ref_time)
    if status == "pass" or not job["recheck"] or not (status == "timeout" or limits.fired.value) or not inputs:
        return status, done, calls, None
    t0 = time.perf_counter()
    done = min(done, len(inputs) - 1)  # a call stopped after its last input: that input again
    slowdown = _slowdown()
    cpu = _reference_cpu_times(job, inputs[done:])
    limits.cpu, limits.slowdown = True, slowdown
    try:
        again, more, more_calls = _checks(job, inputs[done:], expected[done:], cpu)
    finally:
        limits.cpu, limits.slowdown = False, 1.0
    recheck = {"first": status, "at": done, "status": again, "slowdown": round(slowdown, 3),
               "seconds": round(time.perf_counter() - t0, 3)}
    return again, done + more, calls + more_calls, recheck


def run(blob: str, tag: str) -> None:
    """Score the job ``blob`` describes, printing one ``tag``-prefixed JSON line per part."""
    t0 = time.perf_counter()
    job: dict[str, Any] = pickle.loads(base64.b64decode(blob))
    sys.path.insert(0, job["site"])
    import multiprocessing.heap as heap

    heap.Arena._dir_candidates = []  # type: ignore[attr-defined]  # no /dev/shm arenas: anonymous mmap
    from evalplus.gen.util import trusted_exec

    if job["call_cap_s"] != 60:
        _cap_calls(job)
    if job["checker"] == "release":
        _release_checker(job)
    limits = _Limits()
    _watch_time_limits(limits)
    for part in ("base", "plus"):
        inputs = job[part + "_input"]
        t_part = time.perf_counter()
        try:
            # A copy: a reference that mutates its arguments (Mbpp/635's heapify) must not change
            # the inputs the sample then gets (evalplus loads its ground truth from a cache instead).
            expected, ref_time = trusted_exec(
                job["reference"], copy.deepcopy(inputs), job["entry_point"],
                record_time=True, output_not_none=job["output_not_none"],
            )
        except BaseException as exc:
            error = f"ground truth: {type(exc).__name__}: {str(exc)[:200]}"
            print(tag + json.dumps({"part": part, "error": error}), flush=True)
            raise SystemExit(3) from None
        t_check = time.perf_counter()
        status, done, calls, recheck = _check_part(job, limits, inputs, expected, ref_time)
        t_end = time.perf_counter()
        # where the time went (the sidecar's timing.phases): this part's start, its ground truth's
        # run, its checks (evalplus's fork per call, shared memory, the sample's run) and the end
        print(tag + json.dumps({"part": part, "status": status, "n_details": done,
                                "gt_seconds": sum(ref_time), "started": t_part - t0,
                                "gt_wall": t_check - t_part, "check_wall": t_end - t_check,
                                "calls": calls, "elapsed": t_end - t0,
                                **({"recheck": recheck} if recheck else {})}), flush=True)
