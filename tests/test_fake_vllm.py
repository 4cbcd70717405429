"""The vLLM path without a GPU: a fake `vllm` on PATH (tests/fake_vllm/vllm) records how each job
starts it and serves the completions API with the CPU server. The generation job (through the
workflow) and the eval job must pass the model, its revision, the dtype, max-model-len and the
seed, wait until it answers, and stop it after the job, also when the job is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from own_model import build_qwen2
from workflow_utils import copy_workflow, env

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).parent / "fake_vllm"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: it only waits for its parent to read its status
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = ["def add_one(x):\n    return x + 1\n", "Write a Python function that adds one to x."] * 40
    return build_qwen2(tmp_path_factory.mktemp("model") / "qwen2", texts)


def _fake_env(record: Path, model_dir: Path) -> dict[str, str]:
    e = env()
    e.update(PATH=f"{FAKE}{os.pathsep}{e['PATH']}", FAKE_VLLM_RECORD=str(record), FAKE_VLLM_MODEL_DIR=str(model_dir))
    return e


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.slow
def test_generation_jobs_start_vllm_with_the_configured_model_and_stop_it(model_dir: Path, tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf" / "selfalign")
    rows = [{"sha1": f"{i:040x}", "id": i, "seed": f"def f{i}(x):\n    return x + {i}\n",
             "concepts": ["arithmetic"], "instruction": f"Write a function f{i} that adds {i} to x."}
            for i in range(3)]
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overlay = tmp_path / "vllm.yaml"
    overlay.write_text(yaml.safe_dump({
        "start_from": {"stage": "instructions", "shape": "release", "jsonl": str(instructions)},
        "model": {"name": "bigcode/starcoder2-15b", "revision": REVISION, "build": None},
        "serving": {"backend": "vllm", "served_model_name": "starcoder2-15b"},
        "generation": {"responses": {"n": 2, "max_tokens": 16}},
    }))
    record = tmp_path / "vllm.jsonl"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "--profile", "profiles/tiny", "--configfile",
         "profiles/tiny/recipe.yaml", str(overlay), "--cores", "2", "results/tiny/responses.jsonl"],
        cwd=workdir, env=_fake_env(record, model_dir), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    (start,) = _records(record)  # one shard, one server
    argv = start["argv"]
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert argv[:2] == ["serve", "bigcode/starcoder2-15b"]
    assert _flag(argv, "--revision") == REVISION
    assert _flag(argv, "--seed") == "0"
    assert _flag(argv, "--served-model-name") == "starcoder2-15b"
    vllm_args = config["serving"]["vllm"]["args"]
    assert _flag(argv, "--dtype") == _flag(vllm_args, "--dtype") == "bfloat16"
    assert _flag(argv, "--max-model-len") == _flag(vllm_args, "--max-model-len") == "16384"
    # batch-invariant by default (config.yaml serving.vllm.batch_invariant), and the sidecar says so
    assert start["env"].get("VLLM_BATCH_INVARIANT") == "1"
    # the job waited for it (it answered every request) and stopped it
    # (a random model writes no parsable response: every record is answered, then dropped as such)
    meta = json.loads((workdir / "results/tiny/responses.jsonl.meta.json").read_text())
    assert meta["counts"]["in"] == 3 and "request_failed" not in meta["drops"]
    assert sum(meta["drops"].values()) + meta["counts"]["out"] == 3
    assert meta["stats"]["batch_invariant"] is True
    assert _wait_dead(start["pid"], 10)


def _eval_command(tmp_path: Path, model_dir: Path, limit: int) -> list[str]:
    """`selfalign eval generate` with the paper config's serving (backend vllm), as the rule runs it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    settings = {"model": {k: config["model"][k] for k in ("name", "revision")}, "serving": config["serving"],
                "client": {**config["client"], "ready_timeout_s": 120}}
    settings["serving"] = {**settings["serving"], "ready_timeout_s": 120}
    evaluation = {**config["evaluation"], "limit": limit, "mirrors": [str(REPO.parent / "shared/data/evalplus")]}
    return [str(Path(sys.executable).with_name("selfalign")), "eval", "generate", "--dataset", "humaneval",
            "--params", json.dumps(settings), "--eval-params", json.dumps(evaluation),
            "--model-dir", str(model_dir), "--out", str(tmp_path / "samples.jsonl"), "--no-progress"]


@pytest.mark.slow
def test_eval_job_serves_the_checkpoint_and_a_killed_job_takes_its_server_along(model_dir: Path, tmp_path: Path) -> None:
    record = tmp_path / "vllm.jsonl"
    done = subprocess.run(_eval_command(tmp_path, model_dir, 2), env=_fake_env(record, model_dir),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (start,) = _records(record)
    argv = start["argv"]
    assert argv[:2] == ["serve", str(model_dir)] and "--revision" not in argv  # a local checkpoint
    assert _flag(argv, "--dtype") == "bfloat16" and _flag(argv, "--max-model-len") == "16384"
    assert _flag(argv, "--seed") == "0"
    assert start["env"].get("VLLM_BATCH_INVARIANT") == "1"
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 2
    assert _wait_dead(start["pid"], 10)

    # killed with SIGKILL mid-job (no clean-up code runs): the server dies with it
    record.unlink()
    job = subprocess.Popen(_eval_command(tmp_path, model_dir, 164), env=_fake_env(record, model_dir),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _records(record) and time.monotonic() < deadline:
            time.sleep(0.2)
        (start,) = _records(record)
        time.sleep(2)
        assert _alive(start["pid"])
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
        assert _wait_dead(start["pid"], 15), "the server outlived its killed job"
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)


def test_batch_invariance_stops_on_a_gpu_too_old_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selfalign.serving import ServingError, require_batch_invariant_gpu

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Tesla T4, 7.5'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ServingError, match="Tesla T4 has compute capability 7.5.*batch_invariant: false"):
        require_batch_invariant_gpu()
    smi.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-80GB, 8.0'\n")
    require_batch_invariant_gpu()  # the A100: allowed
