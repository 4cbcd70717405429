"""What the portable CPU kernels cost, and that they change the bytes: the tiny base model
trained for a few steps under each ``determinism.cpu_kernels`` mode, in one run.

    python benchmarks/cpu_kernels.py --run results/tiny [--steps 24]

Needs a tiny run's seed functions and texts (``seeds/filtered.jsonl``, ``model/texts/``). For each
mode it runs ``selfalign tinymodel`` in a fresh process with that mode's environment
(selfalign.determinism.cpu_kernel_env) and reports the wall time, the ratio against ``native``
(the baseline: what this CPU picks by itself) and the weights' sha256: equal hashes across
modes would mean the kernels do not matter here; different ones are why the workflow pins them.
``portable-mkl`` is portable as it was until 2026-12-07 (oneMKL's COMPATIBLE branch for the
matmuls, no fixed-order BLAS): the same bytes on one CPU vendor only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from selfalign.determinism import CPU_KERNEL_ENV, MODE_ENV, cpu_kernel_env  # noqa: E402

MODES = ("native", "portable", "portable-mkl", "baseline")


def mode_env(mode: str) -> dict[str, str]:
    if mode == "portable-mkl":
        return {**CPU_KERNEL_ENV["portable"], MODE_ENV: "portable-mkl"}
    return cpu_kernel_env(mode)


def train(run: Path, steps: int, mode: str, out: Path) -> tuple[float, str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in (*CPU_KERNEL_ENV["portable"], MODE_ENV, "LD_PRELOAD")}
    environ.update(mode_env(mode))
    params = json.dumps({"steps": steps, "text_repeat": 48, "warmup": 2})
    command = [str(Path(sys.executable).with_name("selfalign")), "tinymodel", "--params", params,
               "--corpus", str(run / "seeds" / "filtered.jsonl"), "--text",
               str(run / "model" / "texts" / "fewshot.txt"), str(run / "model" / "texts" / "judge-shots.txt"),
               "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(command, env=environ, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return seconds, hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "results" / "tiny")
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            results[mode] = train(args.run, args.steps, mode, Path(tmp) / mode)
            print(f"{mode:9s} {results[mode][0]:7.1f} s  weights {results[mode][1][:16]}", flush=True)
    base = results["native"][0]
    for mode, (seconds, _) in results.items():
        print(f"{mode}: {seconds / base:.2f}x native")
    print(f"distinct weights: {len({h for _, h in results.values()})} of {len(results)} modes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
