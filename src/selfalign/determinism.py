"""What a run's float results depend on, pinned where it can be and recorded where it cannot.

CPU stages (the tiny model, the CPU server's sampling, fine-tuning and eval generation on a CPU)
give the same bytes on two x86-64 machines only if no kernel picks its code path from the CPU it
finds. ``cpu_kernels`` sets, for every job the workflow starts (over the caller's environment):

* ``portable`` (the default): the AVX2 floor, every x86-64 server CPU of the last decade (Intel
  from Haswell, AMD from Zen) runs the same code: ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's AVX2
  kernels, not the AVX-512 ones it picks where it can), ``MKL_CBWR=COMPATIBLE`` (oneMKL's
  conditional numerical reproducibility on its SSE2 code path; matmuls go through MKL in the CPU
  wheel) and ``ONEDNN_MAX_CPU_ISA=AVX2``. Not ``MKL_CBWR=AVX2``: oneMKL honours branches other
  than AUTO and COMPATIBLE on Intel processors only and silently runs AUTO elsewhere (its
  developer guide, "Specifying Code Branches"), so a CI machine's tiny model came out different
  under it. ``tests/data/mkl_non_intel.c`` makes MKL take its non-Intel dispatch on an Intel
  CPU: the e2e rebuild runs under it and must give the published bytes;
* ``baseline``: any x86-64 CPU: ATen's baseline build (``default``), ``MKL_CBWR=COMPATIBLE``,
  oneDNN at SSE4.1; 1.15x slower again (benchmarks/README.md);
* ``native``: nothing set: fastest, and the same bytes only on the same CPU model.

Thread counts are fixed by the config (``tinymodel.threads``, ``training.threads``,
``serving.cpu.threads``), so parallel reductions split the same way everywhere.

GPU stages cannot be pinned across GPU models; :func:`runtime_facts` records what they ran on
(torch / CUDA / vLLM versions, the GPU) in every sidecar.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

#: The environment of each ``cpu_kernels`` mode.
CPU_KERNEL_ENV: dict[str, dict[str, str]] = {
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "native": {},
}
PORTABLE_CPU_ENV = CPU_KERNEL_ENV["portable"]
CPU_KERNELS = tuple(CPU_KERNEL_ENV)

#: Variables whose values a run's sidecars record.
#: (Thread counts are recorded as torch runs them, not as OMP_NUM_THREADS: Snakemake sets that to
#: the job's threads, which differ between a local and a cluster run that compute the same.)
RECORDED_ENV = (*PORTABLE_CPU_ENV, "VLLM_BATCH_INVARIANT", "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")


def cpu_kernel_env(mode: str) -> dict[str, str]:
    """The variables to set for ``determinism.cpu_kernels: mode`` (they override the caller's)."""
    if mode not in CPU_KERNEL_ENV:
        raise ValueError(f"determinism.cpu_kernels must be one of {', '.join(CPU_KERNELS)}, got {mode!r}")
    return dict(CPU_KERNEL_ENV[mode])


def cpu_model() -> str:
    """The CPU's vendor and model as /proc/cpuinfo names them (where a rebuild diverges, the
    first thing to compare), or the platform's processor string elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return " / ".join(v for v in (info.get("vendor_id"), info.get("model name")) if v) or platform.machine()


def runtime_facts() -> dict[str, Any]:
    """What this process's float results depend on. torch's own facts only where the job has
    imported torch already (importing it costs seconds in stages that never use it)."""
    facts: dict[str, Any] = {"env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ}}
    torch = sys.modules.get("torch")
    if torch is not None:
        facts["torch"] = torch.__version__
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        facts["threads"] = torch.get_num_threads()
        facts["cpu"] = cpu_model()
        if torch.cuda.is_available():
            facts["cuda"] = torch.version.cuda
            facts["gpu"] = torch.cuda.get_device_name()
    for name in ("vllm", "flash-attn"):
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return facts
