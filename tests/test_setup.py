"""scripts/install-torch.sh: which torch build a machine gets (setup.sh calls it first)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install-torch.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PATH": f"/nonexistent-gpu-tools:{os.environ['PATH']}", **env}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=600)


def test_route_follows_the_gpu_and_the_override(tmp_path: Path) -> None:
    # no nvidia-smi here; a fake one that lists a GPU makes the route cuda
    assert _run("--route").stdout.strip() == "cpu"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-x)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    with_gpu = {"PATH": f"{fake}:{os.environ['PATH']}"}
    assert subprocess.run([str(SCRIPT), "--route"], capture_output=True, text=True,
                          env={**os.environ, **with_gpu}).stdout.strip() == "cuda"
    assert _run("--route", SELFALIGN_TORCH="cuda").stdout.strip() == "cuda"
    bad = _run("--route", SELFALIGN_TORCH="rocm")
    assert bad.returncode == 2 and "SELFALIGN_TORCH must be cpu, cuda or auto" in bad.stderr


@pytest.mark.slow
def test_a_fresh_venv_without_a_gpu_gets_the_cpu_build(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = _run("--dry-run", str(venv / "bin" / "python"))
    assert result.returncode == 0, result.stderr
    assert "route cpu" in result.stderr
    report = json.loads(result.stdout)
    torch = [item for item in report["install"] if item["metadata"]["name"] == "torch"]
    assert [t["metadata"]["version"] for t in torch] == ["2.13.0+cpu"]
    # the CPU build brings none of the CUDA wheels PyPI's torch==2.13.0 requires
    assert not [item for item in report["install"] if item["metadata"]["name"].startswith(("nvidia-", "cuda-"))]
