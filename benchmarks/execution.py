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

Both are checked to give the same verdict status for every sample. Reports samples/s and the
ratio ours/baseline for each worker count (workers may exceed the 2 cores: a sample that
sleeps or times out does not idle a core).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from selfalign.execution import RELEASE_JOIN_S
from selfalign.sandbox import SandboxPool

REPO = Path(__file__).resolve().parents[1]
HUMANEVAL = REPO.parent / "shared" / "data" / "evalplus" / "HumanEvalPlus-v0.1.9.jsonl.gz"
SAMPLE_SITE = REPO / ".venv" / "sample-release"  # scripts/setup.sh installs it


def samples(timeouts: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(expected status, code)`` for the mix, shuffled."""
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        tasks = [json.loads(line) for line in handle]
    mix = []
    for task in tasks:
        check = f"\n{task['test']}\ncheck({task['entry_point']})\n"
        mix.append(("pass", task["prompt"] + task["canonical_solution"] + check))
        mix.append(("fail", task["prompt"] + "    return None\n" + check))
    mix += [("timeout", "import time\ntime.sleep(30)\n")] * timeouts
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--timeouts", type=int, default=4, help="samples that time out")
    parser.add_argument("--timeout-s", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best kept)")
    parser.add_argument("--ours", choices=["gvisor", "podman"], default="gvisor", help="the sandboxed backend measured")
    parser.add_argument("--exec-mode", choices=["module", "release"], default="module",
                        help="how samples run, in both the baseline and ours (release: config.yaml's)")
    args = parser.parse_args(argv)

    mix = samples(args.timeouts)
    codes = [code for _, code in mix]
    expected = Counter(status for status, _ in mix)
    print(f"{len(codes)} samples: {dict(expected)}; limit {args.timeout_s} s; exec_mode {args.exec_mode}")
    ours = args.ours
    for workers in args.workers:
        best: dict[str, float] = {}
        statuses: dict[str, list[str]] = {}
        for attempt in range(args.repeat):
            for backend in (("none", ours) if attempt % 2 == 0 else (ours, "none")):
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
