"""determinism.cpu_kernels: portable gives bytes that no CPU property can change.

What an Intel and an AMD machine parted on was oneMKL's matmuls (an AMD EPYC's probe and 24-step
tiny model against an Intel Xeon's, ../shared/data/determinism). Under ``portable`` the matmuls
run in selfalign's fixed-order BLAS instead; these tests prove, on whatever machine runs them,
the properties that make its bytes machine-independent:

* the bytes are fixed by the C source: a scalar -O0 build and an -O3 -mavx2 vectorised build
  give identical results, and so do 1 and 2 threads;
* oneMKL no longer takes part: its branch (MKL_CBWR) and its CPU-vendor answer (made to say
  "Intel" and "not Intel" whatever the CPU is) change nothing;
* the kernel probe's operations under the workflow's environment equal the published hashes
  (tests/data/determinism/): every operation equal to this project's reference, and every
  operation that does not reach BLAS equal to what the AMD machine computed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_utils import mkl_vendor_preload

from selfalign.determinism import (
    FIXED_BLAS_CFLAGS,
    MODE_ENV,
    PORTABLE_CPU_ENV,
    check_cpu_kernels,
    cpu_kernel_env,
    fixed_blas_library,
)

DATA = Path(__file__).parent / "data" / "determinism"
PROBE = Path(__file__).resolve().parents[2] / "shared" / "tools" / "cpu_kernel_probe.py"

#: Every BLAS entry point the fixed library replaces, each shape and transpose libtorch calls it
#: with: prints one sha256 per case, the call count, and the largest error against float64.
_MATMULS = r"""
import ctypes, hashlib, json, torch
torch.manual_seed(0)
out, worst = {}, 0.0
def h(name, t, ref):
    global worst
    out[name] = hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]
    worst = max(worst, ((t.double() - ref).abs().max() / (ref.abs().max() + 1)).item())
for m, k, n in ((7, 5, 3), (300, 256, 1000), (1, 256, 4013), (33, 1000, 17), (5, 64, 200)):
    a, b = torch.randn(m, k), torch.randn(k, n)
    for ta in (0, 1):
        for tb in (0, 1):
            A = a.t().contiguous().t() if ta else a
            B = b.t().contiguous().t() if tb else b
            h(f"mm{m}x{k}x{n}.{ta}{tb}", A @ B, a.double() @ b.double())
c, a, b = torch.randn(64, 32), torch.randn(64, 100), torch.randn(100, 32)
h("addmm", torch.addmm(c, a, b, beta=0.5, alpha=2.0), 0.5 * c.double() + 2 * a.double() @ b.double())
x, y = torch.randn(8, 128, 32), torch.randn(8, 32, 128)
h("bmm", torch.bmm(x, y), torch.bmm(x.double(), y.double()))
M, v = torch.randn(100, 256), torch.randn(256)
h("mv", M @ v, M.double() @ v.double())
u = torch.randn(100)
h("mv.t", M.t() @ u, M.t().double() @ u.double())
h("dot", v @ v, v.double() @ v.double())
w = torch.randn(50, 40, requires_grad=True)
(torch.randn(30, 50) @ w).square().sum().backward()
out["grad"] = hashlib.sha256(w.grad.numpy().tobytes()).hexdigest()[:16]
lib = ctypes.CDLL(None)
try:
    calls = ctypes.c_uint64.in_dll(lib, "selfalign_fixedblas_calls").value
except ValueError:
    calls = None
print(json.dumps({"hashes": out, "calls": calls, "worst": worst}))
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in PORTABLE_CPU_ENV and k not in ("LD_PRELOAD", MODE_ENV, "SELFALIGN_BLAS_THREADS")}


def _run(code: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**_clean_env(), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fixed_blas_bytes_depend_on_the_source_alone(tmp_path: Path) -> None:
    """Scalar -O0 build vs the vectorised -O3 -mavx2 one, 1 thread vs 2: the same bytes, and every
    result within float32 rounding of float64 (the library is a correct BLAS, not only a stable one)."""
    fast = str(fixed_blas_library(tmp_path))
    scalar = str(fixed_blas_library(tmp_path, cflags=("-O0", "-ffp-contract=off", "-fPIC", "-shared", "-pthread", "-lm")))
    assert fast != scalar
    env = dict(PORTABLE_CPU_ENV)
    runs = [_run(_MATMULS, **env, LD_PRELOAD=fast),
            _run(_MATMULS, **env, LD_PRELOAD=scalar),
            _run(_MATMULS, **env, LD_PRELOAD=fast, SELFALIGN_BLAS_THREADS="1"),
            _run(_MATMULS, **env, LD_PRELOAD=fast, SELFALIGN_BLAS_THREADS="2")]
    assert all(r["calls"] and r["calls"] >= 25 for r in runs)  # every product went through it (27 calls)
    assert all(r["hashes"] == runs[0]["hashes"] for r in runs)
    # the operands' memory layout (transposed or not) does not change a bit either
    hashes = runs[0]["hashes"]
    for shape in {name.split(".")[0] for name in hashes if name.startswith("mm")}:
        assert len({hashes[f"{shape}.{ta}{tb}"] for ta in (0, 1) for tb in (0, 1)}) == 1, shape
    assert all(r["worst"] < 1e-5 for r in runs), [r["worst"] for r in runs]
    # ... and they are not oneMKL's bytes (else the library were not in the path at all)
    mkl = _run(_MATMULS, **env)
    assert mkl["calls"] is None
    assert mkl["hashes"] != runs[0]["hashes"]


#: A few steps of a small MLP's training in float32, the shapes of the tiny model's matmuls: the
#: sha256 of its final weights.
_TRAIN = """
import hashlib, json, torch
torch.manual_seed(0); torch.set_num_threads(2)
net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 1000))
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
for _ in range(3):
    x = torch.randn(37, 64); y = torch.randint(0, 1000, (37,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
print(json.dumps(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest()))
"""


def test_portable_training_does_not_depend_on_onemkl(tmp_path: Path) -> None:
    """oneMKL's branch and its CPU-vendor answer parted an Intel and an AMD machine before; under
    portable they change nothing, because no matmul reaches oneMKL. The control (oneMKL's own
    matmuls, no fixed BLAS) shows the branch does change bytes there, so the check can fail."""
    portable = cpu_kernel_env("portable")
    intel, non_intel = mkl_vendor_preload(tmp_path, "intel"), mkl_vendor_preload(tmp_path)
    fixed = portable["LD_PRELOAD"]
    variants = [
        _run(_TRAIN, **portable),
        _run(_TRAIN, **{**portable, "MKL_CBWR": "AUTO"}),
        _run(_TRAIN, **{**portable, "MKL_CBWR": "AVX2"}),
        _run(_TRAIN, **{**portable, "LD_PRELOAD": f"{fixed}:{intel}"}),
        _run(_TRAIN, **{**portable, "LD_PRELOAD": f"{fixed}:{non_intel}"}),
    ]
    assert len(set(variants)) == 1
    without = {k: v for k, v in portable.items() if k != "LD_PRELOAD"}
    assert _run(_TRAIN, **without) != _run(_TRAIN, **{**without, "MKL_CBWR": "AUTO"})


def test_stages_refuse_portable_without_the_fixed_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_ENV, "portable")
    with pytest.raises(RuntimeError, match="fixed-order BLAS is not loaded"):
        check_cpu_kernels()  # pytest's own process never preloads it
    monkeypatch.setenv(MODE_ENV, "native")
    check_cpu_kernels()
    # under the workflow's environment a torch stage finds it and records it in its sidecar
    facts = _run("import json, torch; from selfalign.determinism import check_cpu_kernels, runtime_facts;"
                 "check_cpu_kernels(); torch.ones(8, 8) @ torch.ones(8, 8);"
                 "print(json.dumps(runtime_facts()))", **cpu_kernel_env("portable"))
    assert facts["fixed_blas"]["calls"] >= 1 and len(facts["fixed_blas"]["source_sha256"]) == 64
    assert facts["env"][MODE_ENV] == "portable"


def test_fixed_blas_build_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="C compiler, and CC='.*no-such-cc' was not found: install gcc"):
        fixed_blas_library(tmp_path / "cache")
    monkeypatch.setenv("CC", "false")
    with pytest.raises(RuntimeError, match="failed"):
        fixed_blas_library(tmp_path / "cache2")
    assert "-ffp-contract=off" in FIXED_BLAS_CFLAGS and not any("fast-math" in f and "no" not in f
                                                                for f in FIXED_BLAS_CFLAGS)


@pytest.mark.skipif(not PROBE.is_file(), reason="../shared/tools/cpu_kernel_probe.py is beside the checkout "
                                                "only in CI and the developers' machines")
def test_kernel_probe_matches_the_published_hashes(tmp_path: Path) -> None:
    """The probe's float operations (every kind the tiny model's training runs) under the
    workflow's portable environment: all equal this project's reference, and those that never
    reach BLAS equal the AMD EPYC's (made with oneMKL's COMPATIBLE branch, before the fixed
    BLAS). A new kind of layer or optimizer in the tiny model belongs in the probe."""
    ours = json.loads((DATA / "probe-fixedblas-amd-epyc-zen4.json").read_text())["hashes"]
    amd_mkl = json.loads((DATA / "probe-amd-epyc-zen4-portable.json").read_text())["hashes"]
    out = tmp_path / "probe.json"
    env_args = [f"--env={k}={v}" for k, v in cpu_kernel_env("portable").items()]
    done = subprocess.run([sys.executable, str(PROBE), *env_args, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    here = json.loads(out.read_text())["hashes"]
    assert set(here) == set(ours)
    assert {k for k in ours if here[k] != ours[k]} == set()
    blas_free = {k for k in amd_mkl
                 if not k.startswith(("matmul.", "linear.", "bmm", "sdpa.", "starcoder2.")) or k.endswith(".init")}
    assert len(blas_free) >= 15
    assert {k for k in blas_free if here[k] != amd_mkl[k]} == set()
