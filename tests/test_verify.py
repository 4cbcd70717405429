"""selfalign lock / verify: published hashes of a run, and where a rebuild diverged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_utils import mkl_non_intel_preload

from selfalign.determinism import PORTABLE_CPU_ENV, cpu_kernel_env
from selfalign.provenance import write_sidecar
from selfalign.verify import VerifyError, chain_order, load_lock, make_lock, scan, summary, verify


def _run(root: Path) -> Path:
    """A three-stage run: raw -> filtered -> sft, plus a card without a sidecar and a report."""
    run = root / "results" / "tiny"
    (run / "seeds").mkdir(parents=True)
    (run / "report").mkdir()
    raw, filtered, sft = run / "seeds" / "raw.jsonl", run / "seeds" / "filtered.jsonl", run / "sft.jsonl"
    raw.write_text('{"id": "a"}\n{"id": "b"}\n')
    write_sidecar(raw, stage="seeds.raw")
    filtered.write_text('{"id": "a"}\n')
    write_sidecar(filtered, stage="seeds.filter", inputs=["results/tiny/seeds/raw.jsonl"])
    sft.write_text('{"id": "a", "instruction": "x"}\n')
    write_sidecar(sft, stage="sft", inputs=[str(filtered)])
    (run / "README.md").write_text("# card\n")
    (run / "report" / "index.html").write_text("<p>commit abc</p>")
    write_sidecar(run / "report" / "index.html", stage="report")
    (run / "logs").mkdir()
    (run / "logs" / "x.log").write_text("noise")
    return run


def test_lock_lists_every_artifact_in_chain_order_and_leaves_out_the_report(tmp_path: Path) -> None:
    run = _run(tmp_path)
    lock = make_lock(run)
    paths = [a["path"] for a in lock["artifacts"]]
    assert set(paths) == {"seeds/raw.jsonl", "seeds/filtered.jsonl", "sft.jsonl", "README.md"}
    assert paths.index("seeds/raw.jsonl") < paths.index("seeds/filtered.jsonl") < paths.index("sft.jsonl")
    filtered = next(a for a in lock["artifacts"] if a["path"] == "seeds/filtered.jsonl")
    assert filtered["inputs"] == ["seeds/raw.jsonl"] and filtered["stage"] == "seeds.filter"
    assert chain_order(scan(run)) == paths
    report = verify(run, lock)
    assert report["ok"] and summary(report).startswith("verified: 4 of 4 artifacts identical")


def test_verify_names_the_first_stage_that_computed_differently(tmp_path: Path) -> None:
    run = _run(tmp_path)
    lock = make_lock(run)
    # the filter stage gives other bytes from the same input; sft inherits the difference
    (run / "seeds" / "filtered.jsonl").write_text('{"id": "b"}\n')
    (run / "sft.jsonl").write_text('{"id": "b", "instruction": "y"}\n')
    report = verify(run, lock)
    assert not report["ok"] and report["identical"] == 2
    first = report["first_divergence"]
    assert first["path"] == "seeds/filtered.jsonl" and first["inputs_matched"] is True
    sft = next(r for r in report["rows"] if r["path"] == "sft.jsonl")
    assert sft["inputs_matched"] is False and sft["changed_inputs"] == ["seeds/filtered.jsonl"]
    text = summary(report)
    assert "verified: 2 of 4" in text and "seeds/filtered.jsonl (seeds.filter): its inputs matched" in text
    # the report itself changing is not a divergence
    (run / "seeds" / "filtered.jsonl").write_text('{"id": "a"}\n')
    (run / "sft.jsonl").write_text('{"id": "a", "instruction": "x"}\n')
    (run / "report" / "index.html").write_text("<p>commit def</p>")
    assert verify(run, lock)["ok"]


def test_verify_cli_exits_non_zero_and_says_where(tmp_path: Path) -> None:
    run = _run(tmp_path)
    lock_path = tmp_path / "tiny.lock.json"
    selfalign = str(Path(sys.executable).with_name("selfalign"))
    made = subprocess.run([selfalign, "lock", str(run), "--out", str(lock_path)], capture_output=True, text=True)
    assert made.returncode == 0 and "locked 4 artifacts" in made.stdout
    (run / "README.md").unlink()
    result = subprocess.run([selfalign, "verify", str(run), "--lock", str(lock_path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "verified: 3 of 4 artifacts identical" in result.stdout
    assert "first divergence: README.md (no sidecar) is missing" in result.stdout
    with pytest.raises(VerifyError, match="not a version-1 lock"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        load_lock(bad)


def test_portable_cpu_kernels_and_what_sidecars_record(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cpu_kernel_env("portable") == PORTABLE_CPU_ENV == {
        "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert cpu_kernel_env("baseline")["ATEN_CPU_CAPABILITY"] == "default"
    assert cpu_kernel_env("native") == {}
    with pytest.raises(ValueError, match="cpu_kernels"):
        cpu_kernel_env("fast")
    # a fresh interpreter under the baseline environment runs ATen's baseline kernels
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, json; from selfalign.determinism import runtime_facts;"
                               " print(json.dumps(runtime_facts()))"],
        capture_output=True, text=True, env={**os.environ, **cpu_kernel_env("baseline")}, timeout=120,
    )
    import json

    facts = json.loads(probe.stdout)
    assert facts["cpu_capability"] == "DEFAULT" and facts["env"]["MKL_CBWR"] == "COMPATIBLE"
    # a job that never imported torch records the environment only (no torch import for it)
    bare = subprocess.run(
        [sys.executable, "-c", "import json, sys; from selfalign.determinism import runtime_facts;"
                               " f = runtime_facts(); print(json.dumps([sorted(f), 'torch' in sys.modules]))"],
        capture_output=True, text=True, env={**os.environ, **PORTABLE_CPU_ENV}, timeout=120,
    )
    keys, imported = json.loads(bare.stdout)
    assert "cpu_capability" not in keys and "torch" not in keys and imported is False


#: A few steps of a small MLP's training in float32, the shapes of the tiny model's matmuls: the
#: sha256 of its final weights.
_TRAIN_PROBE = """
import hashlib, torch
torch.manual_seed(0); torch.set_num_threads(2)
net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 1000))
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
for _ in range(3):
    x = torch.randn(37, 64); y = torch.randint(0, 1000, (37,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest())
"""


def _probe(kernels: dict[str, str], preload: str | None) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in PORTABLE_CPU_ENV and k != "LD_PRELOAD"}
    environ.update(kernels)
    if preload:
        environ["LD_PRELOAD"] = preload
    done = subprocess.run([sys.executable, "-c", _TRAIN_PROBE], capture_output=True, text=True,
                          env=environ, timeout=120, check=True)
    return done.stdout.strip()


def test_portable_kernels_do_not_depend_on_mkls_cpu_vendor_dispatch(tmp_path: Path) -> None:
    """oneMKL runs MKL_CBWR branches other than COMPATIBLE on Intel CPUs only (elsewhere: AUTO,
    silently), which is why portable pins COMPATIBLE: under the non-Intel emulation the portable
    bytes stay the same, while the AVX2 branch the project pinned before changes them."""
    preload = mkl_non_intel_preload(tmp_path)
    portable = cpu_kernel_env("portable")
    assert _probe(portable, None) == _probe(portable, preload)
    if "GenuineIntel" in Path("/proc/cpuinfo").read_text():
        avx2 = {**portable, "MKL_CBWR": "AVX2"}
        # the emulation works (else the check above proves nothing): MKL's own AVX2 branch is
        # what an Intel CPU runs, and the non-Intel path is another one
        assert _probe(avx2, None) != _probe(avx2, preload)
