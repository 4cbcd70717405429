"""Benchmark the execution filter: samples/s in gVisor against an unsandboxed fork-per-sample run.

    python benchmarks/execution.py [--workers 2 4] [--timeouts 4] [--repeat 2] [--ours podman]

The mix is real code: every HumanEval+ v0.1.9 canonical solution with its tests (passes), the
same tasks with a planted bug (``return None``: fails), and a few samples that sleep past the
4 s limit (time out), shuffled with a fixed seed. Each configuration runs the same samples
through :class:`selfalign.sandbox.SandboxPool`:

* baseline: backend ``none``: the same runner on the host, forking one child per sample with
  the same limits, no sandbox (upstream ran samples unsandboxed, one fork each);
* ours: backend ``gvisor``: one long-lived ``runsc`` sandbox per worker, one fork per sample;
  or, with ``--ours podman``, the same runner in the sandbox image under ``podman run --runtime
  runsc`` (build it first with ``scripts/build-images.sh``).

* upstream (``--upstream``): the release's own ``execution_filter.py`` (0b19dbc) way, on the
  host: a ``ProcessPoolExecutor`` of W workers fed in chunks of ``os.cpu_count()`` samples (each
  chunk waits for its slowest), each sample in a fresh ``multiprocessing.Process`` running
  ``exec(code)`` inside a function after evalplus's ``reliability_guard`` under ``swallow_io``
  and ``time_limit(4)``, joined for 10 s, exit status 0 a pass. Its verdicts are compared with
  ours in ``--exec-mode release`` (which emulates exactly that) and counted otherwise.

Both are checked to give the same verdict status for every sample. Reports samples/s and the
ratio ours/baseline for each worker count (workers may exceed the 2 cores: a sample that
sleeps or times out does not idle a core). ``--timeouts 0`` leaves the sleepers out, so only
the per-sample cost is compared.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from selfalign.execution import RELEASE_JOIN_S
from selfalign.sandbox import SandboxPool

REPO = Path(__file__).resolve().parents[1]
HUMANEVAL = REPO.parent / "shared" / "data" / "evalplus" / "HumanEvalPlus-v0.1.9.jsonl.gz"
SAMPLE_SITE = REPO / ".venv" / "sample-release"  # scripts/setup.sh installs it


TIMEOUT_CODE = {"sleep": "import time\ntime.sleep(30)\n", "loop": "while True:\n    pass\n"}


def samples(timeouts: int, seed: int = 0, kind: str = "sleep") -> list[tuple[str, str]]:
    """``(expected status, code)`` for the mix, shuffled."""
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        tasks = [json.loads(line) for line in handle]
    mix = []
    for task in tasks:
        check = f"\n{task['test']}\ncheck({task['entry_point']})\n"
        mix.append(("pass", task["prompt"] + task["canonical_solution"] + check))
        mix.append(("fail", task["prompt"] + "    return None\n" + check))
    mix += [("timeout", TIMEOUT_CODE[kind])] * timeouts
    random.Random(seed).shuffle(mix)
    return mix


def run(
    backend: str, workers: int, codes: list[str], timeout_s: float, exec_mode: str = "module"
) -> tuple[float, list[str]]:
    extra: dict[str, object] = {"allow_unsandboxed": True} if backend == "none" else {}
    limit = timeout_s
    if exec_mode == "release":  # as the execution stage runs it (config.yaml)
        extra.update(exec_mode="release", release_alarm_s=timeout_s, sample_site=str(SAMPLE_SITE))
        limit = max(timeout_s, RELEASE_JOIN_S)
    with SandboxPool(workers, backend, timeout_s=limit, **extra) as pool:
        pool.run_many(codes[:4], timeout_s=limit)  # warm-up: sandboxes started, caches hot
        started = time.perf_counter()
        verdicts = pool.run_many(codes, timeout_s=limit)
        seconds = time.perf_counter() - started
    return seconds, [v.status for v in verdicts]


def _upstream_run(code: str) -> None:
    """The release's ``_run`` (0b19dbc execution_filter.py), in the forked child."""
    from evalplus.eval.utils import create_tempdir, reliability_guard, swallow_io, time_limit

    with create_tempdir():
        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        reliability_guard(maximum_memory_bytes=1 << 30)
        with swallow_io():
            with time_limit(4):
                exec(code)  # noqa: S102 - as the release ran it: inside this function
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def _upstream_fork_run(item: tuple[int, str]) -> tuple[int, bool]:
    """The release's ``fork_run``: a fresh Process per sample, joined for 10 s, exit 0 a pass."""
    index, code = item
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - as the release did, for the worker's life
    sys.stderr = sys.stdout
    process = multiprocessing.Process(target=_upstream_run, args=(code,))
    process.start()
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()
    return index, process.exitcode == 0


def run_upstream(workers: int, codes: list[str]) -> tuple[float, list[str]]:
    """Seconds and pass/fail statuses of the release's execution scheme (see the module doc)."""
    import evalplus.eval.utils  # noqa: F401 - loaded before the pool forks, as in the release

    passed: dict[int, bool] = {}
    items = list(enumerate(codes))
    chunk = os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as executor:
        executor.submit(len, "").result()  # workers started before the clock, as ours are
        started = time.perf_counter()
        for lo in range(0, len(items), chunk):
            futures = [executor.submit(_upstream_fork_run, item) for item in items[lo : lo + chunk]]
            for future in as_completed(futures):
                index, ok = future.result()
                passed[index] = ok
        seconds = time.perf_counter() - started
    return seconds, ["pass" if passed[i] else "fail" for i in range(len(codes))]


_FORK_PROBE = """
import os, time
t = time.perf_counter()
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print("fork", (time.perf_counter() - t) / 20)
"""

_IMPORT_PROBE = """
import sys, time
t = time.perf_counter()
for name in {names!r}:
    __import__(name)
print("imports", time.perf_counter() - t)
"""


def _probe(pool: SandboxPool, code: str, key: str) -> float:
    verdict = pool.run_many([code])[0]
    for line in verdict.stdout_tail.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[1])
    raise RuntimeError(f"probe {key} failed: {verdict.status} {verdict.stderr_tail[-300:]}")


def phases(backend: str, codes: list[str], trivial_runs: int = 60) -> dict[str, float]:
    """Where one sample's time goes on ``backend``, in ms (one worker): the sandbox's start;
    a trivial sample's round trip, split into the runner's side (fork, limits, child exit, wipe:
    its verdict's ``seconds``) and the host's (request and verdict over the pipes); a bare fork
    inside; importing the modules the mix imports, in one fresh child; and the mix's samples'
    own run (their verdict seconds less the trivial sample's)."""
    import ast

    names: set[str] = set()
    for code in codes:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    extra: dict[str, object] = {"allow_unsandboxed": True} if backend == "none" else {}
    out: dict[str, float] = {}
    started = time.perf_counter()
    with SandboxPool(1, backend, timeout_s=10.0, **extra) as pool:
        out["sandbox start"] = time.perf_counter() - started
        pool.run_many(["pass"] * 5)
        walls, inside = [], []
        for _ in range(trivial_runs):
            t = time.perf_counter()
            verdict = pool.run_many(["x = 2"])[0]
            walls.append(time.perf_counter() - t)
            inside.append(verdict.seconds)
        trivial = sorted(inside)[len(inside) // 2]
        out["trivial sample, round trip"] = sorted(walls)[len(walls) // 2]
        out["  runner: fork, limits, exit, wipe"] = trivial
        out["  host: request + verdict transfer"] = out["trivial sample, round trip"] - trivial
        out["bare fork + exit + wait (inside)"] = _probe(pool, _FORK_PROBE, "fork")
        out[f"imports of the mix ({len(names)} modules, one child)"] = _probe(
            pool, _IMPORT_PROBE.format(names=sorted(names)), "imports")
        verdicts = pool.run_many(codes)
        own = [max(0.0, v.seconds - trivial) for v in verdicts if v.status != "timeout"]
        out["mix sample's own run (mean, timeouts excluded)"] = sum(own) / max(1, len(own))
    return {k: round(1000 * v, 2) for k, v in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--timeouts", type=int, default=4, help="samples that time out")
    parser.add_argument("--timeout-kind", choices=sorted(TIMEOUT_CODE), default="sleep",
                        help="what the timing-out samples do: sleep (idle) or loop (burn a core)")
    parser.add_argument("--timeout-s", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best kept)")
    parser.add_argument("--ours", choices=["gvisor", "podman"], default="gvisor", help="the sandboxed backend measured")
    parser.add_argument("--exec-mode", choices=["module", "release"], default="module",
                        help="how samples run, in both the baseline and ours (release: config.yaml's)")
    parser.add_argument("--upstream", action="store_true",
                        help="measure the release's execution_filter.py scheme too (a second baseline)")
    parser.add_argument("--phases", action="store_true",
                        help="print where one sample's time goes (ms), unsandboxed and in gVisor, and exit")
    args = parser.parse_args(argv)
    if args.phases:
        codes = [code for status, code in samples(0)]
        table = {b: phases(b, codes) for b in ("none", args.ours)}
        print(f"| phase (ms) | unsandboxed | {args.ours} |\n|---|---:|---:|")
        for key in table["none"]:
            print(f"| {key} | {table['none'][key]:.2f} | {table[args.ours][key]:.2f} |")
        return 0

    mix = samples(args.timeouts, kind=args.timeout_kind)
    codes = [code for _, code in mix]
    expected = Counter(status for status, _ in mix)
    print(f"{len(codes)} samples: {dict(expected)}; limit {args.timeout_s} s; exec_mode {args.exec_mode}")
    ours = args.ours
    for workers in args.workers:
        best: dict[str, float] = {}
        statuses: dict[str, list[str]] = {}
        sides = ["none", ours] + (["upstream"] if args.upstream else [])
        for attempt in range(args.repeat):
            for backend in (sides if attempt % 2 == 0 else sides[::-1]):
                if backend == "upstream":
                    seconds, found = run_upstream(workers, codes)
                else:
                    seconds, found = run(backend, workers, codes, args.timeout_s, args.exec_mode)
                best[backend] = min(best.get(backend, seconds), seconds)
                statuses[backend] = found
                print(f"  workers={workers} {backend:7s} {seconds:6.2f} s  {len(codes) / seconds:6.1f} samples/s  {dict(Counter(found))}", flush=True)
        same = statuses["none"] == statuses[ours]
        rate = {b: len(codes) / s for b, s in best.items()}
        print(
            f"workers={workers}: {ours} {rate[ours]:.1f} samples/s, unsandboxed {rate['none']:.1f} samples/s, "
            f"ratio {rate[ours] / rate['none']:.2f}; same verdicts: {'yes' if same else 'NO'}"
        )
        if args.upstream:
            # In release mode ours passes exactly what the release passed; in module mode a
            # timeout is its own status and recursive solutions pass (the release failed them).
            ours_pf = ["pass" if v == "pass" else "fail" for v in statuses[ours]]
            differ = sum(a != b for a, b in zip(ours_pf, statuses["upstream"], strict=True))
            print(
                f"workers={workers}: upstream execution_filter.py {rate['upstream']:.1f} samples/s; "
                f"{ours} / upstream {rate[ours] / rate['upstream']:.2f}; pass/fail verdicts differing: {differ}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
