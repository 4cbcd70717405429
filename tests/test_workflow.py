"""The workflow as a user drives it: dry runs, lint, config errors, start_from."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflow_utils import (
    RELEASE_CURATION,
    copy_workflow,
    env,
    release_exec_parquet,
    run,
    snakemake_bin,
)


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
    assert "octopack_generate" not in counts  # HumanEvalPack is not the release's: octopack.eval.enabled
    assert elapsed < 10, f"paper dry run took {elapsed:.1f}s"


def test_paper_livecodebench_target_fetches_the_pinned_release_and_samples_as_livecodebench(workdir: Path) -> None:
    result = run(["-n", "-p", "lcb_eval"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    # the four scenarios: code generation's problems fetched once, the two prediction datasets each
    assert (counts["lcb_fetch"], counts["lcb_fetch_data"], counts["lcb_generate"], counts["lcb_repair"],
            counts["lcb_score"], counts["lcb_table"]) == (1, 2, 3, 1, 4, 1)
    out = result.stdout
    revision = "356356a5c3a6baf7748838d82c5c36c62235ca50"
    assert f"selfalign lcb fetch --release release_v1 --revision {revision}" in out
    assert ("selfalign lcb fetch --dataset livecodebench/execution-v2 --revision e3bbac6d5da0043c4a0b4e4f4b678f1f6497cc86"
            in out and "--dataset livecodebench/test_generation --revision 6f3ac40bbecf81eba15899139d279b077f2816fd" in out)
    repair = next(line for line in out.splitlines() if "selfalign lcb generate --scenario selfrepair" in line)
    assert '"n": 1,' in repair and "--codegen-verdicts results/paper/livecodebench/codegeneration/verdicts.jsonl" in repair
    execution = next(line for line in out.splitlines() if "selfalign lcb score --scenario codeexecution" in line)
    assert '"sample_site": "bundled:livecodebench"' in execution and '"preload": ["numpy", "pandas"]' in execution
    assert "-k 1 " in execution
    generate = next(line for line in out.splitlines() if "selfalign lcb generate --scenario codegeneration" in line)
    assert f"--files results/livecodebench/data/{revision}/test.jsonl" in generate
    assert '"n": 10' in generate and '"temperature": 0.2' in generate and '"stop": ["###"]' in generate
    assert '"backend": "vllm"' in generate and "--model-dir results/paper/checkpoint" in generate
    assert "--start-date" not in generate  # no contest-date window unless configured
    assert "selfalign lcb score" in out and '"test_timeout_s": 6' in out


def test_paper_humanevalpack_target_scores_every_task_and_chains_explain(workdir: Path) -> None:
    result = run(["-n", "-p", "octopack_eval"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    assert (counts["octopack_data"], counts["octopack_generate"], counts["octopack_score"], counts["octopack_table"]) == (
        6, 5, 4, 1)
    lines = result.stdout.splitlines()
    generate = {kind: next(line for line in lines if f"selfalign octopack generate --kind {kind} " in line)
                for kind in ("synthesize", "fixtests", "fixdocs", "explaindescribe", "explainsynthesize")}
    # the checkpoint served by vLLM, greedy by default; explain's second step reads the first's samples
    assert all("--model-dir results/paper/checkpoint" in line and '"backend": "vllm"' in line for line in generate.values())
    assert '"temperature": 0.0' in generate["synthesize"] and "--limit" not in generate["synthesize"]
    assert "--descriptions results/paper/octopack/explaindescribe/samples.jsonl" in generate["explainsynthesize"]
    assert not any("--descriptions" in generate[k] for k in ("synthesize", "fixtests", "fixdocs", "explaindescribe"))
    assert "selfalign octopack score --kind explainsynthesize --samples results/paper/octopack/explainsynthesize/" in (
        result.stdout)
    assert "selfalign octopack table --inputs results/paper/octopack/synthesize/summary.json" in result.stdout


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
    assert counts["rescore_dataset"] == 2 and counts["rescore"] == 1 and counts["rescore_input"] == 4
    # the released files come by pinned URL (the release commit) + sha256, not from ../shared
    release = "starcoder2-self-align/0b19dbcdccb4db0601a9a77ac0df53c7abcfb8cc/evaluation/evalplus_results/"
    assert f"{release}evalplus-starcoder2-15b-instruct-v0.1-mbpp_eval_results.json" in result.stdout
    assert "--published results/rescore/inputs/mbpp.published" in result.stdout
    assert '"checker": "release"' in result.stdout


def test_sandbox_pools_are_sized_to_the_cores_the_job_gets(workdir: Path) -> None:
    # config.yaml asks for 16 execution and 8 scoring sandboxes; under --cores 3 each job runs 3.
    result = run(["-n", "-p", "--cores", "3", "--forceall", "results/paper/executed.jsonl", "rescore"],
                 workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    commands = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines()]
    execute = [line for line in commands if line.startswith("selfalign execute ")]
    assert len(execute) == 8 and all('"workers": 3' in line for line in execute), execute[:1]
    scores = [line for line in commands if line.startswith("selfalign eval score ")]
    assert len(scores) == 2 and all(" --workers 3 " in line for line in scores), scores


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


def _start_from_plan(workdir: Path, tmp_path: Path, start_from: str) -> dict[str, int]:
    override = tmp_path / "start.yaml"
    override.write_text(f"start_from: {start_from}\n", encoding="utf-8")
    result = run(["-n", "--quiet", "rules", "--configfile", str(override)], workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    counts = _job_counts(result.stdout)
    assert counts["import_start"] == 1
    return counts


def test_start_from_replaces_the_earlier_stages(workdir: Path, tmp_path: Path) -> None:
    counts = _start_from_plan(workdir, tmp_path, "{stage: quality, dataset: bigcode/python-stack-v1-functions-filtered,"
                              " revision: main, split: train, content_field: content, id_field: sha1}")
    assert "seeds_extract_shard" not in counts and "seeds_dedup" not in counts
    assert counts["seeds_filter_shard"] == 16


def test_start_from_a_later_stage_runs_only_what_follows(workdir: Path, tmp_path: Path) -> None:
    counts = _start_from_plan(workdir, tmp_path, "{stage: instructions, shape: release,"
                              " dataset: bigcode/self-oss-instruct-sc2-instructions, revision: main}")
    for skipped in ("seeds_extract_shard", "seeds_filter_shard", "generate_judge_shard", "generate_concepts_shard",
                    "generate_instructions_shard"):
        assert skipped not in counts, skipped
    assert counts["generate_responses_shard"] >= 1 and counts["execute_shard"] >= 1 and counts["report"] == 1


REPO_DATA = RELEASE_CURATION


@pytest.mark.slow
def test_release_curation_on_an_imported_exec_filtered_set_gives_the_published_sft(
    workdir: Path, tmp_path: Path
) -> None:
    """What a user with Hub access does with the published 500k raw set, on a stand-in: the
    release's execution-filter output (tests/data/release/curation/input.jsonl, as parquet, the
    published format) imported by start_from, curated by the workflow with the paper's curation
    settings, and checked with `selfalign compare` against what the release's own scripts made
    of it (sft.jsonl): every record, the same order."""
    parquet, rows = release_exec_parquet(tmp_path / "train-00000-of-00001.parquet")
    override = tmp_path / "start.yaml"
    override.write_text(
        f"start_from: {{stage: executed, shape: release, dataset: parquet, data_files: [{parquet}]}}\n",
        encoding="utf-8",
    )
    target = "results/tiny/sft.jsonl"
    result = run(["--profile", "profiles/tiny", "--configfile", "profiles/tiny/recipe.yaml", str(override),
                  "--cores", "2", target], workdir, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "import_start" in result.stdout and "execute_shard" not in result.stdout
    out = tmp_path / "compare.json"
    compared = subprocess.run(
        [str(Path(sys.executable).with_name("selfalign")), "compare", "--ours", str(workdir / target),
         "--published-file", str(REPO_DATA / "sft.jsonl.gz"), "--out", str(out)],
        capture_output=True, text=True, env=env(), timeout=120,
    )
    assert compared.returncode == 0, compared.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["ours"]["records"] == report["published"]["records"] == 21
    assert report["identical"] == 21 and report["same_order"], compared.stdout
    sft = [json.loads(line) for line in (workdir / target).read_text(encoding="utf-8").splitlines()]
    published_ids = {row["id"] for row in rows}
    assert all(record["source_id"] in published_ids and record["id"] == f"{record['source_id']}/0" for record in sft)


# --------------------------------------------------------------------------- containers per rule

# Loads the workflow with Snakemake's API and prints {rule: container} for every rule that runs a
# shell command. Snakemake has no command that lists containers; the rule objects hold them.
_RULE_CONTAINERS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, ResourceSettings
with SnakemakeApi() as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path("Snakefile"),
                      config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[1:]]))
    rules = wf._workflow.rules
    print(json.dumps({r.name: (r.container_img or None) for r in rules if r.shellcmd}))
"""

_DIGESTS = {name: f"docker://example.org/selfalign-{name}@sha256:{char * 64}"
            for name, char in (("pipeline", "a"), ("train", "b"), ("vllm", "c"), ("sandbox", "d"))}


def _rule_containers(workdir: Path, tmp_path: Path, *overlays: str) -> dict[str, str | None]:
    files = []
    for i, text in enumerate(overlays):
        path = tmp_path / f"overlay{i}.yaml"
        path.write_text(text, encoding="utf-8")
        files.append(str(path))
    result = subprocess.run([sys.executable, "-c", _RULE_CONTAINERS, "config.yaml", *files],
                            cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _digests_overlay() -> str:
    return "containers:\n" + "".join(f"  {k}: {v!r}\n" for k, v in _DIGESTS.items())


def test_each_rule_runs_in_its_image(workdir: Path, tmp_path: Path) -> None:
    containers = _rule_containers(workdir, tmp_path, _digests_overlay())
    gpu_rules = {f"generate_{s}_shard" for s in ("judge", "concepts", "instructions", "responses")}
    gpu_rules |= {"eval_generate", "octopack_generate", "lcb_generate", "lcb_repair"}
    assert gpu_rules <= set(containers) and "train" in containers and "sft" in containers
    for rule, image in containers.items():
        expected = "vllm" if rule in gpu_rules else "train" if rule == "train" else "pipeline"
        assert image == _DIGESTS[expected], (rule, image)
    # the sandbox image is the podman backend's, never a rule's
    assert _DIGESTS["sandbox"] not in containers.values()


def test_cpu_serving_generates_in_the_pipeline_image(workdir: Path, tmp_path: Path) -> None:
    containers = _rule_containers(workdir, tmp_path, _digests_overlay(),
                                  "serving: {backend: endpoint, endpoint: 'http://gpu:8000'}\n")
    assert containers["generate_responses_shard"] == _DIGESTS["pipeline"]
    assert containers["eval_generate"] == containers["octopack_generate"] == containers["lcb_generate"] == (
        _DIGESTS["pipeline"])
    assert containers["train"] == _DIGESTS["train"]


def test_null_images_mean_no_container(workdir: Path, tmp_path: Path) -> None:
    nulls = "containers: {pipeline: null, train: null, vllm: null, sandbox: null}\n"
    containers = _rule_containers(workdir, tmp_path, nulls)
    assert containers and set(containers.values()) == {None}
    # and the workflow plans under --sdm apptainer without any apptainer installed
    overlay = tmp_path / "nulls.yaml"
    overlay.write_text(nulls, encoding="utf-8")
    result = run(["-n", "--quiet", "rules", "--sdm", "apptainer", "--configfile", str(overlay)],
                 workdir, timeout=60)
    assert result.returncode == 0, result.stdout


def test_a_tag_alone_is_rejected(workdir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tag.yaml"
    bad.write_text("containers: {train: 'docker://ghcr.io/selfalign/train:0.1.0'}\n", encoding="utf-8")
    result = run(["-n", "--configfile", str(bad)], workdir, timeout=60)
    assert result.returncode != 0
    assert "config key 'containers.train'" in result.stdout and "@sha256:" in result.stdout


def _fake_apptainer(tmp_path: Path) -> dict[str, str]:
    """A stand-in `apptainer` that only answers --version: a dry run checks that it exists."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stub = bindir / "apptainer"
    stub.write_text("#!/bin/sh\necho 'apptainer version 1.3.4'\n", encoding="utf-8")
    stub.chmod(0o755)
    e = env()
    e["PATH"] = f"{bindir}{os.pathsep}{e['PATH']}"
    return e


def _run_env(args: list[str], cwd: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([snakemake_bin(), *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=120, start_new_session=True)


def test_a100_profile_plans_every_stage_under_apptainer(workdir: Path, tmp_path: Path) -> None:
    result = _run_env(["--profile", "profiles/a100", "-n", "--quiet", "rules"], workdir,
                      _fake_apptainer(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = _job_counts(result.stdout)
    assert counts["seeds_extract_shard"] == 64 and counts["generate_responses_shard"] == 8
    assert counts["train"] == 1 and counts["eval_generate"] == 2 and counts["eval_table"] == 1
    # the profile itself: apptainer with the GPU, one GPU, the paper config
    profile = (workdir / "profiles/a100/config.yaml").read_text(encoding="utf-8")
    assert "software-deployment-method: apptainer" in profile and "--nv" in profile
    assert "gpu=1" in profile


def test_a100_profile_dry_run_names_missing_apptainer(workdir: Path) -> None:
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("this machine has apptainer: the stubbed test above covers the plan")
    result = _run_env(["--profile", "profiles/a100", "-n", "--quiet", "rules"], workdir, env())
    assert result.returncode != 0
    assert "apptainer or singularity command has to be available" in result.stdout + result.stderr


def test_a100_docker_profile_plans_with_an_endpoint(workdir: Path) -> None:
    result = run(["--profile", "profiles/a100-docker", "-n", "-p", "results/paper/concepts.jsonl"],
                 workdir, timeout=60)
    assert result.returncode == 0, result.stdout
    assert '"backend": "endpoint"' in result.stdout and "gpu=0" in result.stdout.replace(" ", "")
