"""The seed stages of the tiny chain submitted to a real SLURM through profiles/slurm (with the
profiles/slurm-local overlay for a one-node cluster without accounting): every artifact must
equal a local run's, byte for byte, and every job must really have gone through SLURM.

Needs slurmctld and slurmd running on this machine: `scripts/slurm-local.sh` (as root) starts
them. Without them the test fails, unless SELFALIGN_NO_SLURM=1 says this machine has none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from workflow_utils import copy_workflow, kill_group, start

from selfalign.provenance import VOLATILE_KEYS, code_version

RUN_TIMEOUT_S = 900
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(2 * RUN_TIMEOUT_S + 120)]

TARGET = "results/tiny/seeds/filtered.jsonl"
RECIPE = ["--configfile", "config.yaml", "profiles/tiny/recipe.yaml"]
LOCAL = [TARGET, "--profile", "profiles/tiny"]
# the target before --configfile, whose nargs would swallow it
SLURM = [TARGET, "--profile", "profiles/slurm", "--workflow-profile", "profiles/slurm-local", *RECIPE]
# the SLURM jobs of the seed stages: each stage's shards as one group job, each merge on its own
GROUP_LOGS = ("group_seeds_extract_seeds_extract_shard", "group_seeds_quality_seeds_quality_shard",
              "group_seeds_filter_seeds_filter_shard")
RULE_LOGS = ("rule_seeds_raw", "rule_seeds_dedup", "rule_seeds_quality", "rule_seeds_filtered")
UP_STATES = {"idle", "mixed", "allocated", "completing"}


def _slurm_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


def _slurm_problem() -> str | None:
    """Why no SLURM job can run here, or None when slurmctld answers and a node is up."""
    if shutil.which("sinfo") is None:
        return "the SLURM client commands (sinfo, sbatch, squeue) are not installed"
    ping = _slurm_cmd("scontrol", "ping")
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = (ping.stdout + ping.stderr).strip().splitlines()
        return f"slurmctld does not answer (`scontrol ping`: {said[0] if said else ping.returncode})"
    nodes = _slurm_cmd("sinfo", "-h", "-N", "-o", "%N %T %c")
    up = [line.split() for line in nodes.stdout.splitlines() if line.split()[1:2] and line.split()[1] in UP_STATES]
    if not up:
        return f"no SLURM node is up (slurmd not running?); sinfo says: {nodes.stdout.strip() or nodes.stderr.strip()}"
    if max(int(cpus) for _, _, cpus in up) < 2:
        return "the seed stages' group jobs need a node with 2 CPUs; sinfo: " + nodes.stdout.strip()
    return None


@pytest.fixture(scope="module")
def slurm_up() -> None:
    problem = _slurm_problem()
    if problem is None:
        return
    if os.environ.get("SELFALIGN_NO_SLURM") == "1":
        pytest.skip(f"SELFALIGN_NO_SLURM=1 and no SLURM here: {problem}")
    pytest.fail(f"{problem}. Start a one-node cluster with `scripts/slurm-local.sh` (as root), or set "
                "SELFALIGN_NO_SLURM=1 to skip the SLURM test on a machine without one.", pytrace=False)


def _run(args: list[str], workdir: Path, log: Path) -> str:
    """snakemake ``args`` in ``workdir`` to completion; on a timeout, kill it and cancel its jobs."""
    proc = start(args, workdir, log)
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out = log.read_text()
        run_id = re.search(r"SLURM run ID: (\S+)", out)
        if run_id:  # the plugin names every job of a run after its run ID
            _slurm_cmd("scancel", "--name", run_id.group(1))
        queue = _slurm_cmd("squeue", "-t", "all", "-o", "%i %j %T %r").stdout
        raise AssertionError(f"snakemake {' '.join(args)} timed out after {RUN_TIMEOUT_S}s\n"
                             f"squeue:\n{queue}\n{out[-6000:]}") from None
    out = log.read_text()
    if proc.returncode != 0:
        queue = _slurm_cmd("squeue", "-t", "all", "-o", "%i %j %T %r").stdout
        raise AssertionError(f"snakemake {' '.join(args)} exited {proc.returncode}\nsqueue:\n{queue}\n{out[-8000:]}")
    return out


class Run(NamedTuple):
    workdir: Path
    output: str


class Runs(NamedTuple):
    local: Run
    slurm: Run
    same_code: bool  # the checkout's git state was the same before and after both runs


@pytest.fixture(scope="module")
def runs(slurm_up: None, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The seed stages once with the tiny profile (local jobs) and once through SLURM."""
    base = tmp_path_factory.mktemp("slurm")
    code = code_version()
    done = {}
    for name, args in (("local", LOCAL), ("slurm", SLURM)):
        workdir = copy_workflow(base / name / "selfalign")
        started = time.monotonic()
        done[name] = Run(workdir, _run(args, workdir, base / f"{name}.log"))
        print(f"{name} run: {time.monotonic() - started:.0f} s")
    # the sidecars record the checkout's commit and dirtiness: equal only if nobody committed
    # or edited src/selfalign between the two runs (always so in CI)
    return Runs(done["local"], done["slurm"], same_code=code == code_version())


def _files(workdir: Path) -> dict[str, Path]:
    results = workdir / "results"
    return {p.relative_to(results).as_posix(): p for p in sorted(results.rglob("*")) if p.is_file()}


def _comparable(sidecar: Path, same_code: bool) -> dict:
    """A sidecar less what may differ between two runs of the same code on the same inputs:
    provenance's VOLATILE_KEYS (wall time, timestamp, host) and durations in its stats (e.g.
    seeds.quality's pyright_seconds); and the git state, if the checkout moved in between."""

    def strip(node: object) -> object:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.endswith("seconds")}
        return node

    meta = json.loads(sidecar.read_text())
    meta = {k: strip(v) for k, v in meta.items() if k not in VOLATILE_KEYS}
    if not same_code:
        meta["code"] = {"selfalign": meta["code"]["selfalign"]}
    return meta


def test_slurm_run_gives_the_local_run_bytes(runs: Runs) -> None:
    local, slurm = _files(runs.local.workdir), _files(runs.slurm.workdir)
    # the same files, the shards' temp outputs gone in both
    assert sorted(slurm) == sorted(local)
    artifacts = [name for name in local if name.startswith("tiny/seeds/")]
    assert {Path(a).name for a in artifacts} >= {
        "raw.jsonl", "raw.jsonl.meta.json", "dedup.jsonl", "dedup.jsonl.meta.json", "dedup.duplicates.jsonl",
        "quality.jsonl", "quality.jsonl.meta.json", "filtered.jsonl", "filtered.jsonl.meta.json"}
    for name in artifacts:
        if name.endswith(".meta.json"):
            # counts, drops, sha256 of inputs and output, config, stats, code and package versions
            assert _comparable(slurm[name], runs.same_code) == _comparable(local[name], runs.same_code), name
        else:
            assert slurm[name].read_bytes() == local[name].read_bytes(), name
    filtered = local["tiny/seeds/filtered.jsonl"].read_text().splitlines()
    assert len(filtered) > 50
    # logs and benchmarks hold timings: present for every job, not compared
    assert any(n.startswith("tiny/logs/seeds/extract/") for n in slurm)
    assert any(n.startswith("tiny/benchmarks/seeds/quality/") for n in slurm)


def test_every_job_ran_as_a_slurm_job(runs: Runs) -> None:
    workdir, out = runs.slurm
    run_id = re.search(r"SLURM run ID: (\S+)", out)
    assert run_id, out[-4000:]
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", out)
    # 3 group jobs (extract, quality, filter shards) and 4 merges: 7 SLURM jobs for 9 rule jobs
    assert len(job_ids) == len(GROUP_LOGS) + len(RULE_LOGS), out[-4000:]
    assert "SLURM" not in runs.local.output

    # SLURM knows them: squeue (finished jobs stay listed for slurm.conf's MinJobAge) shows each
    # completed, named after the run
    ids = ",".join(job_id for job_id, _ in job_ids)
    queue = _slurm_cmd("squeue", "-t", "all", "-h", "-j", ids, "-o", "%i|%j|%T").stdout.split()
    assert sorted(queue) == sorted(f"{job_id}|{run_id.group(1)}|COMPLETED" for job_id, _ in job_ids)

    # each job's SLURM log: where the plugin said, with the jobstep's snakemake running its rules
    logs = workdir / ".snakemake" / "slurm_logs"
    assert sorted(p.name for p in logs.iterdir()) == sorted((*GROUP_LOGS, *RULE_LOGS))
    for job_id, path in job_ids:
        log = Path(path)
        assert log.parent.parent == logs.resolve() and log.name == f"{job_id}.log"
        text = log.read_text()
        assert "--executor slurm-jobstep" in text, text[-2000:]
        assert "Finished jobid" in text or "steps (100%) done" in text, text[-2000:]
    # a group job ran all of its stage's shards (both extract shards in one SLURM job)
    extract = next((logs / GROUP_LOGS[0]).glob("*.log")).read_text()
    assert "--shard 0000" in extract and "--shard 0001" in extract
