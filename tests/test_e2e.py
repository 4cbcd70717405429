"""The tiny chain end to end, as the README runs it: twice, and once killed midway and resumed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from workflow_utils import copy_workflow, kill_group, run, start

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED_ARTIFACTS = ("raw.jsonl", "dedup.jsonl", "dedup.duplicates.jsonl", "quality.jsonl", "filtered.jsonl")
PROFILE = ["--profile", "profiles/tiny"]


def _artifacts(workdir: Path) -> dict[str, bytes]:
    seeds = workdir / "results" / "tiny" / "seeds"
    return {name: (seeds / name).read_bytes() for name in SEED_ARTIFACTS}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("clean") / "selfalign")
    result = run(PROFILE, workdir, timeout=1200)
    assert result.returncode == 0, result.stdout[-8000:]
    return workdir


def test_tiny_chain_produces_filtered_seeds_with_sidecars(clean_run: Path) -> None:
    seeds = clean_run / "results" / "tiny" / "seeds"
    filtered = [json.loads(line) for line in (seeds / "filtered.jsonl").read_text().splitlines()]
    assert len(filtered) > 50
    assert all(r["id"].startswith("stdlib/") and '"""' in r["content"] for r in filtered)

    metas = {name: json.loads((seeds / f"{name}.meta.json").read_text()) for name in
             ("raw.jsonl", "dedup.jsonl", "quality.jsonl", "filtered.jsonl")}
    # the funnel is consistent: each stage's input count is the previous stage's output count
    assert metas["dedup.jsonl"]["counts"]["in"] == metas["raw.jsonl"]["counts"]["out"]
    assert metas["quality.jsonl"]["counts"]["in"] == metas["dedup.jsonl"]["counts"]["out"]
    assert metas["filtered.jsonl"]["counts"]["in"] == metas["quality.jsonl"]["counts"]["out"]
    assert metas["filtered.jsonl"]["counts"]["out"] == len(filtered)
    for name, meta in metas.items():
        assert meta["sha256"] and meta["packages"]["selfalign"]
        counts = meta["counts"]
        assert counts["in"] == counts["out"] + counts["dropped"] == counts["out"] + sum(meta["drops"].values()), name
    assert metas["dedup.jsonl"]["drops"].get("near_duplicate", 0) > 0
    assert metas["quality.jsonl"]["drops"].get("no_return", 0) > 0
    assert "benchmarks" in json.dumps(metas["filtered.jsonl"])


def test_second_run_is_byte_identical(clean_run: Path, tmp_path: Path) -> None:
    other = copy_workflow(tmp_path / "selfalign")
    result = run(PROFILE, other, timeout=1200)
    assert result.returncode == 0, result.stdout[-8000:]
    assert _artifacts(other) == _artifacts(clean_run)


def test_killed_midway_then_rerun_gives_the_same_bytes(clean_run: Path, tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "selfalign")
    seeds = workdir / "results" / "tiny" / "seeds"
    log = tmp_path / "killed.log"
    proc = start(PROFILE, workdir, log)
    # Kill inside the quality stage, once at least one of its resumable units is on disk.
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if list(seeds.glob("quality/shard-*.jsonl.parts/*.stats.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-4000:]}"
    kill_group(proc)  # SIGKILL to the whole group: snakemake gets no chance to clean up
    assert not (seeds / "filtered.jsonl").exists()

    # A hard-killed snakemake leaves its lock; removing it is the documented recovery step.
    assert run(["--unlock", *PROFILE], workdir, timeout=120).returncode == 0
    result = run(PROFILE, workdir, timeout=1200)
    assert result.returncode == 0, result.stdout[-8000:]
    assert _artifacts(workdir) == _artifacts(clean_run)
    # nothing left behind by the interrupted job
    assert not list(seeds.rglob("*.parts"))
