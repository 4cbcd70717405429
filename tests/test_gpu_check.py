"""benchmarks/gpu_check.py runs end to end on CPU at tiny shapes, so it is ready for a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_at_a_tiny_shape(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--shape", "tiny",
                             "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    training = report["training"]
    assert training["steps"] == 2 and training["tokens"] == 2 * 2 * 64 and training["tokens_per_s"] > 0
    assert len(training["losses"]) == 4 and all(loss > 0 for loss in training["losses"])
    assert training["planned_gib"] > 0
    # on a CPU, fp32 and deterministic kernels: two runs give the same weights
    assert report["determinism"]["identical"] is True
    assert len(set(report["determinism"]["digests"])) == 1
    variance = report["batch_variance"]
    assert variance["prompts"] == 4 and variance["differ"] + variance["identical"] == 4
