"""What a run's float results depend on, pinned where it can be and recorded where it cannot.

CPU stages (the tiny model, the CPU server's sampling, fine-tuning and eval generation on a CPU)
give the same bytes on two x86-64 machines only if no kernel picks its code path from the CPU it
finds. ``cpu_kernels`` sets, for every job the workflow starts (over the caller's environment):

* ``portable`` (the default): results fixed by code that is the same on every x86-64 CPU with
  AVX2 (Intel from Haswell, AMD from Zen):

  - **matmuls** (``sgemm_``, ``cblas_sgemm_batch``, ``sgemv_``, ``sdot_``, ``saxpy_``): the
    project's own fixed-order BLAS (``data/fixedblas.c``, :func:`fixed_blas_library`), loaded
    with ``LD_PRELOAD`` so that it takes the place of the oneMKL routines libtorch calls through
    its PLT. oneMKL chooses kernels, blocking and reduction order from the CPU it finds; its
    developer guide promises reproducibility only "on every Intel CPU" of a branch
    ("Getting Started with Conditional Numerical Reproducibility"), and branches other than AUTO
    and COMPATIBLE run only on Intel processors ("Specifying Code Branches"). Measured: under
    ``MKL_CBWR=COMPATIBLE`` an AMD EPYC (Zen 4) and an Intel Xeon trained different tiny models
    from the same inputs (24 steps: 48f14fbd... vs ac08e9b9...). The fixed BLAS sums each output
    in index order with a rounding after every operation, built with ``-ffp-contract=off`` and
    no fast-math, so neither the CPU, its ISA, the compiler's vectoriser nor the thread count can
    change a bit (tests/test_determinism.py builds it at -O0 and -O3 -mavx2 and compares);
  - **everything else** (element-wise, reductions, softmax, layer norm, attention's own loops,
    AdamW, randn): ATen's own kernels, the same machine code everywhere once
    ``ATEN_CPU_CAPABILITY=avx2`` stops ATen from dispatching to AVX-512 where it finds it;
    their parallel splits follow the thread counts the config fixes;
  - ``MKL_CBWR=COMPATIBLE`` and ``ONEDNN_MAX_CPU_ISA=AVX2`` stay as a floor for any oneMKL or
    oneDNN routine a future torch reaches that the fixed BLAS does not replace (the tiny chain
    calls none: ``MKL_VERBOSE=1`` prints nothing under it).

  :func:`check_cpu_kernels` makes every torch stage refuse to compute under ``portable`` when
  the fixed BLAS is not loaded, instead of writing other bytes;
* ``baseline``: any x86-64 CPU: ATen's baseline build (``default``), ``MKL_CBWR=COMPATIBLE``,
  oneDNN at SSE4.1, oneMKL's matmuls: the same bytes only on the same CPU vendor (kept to
  measure what the kernels cost, benchmarks/cpu_kernels.py);
* ``native``: nothing set: fastest, and the same bytes only on the same CPU model.

Thread counts are fixed by the config (``tinymodel.threads``, ``training.threads``,
``serving.cpu.threads``), so parallel reductions split the same way everywhere.

GPU stages cannot be pinned across GPU models; :func:`runtime_facts` records what they ran on
(torch / CUDA / vLLM versions, the GPU) in every sidecar.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
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

#: Set for every job: the mode its stages must find themselves under (:func:`check_cpu_kernels`).
MODE_ENV = "SELFALIGN_CPU_KERNELS"

#: Variables whose values a run's sidecars record.
#: (Thread counts are recorded as torch runs them, not as OMP_NUM_THREADS: Snakemake sets that to
#: the job's threads, which differ between a local and a cluster run that compute the same.)
RECORDED_ENV = (*PORTABLE_CPU_ENV, MODE_ENV, "VLLM_BATCH_INVARIANT", "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")


#: The fixed-order BLAS's source, and how it is built. The flags change the speed, never the bytes
#: (no implicit contraction, no reassociation; the source's explicit fmaf is exact everywhere);
#: -mavx2 -mfma is the portable floor's ISA anyway (every AVX2 CPU has FMA3).
FIXED_BLAS_SOURCE = Path(__file__).parent / "data" / "fixedblas.c"
FIXED_BLAS_CFLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
                     "-pthread", "-lm")
#: A symbol only the fixed BLAS defines: its call counter.
FIXED_BLAS_MARK = "selfalign_fixedblas_calls"


def fixed_blas_digest(cflags: tuple[str, ...] = FIXED_BLAS_CFLAGS) -> str:
    """What a build of the fixed BLAS is named by: its source and its flags."""
    return hashlib.sha256(FIXED_BLAS_SOURCE.read_bytes() + " ".join(cflags).encode()).hexdigest()


def fixed_blas_library(cache_dir: str | os.PathLike[str] | None = None,
                       cflags: tuple[str, ...] = FIXED_BLAS_CFLAGS) -> Path:
    """The fixed-order BLAS as a shared library, built once per source and flags with the
    machine's C compiler (``$CC``, else cc) into ``cache_dir`` (default: ``$SELFALIGN_CACHE`` or
    ``~/.cache/selfalign``). Raises RuntimeError, saying what to install, when there is none."""
    root = Path(cache_dir or os.environ.get("SELFALIGN_CACHE") or Path.home() / ".cache" / "selfalign")
    target = root / f"fixedblas-{fixed_blas_digest(cflags)[:16]}.so"
    if target.is_file():
        return target
    chosen = os.environ.get("CC")
    compiler = shutil.which(chosen) if chosen else shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        found = f"CC={chosen!r} was not found" if chosen else "none was found"
        raise RuntimeError(f"determinism.cpu_kernels: portable builds selfalign's fixed-order BLAS with a C "
                           f"compiler, and {found}: install gcc (apt-get install gcc), or set CC")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run([compiler, *cflags, "-o", str(built), str(FIXED_BLAS_SOURCE)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building {FIXED_BLAS_SOURCE} failed ({compiler}): {done.stderr.strip()[-2000:]}")
        os.replace(built, target)  # atomic: concurrent builders end with one complete file
    return target


def cpu_kernel_env(mode: str, inherited_preload: str | None = None) -> dict[str, str]:
    """The variables to set for ``determinism.cpu_kernels: mode`` (they override the caller's).
    ``portable`` builds the fixed BLAS if needed and puts it first in ``LD_PRELOAD`` (after it,
    ``inherited_preload``, the caller's own)."""
    if mode not in CPU_KERNEL_ENV:
        raise ValueError(f"determinism.cpu_kernels must be one of {', '.join(CPU_KERNELS)}, got {mode!r}")
    env = {**CPU_KERNEL_ENV[mode], MODE_ENV: mode}
    if mode == "portable":
        preload = [str(fixed_blas_library())]
        preload += [p for p in (inherited_preload or "").replace(":", " ").split() if "fixedblas-" not in p]
        env["LD_PRELOAD"] = ":".join(preload)
    return env


def fixed_blas_calls() -> int | None:
    """How many BLAS calls the fixed BLAS has served in this process, or None when the process
    does not have it (not preloaded)."""
    try:
        return int(ctypes.c_uint64.in_dll(ctypes.CDLL(None), FIXED_BLAS_MARK).value)
    except ValueError:
        return None


def check_cpu_kernels() -> None:
    """Refuse to compute under ``portable`` without the fixed BLAS: torch would fall back to
    oneMKL and write bytes that depend on the CPU. Call before a stage's first matmul."""
    if os.environ.get(MODE_ENV) == "portable" and fixed_blas_calls() is None:
        raise RuntimeError(
            "determinism.cpu_kernels is portable but selfalign's fixed-order BLAS is not loaded in this "
            f"process (LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}): run it through the workflow, or set "
            "the environment `python -m selfalign.determinism portable` prints")


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
        calls = fixed_blas_calls()
        facts["fixed_blas"] = None if calls is None else {"source_sha256": fixed_blas_digest(), "calls": calls}
        if torch.cuda.is_available():
            facts["cuda"] = torch.version.cuda
            facts["gpu"] = torch.cuda.get_device_name()
    for name in ("vllm", "flash-attn"):
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return facts


def main(argv: list[str] | None = None) -> int:
    """``python -m selfalign.determinism [MODE]``: the environment of a cpu_kernels mode as shell
    exports, to run a stage by hand as the workflow would (``eval "$(python -m ...)"``)."""
    import shlex

    args = sys.argv[1:] if argv is None else argv
    mode = args[0] if args else "portable"
    for key, value in cpu_kernel_env(mode, os.environ.get("LD_PRELOAD")).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
