"""What a LiveCodeBench code-execution check costs in the sandbox, with numpy and pandas imported
once per sandbox (``preload``, the workflow's setting) against imported by every check (the
baseline), in one run; and that the verdicts agree.

    python benchmarks/lcb_execution.py [--checks 24] [--workers 2] [--backend gvisor]

Every check is LiveCodeBench's program (``BASE_IMPORTS`` with ``import numpy as np`` and ``import
pandas as pd``, the function, ``assert output == answer``) for the tiny profile's items, right and
wrong answers alternating; its limit is LiveCodeBench's 3 s (+1 s, as it joins the process).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from selfalign.livecodebench import prediction  # noqa: E402
from selfalign.livecodebench.score import LcbSandboxParams, run_programs  # noqa: E402

ITEMS = REPO / "src" / "selfalign" / "data" / "livecodebench-tiny" / "execution.jsonl"


def checks(n: int) -> list[tuple[str, float]]:
    items = prediction.load_execution([ITEMS])
    programs = []
    for i in range(n):
        item = items[i % len(items)]
        answer = item.output if i % 2 == 0 else "None"
        programs.append((prediction.execution_program(item, answer) or "", float(prediction.CHECK_TIMEOUT_S + 1)))
    return programs


def measure(programs: list[tuple[str, float]], params: LcbSandboxParams) -> tuple[float, list[float], list[str]]:
    started = time.monotonic()
    verdicts = run_programs(programs, params)
    return time.monotonic() - started, [v.seconds for v in verdicts], [v.status for v in verdicts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="gvisor")
    args = parser.parse_args()
    programs = checks(args.checks)
    common = {"backend": args.backend, "workers": args.workers, "sample_site": "bundled:livecodebench"}
    base_wall, base_each, base_status = measure(programs, LcbSandboxParams(**common))
    pre_wall, pre_each, pre_status = measure(programs, LcbSandboxParams(**common, preload=("numpy", "pandas")))
    print(f"{args.checks} checks, {args.workers} sandboxes ({args.backend})")
    print("| mode | wall (s, pool start included) | per check, median (s) | max (s) | verdicts |")
    print("|---|---:|---:|---:|---|")
    for name, wall, each, status in (("import per check (baseline)", base_wall, base_each, base_status),
                                     ("preloaded", pre_wall, pre_each, pre_status)):
        print(f"| {name} | {wall:.1f} | {statistics.median(each):.2f} | {max(each):.2f} | "
              f"{status.count('pass')} pass, {status.count('fail')} fail, {status.count('timeout')} timeout |")
    print(f"ratio (baseline / preloaded), per check: {statistics.median(base_each) / statistics.median(pre_each):.1f}x; "
          f"wall: {base_wall / pre_wall:.2f}x; verdicts identical: {base_status == pre_status}")


if __name__ == "__main__":
    main()
