"""The workflow as a user drives it: dry runs, lint, config errors, start_from."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from workflow_utils import copy_workflow, run


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("wf") / "selfalign")


def test_paper_dry_run_lists_seed_jobs_fast(workdir: Path) -> None:
    started = time.time()
    result = run(["-n", "--quiet", "rules"], workdir, timeout=60)
    elapsed = time.time() - started
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    assert counts["seeds_extract_shard"] == 64
    assert counts["seeds_quality_shard"] == 64
    assert counts["seeds_filter_shard"] == 16
    for rule in ("seeds_raw", "seeds_dedup", "seeds_quality", "seeds_filtered"):
        assert counts[rule] == 1
    # The judge and the three generation stages, sharded, each job owning a vLLM server.
    shards = {"judge": 4, "concepts": 4, "instructions": 4, "responses": 8}
    for stage, n in shards.items():
        assert counts[f"generate_{stage}_shard"] == n
        assert counts[f"generate_{stage}"] == 1
    assert "tiny_model" not in counts
    assert counts["execute_shard"] == 8 and counts["execute"] == 1
    # the chain ends in a checkpoint scored on both benchmarks
    assert counts["train"] == 1 and counts["eval_table"] == 1
    assert counts["eval_generate"] == 2 and counts["eval_score"] == 2
    assert elapsed < 10, f"paper dry run took {elapsed:.1f}s"


def test_paper_generation_jobs_start_vllm_on_a_gpu(workdir: Path) -> None:
    result = run(["-n", "-p", "results/paper/concepts.jsonl"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "selfalign generate concepts" in result.stdout
    assert '"backend": "vllm"' in result.stdout
    assert '"name": "bigcode/starcoder2-15b"' in result.stdout
    assert "gpu=1" in result.stdout.replace(" ", "")


def test_paper_training_and_eval_jobs(workdir: Path) -> None:
    result = run(["-n", "-p", "results/paper/eval/humaneval.json"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    out = result.stdout
    # upstream's arguments reach the trainer, the base model is the Hub model at its revision
    assert "selfalign train" in out and '"optim": "adafactor"' in out
    assert '"gradient_accumulation_steps": 64' in out and '"max_seq_length": 1280' in out
    assert "--base-model bigcode/starcoder2-15b --revision main" in out
    # the checkpoint is served like the base model was, then scored on the pinned release
    assert "selfalign eval generate --dataset humaneval" in out and "--model-dir results/paper/checkpoint" in out
    assert "selfalign eval score --dataset humaneval --version v0.1.9" in out


def test_accelerate_config_launches_training_under_accelerate(workdir: Path) -> None:
    result = run(["-n", "-p", "results/paper/checkpoint", "--config",
                  "training={'accelerate_config': 'envs/accelerate/fsdp.yaml'}"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "accelerate launch --config_file envs/accelerate/fsdp.yaml -m selfalign train" in result.stdout


def test_rescore_target_scores_the_released_samples(workdir: Path) -> None:
    result = run(["-n", "-p", "rescore"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    assert counts["rescore_dataset"] == 2 and counts["rescore"] == 1
    assert "--published ../shared/data/upstream/sc2-15b-instruct-mbpp-eval-results.json.gz" in result.stdout


def test_lint_is_clean(workdir: Path) -> None:
    result = run(["--lint"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "Congratulations" in result.stdout


def test_tiny_profile_dry_run(workdir: Path) -> None:
    result = run(["--profile", "profiles/tiny", "-n", "--quiet", "rules"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    assert counts["seeds_extract_shard"] == 2
    assert counts["tiny_model"] == 1 and counts["model_texts"] == 1
    for stage in ("judge", "concepts", "instructions", "responses"):
        assert counts[f"generate_{stage}_shard"] == 1
    assert "results/tiny/seeds" in run(["--profile", "profiles/tiny", "-n"], workdir, timeout=60).stdout


def test_config_typo_stops_before_any_job(workdir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("seeds:\n  quality:\n    pyright_batchsize: 10\n", encoding="utf-8")
    result = run(["--cores", "1", "--configfile", str(bad)], workdir, timeout=60)
    assert result.returncode != 0
    assert "unknown config key 'seeds.quality.pyright_batchsize'" in result.stdout
    assert "did you mean 'seeds.quality.pyright_batch_size'" in result.stdout
    assert not (workdir / "results").exists()


def test_start_from_replaces_the_earlier_stages(workdir: Path, tmp_path: Path) -> None:
    override = tmp_path / "start.yaml"
    override.write_text(
        "seeds:\n  start_from: {stage: quality, dataset: bigcode/python-stack-v1-functions-filtered,"
        " revision: main, split: train, content_field: content, id_field: sha1}\n",
        encoding="utf-8",
    )
    result = run(["-n", "--quiet", "rules", "--configfile", str(override)], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    assert counts["seeds_import"] == 1
    assert "seeds_extract_shard" not in counts and "seeds_dedup" not in counts
    assert counts["seeds_filter_shard"] == 16
