"""selfalign lock / verify: published hashes of a run, and where a rebuild diverged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfalign.audit.verify import (
    VerifyError,
    chain_order,
    load_lock,
    make_lock,
    scan,
    summary,
    verify,
)
from selfalign.determinism import MODE_ENV, PORTABLE_CPU_ENV, cpu_kernel_env, fixed_blas_library
from selfalign.provenance import write_sidecar


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
    assert text.startswith("not verified: 2 of 4") and "seeds/filtered.jsonl (seeds.filter): its inputs matched" in text
    # ... and says what to run next and what to attach
    assert "tests/test_determinism.py" in text and f"{run}/seeds/filtered.jsonl.meta.json" in text
    # the report itself changing is not a divergence
    (run / "seeds" / "filtered.jsonl").write_text('{"id": "a"}\n')
    (run / "sft.jsonl").write_text('{"id": "a", "instruction": "x"}\n')
    (run / "report" / "index.html").write_text("<p>commit def</p>")
    assert verify(run, lock)["ok"]


def test_a_directory_artifact_is_locked_file_by_file(tmp_path: Path) -> None:
    """A model's tokenizer and weights are hashed one by one, so a divergence names the file."""
    run = _run(tmp_path)
    model = run / "model" / "base"
    model.mkdir(parents=True)
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    write_sidecar(model, stage="tinymodel", inputs=[str(run / "seeds" / "filtered.jsonl")])
    lock = make_lock(run)
    locked = next(a for a in lock["artifacts"] if a["path"] == "model/base")
    assert sorted(locked["files"]) == ["model.safetensors", "tokenizer.json"]
    assert "files" not in next(a for a in lock["artifacts"] if a["path"] == "sft.jsonl")
    (model / "model.safetensors").write_bytes(b"other weights")
    report = verify(run, lock)
    assert report["first_divergence"]["files_differ"] == ["model.safetensors"]
    assert "model/base (tinymodel) (files: model.safetensors): its inputs matched" in summary(report)
    (model / "extra.bin").write_bytes(b"")
    assert verify(run, lock)["first_divergence"]["files_differ"] == ["extra.bin", "model.safetensors"]


def test_verify_cli_reports_a_divergence_and_fails_only_when_strict(tmp_path: Path) -> None:
    run = _run(tmp_path)
    lock_path = tmp_path / "tiny.lock.json"
    selfalign = str(Path(sys.executable).with_name("selfalign"))
    made = subprocess.run([selfalign, "lock", str(run), "--out", str(lock_path)], capture_output=True, text=True)
    assert made.returncode == 0 and "locked 4 artifacts" in made.stdout
    (run / "README.md").unlink()
    out = tmp_path / "verify.json"
    result = subprocess.run([selfalign, "verify", str(run), "--lock", str(lock_path), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # a divergence is a result
    assert "not verified: 3 of 4 artifacts identical" in result.stdout
    assert "first divergence: README.md (no sidecar) is missing" in result.stdout
    assert json.loads(out.read_text())["ok"] is False
    strict = subprocess.run([selfalign, "verify", str(run), "--lock", str(lock_path), "--strict"],
                            capture_output=True, text=True)
    assert strict.returncode != 0 and "not verified: 3 of 4" in strict.stdout
    with pytest.raises(VerifyError, match="not a version-2 lock"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        load_lock(bad)


def test_portable_cpu_kernels_and_what_sidecars_record(monkeypatch: pytest.MonkeyPatch) -> None:
    portable = cpu_kernel_env("portable")
    assert {k: portable[k] for k in PORTABLE_CPU_ENV} == PORTABLE_CPU_ENV == {
        "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert portable["LD_PRELOAD"] == str(fixed_blas_library()) and portable[MODE_ENV] == "portable"
    # the caller's own preloads stay, after the fixed BLAS; an older fixed BLAS does not
    assert cpu_kernel_env("portable", "/x/a.so:/y/fixedblas-0.so")["LD_PRELOAD"] == f"{fixed_blas_library()}:/x/a.so"
    assert cpu_kernel_env("baseline")["ATEN_CPU_CAPABILITY"] == "default"
    assert "LD_PRELOAD" not in cpu_kernel_env("baseline")
    assert cpu_kernel_env("native") == {MODE_ENV: "native"}
    with pytest.raises(ValueError, match="cpu_kernels"):
        cpu_kernel_env("fast")
    # a fresh interpreter under the baseline environment runs ATen's baseline kernels
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, json; from selfalign.determinism import runtime_facts;"
                               " print(json.dumps(runtime_facts()))"],
        capture_output=True, text=True, env={**os.environ, **cpu_kernel_env("baseline")}, timeout=120,
    )

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
