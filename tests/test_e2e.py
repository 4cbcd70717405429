"""The tiny chain end to end, as the README runs it: once clean, and once killed midway and
resumed, which must give the same bytes (so it is also the rerun-determinism check).

From the stdlib to the eval table: seed stages, the tiny base model trained on CPU, the judge,
S->C, C->I and I->R stages through the CPU completions server, the sandboxed execution filter,
curation, fine-tuning, EvalPlus generation and scoring in the sandbox, and HumanEvalPack's
every task in six languages.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from workflow_utils import copy_workflow, kill_group, mkl_vendor_preload, run, start

from selfalign import chain
from selfalign.determinism import PORTABLE_CPU_ENV
from selfalign.livecodebench.workflow import SCENARIOS as LCB_SCENARIOS
from selfalign.octopack import humanevalpack
from selfalign.octopack.results import TABLE_KINDS as SCORED

# A tiny chain takes 8-20 minutes on 2 cores (the CPU decides); the module-wide 900 s limit
# would cut the clean run short and leave its processes behind.
CHAIN_TIMEOUT_S = 2700
pytestmark = [pytest.mark.sandbox, pytest.mark.server, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2 * CHAIN_TIMEOUT_S + 600)]

# The chain's artifacts come from its one definition (selfalign.chain).
SEED_ARTIFACTS = (*(chain.stage(k).artifact.removeprefix("seeds/") for k in chain.SEED_STAGES), "dedup.duplicates.jsonl")
MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_log.json",
)
GENERATED = tuple(s.artifact for s in chain.ARTIFACT_STAGES if s.sidecar_stage.startswith("generate."))
EXECUTED = chain.stage("executed").artifact
DROPPED = tuple(str(chain.dropped_path(s.artifact)) for s in chain.ARTIFACT_STAGES if s.drops)
CURATED = ("sanitized.jsonl", "cleaned.jsonl", "sft.jsonl", "sft.parquet", "README.md", "decontamination.json")
CHECKPOINT_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                    "tokenizer_config.json", "chat_template.jinja")
EVALUATED = ("eval/humaneval.samples.jsonl", "eval/mbpp.samples.jsonl", "eval/humaneval.json",
             "eval/mbpp.json", "eval/table.md")
HUMANEVALPACK = (*(f"octopack/{kind}/samples.jsonl" for kind in humanevalpack.TASKS),
                 *(f"octopack/{kind}/{name}" for kind in SCORED for name in ("verdicts.jsonl", "summary.json")),
                 "octopack/table.md", "octopack/table.json",
                 *(f"livecodebench/{scenario}/{name}" for scenario in LCB_SCENARIOS
                   for name in ("samples.jsonl", "verdicts.jsonl", "summary.json", "table.md")),
                 "livecodebench/selfrepair/repairs.jsonl", "livecodebench/table.md", "livecodebench/table.json")
REPORTED = ("report/index.html", "report/report.json", "report/funnel.svg")
# strict: a run whose bytes differ from the lock fails (profiles/tiny/strict.yaml), as in CI
PROFILE = ["--profile", "profiles/tiny", "--configfile", "config.yaml", "profiles/tiny/recipe.yaml",
           "profiles/tiny/strict.yaml"]


def _artifacts(workdir: Path) -> dict[str, bytes]:
    results = workdir / "results" / "tiny"
    found = {f"seeds/{name}": (results / "seeds" / name).read_bytes() for name in SEED_ARTIFACTS}
    found.update({f"model/base/{name}": (results / "model" / "base" / name).read_bytes() for name in MODEL_FILES})
    found.update({name: (results / name).read_bytes() for name in (*GENERATED, EXECUTED, *CURATED, *EVALUATED,
                                                                   *HUMANEVALPACK, *REPORTED, *DROPPED)})
    found.update({f"checkpoint/{name}": (results / "checkpoint" / name).read_bytes() for name in CHECKPOINT_FILES})
    return found


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("clean") / "selfalign")
    result = run(PROFILE, workdir, timeout=CHAIN_TIMEOUT_S)
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


def test_tiny_chain_generates_through_responses(clean_run: Path) -> None:
    results = clean_run / "results" / "tiny"
    metas = {name: json.loads((results / f"{name}.meta.json").read_text()) for name in GENERATED}
    filtered = len(_records(results / "seeds" / "filtered.jsonl"))
    recipe = yaml.safe_load((clean_run / "profiles" / "tiny" / "recipe.yaml").read_text())
    limit, n = recipe["generation"]["limit"], recipe["generation"]["responses"]["n"]
    # The judge sees the first generation.limit filtered seeds; each later stage all that the
    # one before it kept; nothing is lost between stages and every stage has output.
    assert metas["seeds/judged.jsonl"]["counts"]["in"] == min(limit, filtered)
    chain = list(GENERATED)
    for before, after in zip(chain, chain[1:], strict=False):
        assert metas[after]["counts"]["in"] == metas[before]["counts"]["out"], after
    for name, meta in metas.items():
        counts = meta["counts"]
        assert counts["out"] > 0, f"{name} is empty: {meta['drops']}"
        assert counts["in"] == counts["out"] + sum(meta["drops"].values()), name
        assert len(_records(results / name)) == counts["out"]
        assert meta["stats"]["requests"] == counts["in"] - meta["drops"].get("no_docstring", 0)
        assert meta["stats"]["errors"] == 0, name
    responses = _records(results / "responses.jsonl")
    for record in responses:
        assert record["id"].startswith("stdlib/")
        assert record["instruction"] and record["concepts"] and record["content"]
        assert set(record["generation"]) == {"judge", "concepts", "instructions", "responses"}
        assert record["generation"]["responses"]["seed"] == 3407 + record["generation"]["responses"]["index"]
        assert 1 <= len(record["responses"]) <= n
    assert metas["responses.jsonl"]["stats"]["samples"] == n * metas["responses.jsonl"]["stats"]["requests"]
    model_meta = json.loads((results / "model" / "base.meta.json").read_text())
    assert model_meta["stats"]["steps"] > 0 and model_meta["sha256"]


def test_tiny_chain_executes_every_kept_sample_in_the_sandbox(clean_run: Path) -> None:
    results = clean_run / "results" / "tiny"
    responses = _records(results / "responses.jsonl")
    meta = json.loads((results / f"{EXECUTED}.meta.json").read_text())
    samples = sum(len(r["responses"]) for r in responses)
    counts = meta["counts"]
    # Counted in samples: every kept response sample was run (or had no code), none vanished.
    assert counts["in"] == samples
    assert counts["in"] == counts["out"] + sum(meta["drops"].values())
    assert meta["stats"]["backend"] == "gvisor"
    executed = _records(results / EXECUTED)
    assert len(executed) == counts["out"]
    sources = {r["id"] for r in responses}
    for record in executed:
        assert record["source_id"] in sources and record["execution"]["status"] == "pass"


def test_tiny_chain_curates_a_non_empty_sft_dataset(clean_run: Path) -> None:
    results = clean_run / "results" / "tiny"
    metas = {name: json.loads((results / f"{name}.meta.json").read_text()) for name in (EXECUTED, *CURATED[:3])}
    # each stage reads exactly what the one before it wrote, and accounts for every record
    chain = [EXECUTED, "sanitized.jsonl", "cleaned.jsonl", "sft.jsonl"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert metas[after]["counts"]["in"] == metas[before]["counts"]["out"], after
        counts = metas[after]["counts"]
        assert counts["in"] == counts["out"] + sum(metas[after]["drops"].values())
    sft = _records(results / "sft.jsonl")
    assert sft, "the tiny chain must reach a non-empty SFT dataset"
    executed = {r["id"]: r for r in _records(results / EXECUTED)}
    for record in sft:
        assert set(record) >= {"id", "instruction", "response", "source_id", "sample"}
        origin = executed[record["id"]]
        assert origin["execution"]["status"] == "pass"
        assert record["instruction"].startswith(origin["instruction"])  # SMART may append asserts
        assert "[Implementation]" not in record["response"] and "```python" in record["response"]
    # one response per instruction
    assert len({r["source_id"] for r in sft}) == len(sft)
    card = (results / "README.md").read_text()
    assert "| `sft.jsonl` |" in card and "| `executed.jsonl` |" in card
    report = json.loads((results / "decontamination.json").read_text())
    # the release did not decontaminate the SFT records: config.yaml lists matches, the
    # corrected overlay drops them
    assert report["hits"] == [] and report["action"] == "reported only"


def test_tiny_chain_fine_tunes_a_checkpoint(clean_run: Path) -> None:
    results = clean_run / "results" / "tiny"
    summary = json.loads((results / "checkpoint" / "training_summary.json").read_text())
    meta = json.loads((results / "checkpoint.meta.json").read_text())
    sft = _records(results / "sft.jsonl")
    recipe = yaml.safe_load((clean_run / "profiles" / "tiny" / "recipe.yaml").read_text())
    accumulation = recipe["training"]["gradient_accumulation_steps"]
    # every SFT record, 4 epochs of ceil(n / accumulation) optimizer steps, a falling loss
    assert summary["examples"] == len(sft) == meta["counts"]["in"]
    assert summary["final_step"] == 4 * -(-len(sft) // accumulation)
    curve = [e["loss"] for e in summary["loss_curve"]]
    assert len(curve) == summary["final_step"] and curve[-1] < curve[0]
    assert meta["final_checkpoint"]["files"]["model.safetensors"] == summary["files"]["model.safetensors"]
    assert summary["params"]["optim"] == "adafactor" and summary["hardware"]["device"] == "cpu"


def test_tiny_chain_scores_the_checkpoint_on_evalplus(clean_run: Path) -> None:
    results = clean_run / "results" / "tiny"
    limit = yaml.safe_load((clean_run / "profiles" / "tiny" / "recipe.yaml").read_text())["evaluation"]["limit"]
    for dataset, first in (("humaneval", "HumanEval/0"), ("mbpp", "Mbpp/2")):
        samples = _records(results / "eval" / f"{dataset}.samples.jsonl")
        # one greedy sample per task, in dataset order, generated by the fine-tuned checkpoint
        assert len(samples) == limit and samples[0]["task_id"] == first
        assert all(s["finish_reason"] in ("stop", "length") and "error" not in s for s in samples)
        score = json.loads((results / "eval" / f"{dataset}.json").read_text())
        assert score["n_tasks"] == limit and list(score["tasks"]) == [s["task_id"] for s in samples]
        for verdict in score["tasks"].values():
            assert verdict["base_status"] in ("pass", "fail") and verdict["plus_status"] in ("pass", "fail")
        # plus counts a task only if base passed too
        assert score["plus"]["passed"] <= score["base"]["passed"] <= limit
    table = (results / "eval" / "table.md").read_text()
    assert "HumanEval" in table and "MBPP" in table and "72.6" in table


def test_tiny_chain_scores_the_checkpoint_on_humanevalpack(clean_run: Path) -> None:
    """The tiny profile has octopack.eval.enabled: every HumanEvalPack task in six languages, 2
    tasks each, generated by the fine-tuned checkpoint and scored in gVisor, the table beside
    OctoCoder's figures, and the run report with it."""
    results = clean_run / "results" / "tiny"
    order = [(lang, n) for lang in humanevalpack.LANGUAGES for n in range(2)]
    for kind in humanevalpack.TASKS:
        samples = _records(results / "octopack" / kind / "samples.jsonl")
        # one greedy sample per task, language then task order, from the fine-tuned checkpoint
        assert [(s["language"], s["task_id"].split("/")[1]) for s in samples] == [(lang, str(n)) for lang, n in order]
        assert all(len(s["completions"]) == 1 and s["finish_reasons"][0] in ("stop", "length") for s in samples)
        meta = json.loads((results / "octopack" / kind / "samples.jsonl.meta.json").read_text())
        assert meta["stage"] == f"octopack.generate.{kind}" and meta["config"]["generation"]["max_tokens"] == 256
        inputs = [i["path"] for i in meta["inputs"]]
        # explain is two steps: the describe step's samples are the second step's input
        assert any(p.endswith("explaindescribe/samples.jsonl") for p in inputs) == (kind == "explainsynthesize")
    for kind in SCORED:
        verdicts = _records(results / "octopack" / kind / "verdicts.jsonl")
        assert [(v["language"], v["sample"]) for v in verdicts] == [(lang, 0) for lang, _ in order]
        assert all(v["status"] in ("pass", "fail") and v["reason"] != "missing" for v in verdicts)
        summary = json.loads((results / "octopack" / kind / "summary.json").read_text())
        assert summary["kind"] == kind and summary["limit"] == 2
        assert {lang: e["tasks"] for lang, e in summary["languages"].items()} == dict.fromkeys(humanevalpack.LANGUAGES, 2)
    table = json.loads((results / "octopack" / "table.json").read_text())
    assert [(r["task"], r["language"]) for r in table["rows"]] == [
        (kind, lang) for kind in SCORED for lang in (*humanevalpack.LANGUAGES, "avg")]
    markdown = (results / "octopack" / "table.md").read_text()
    assert "| HumanEvalSynthesize | Python | 2 | 1 |" in markdown and "46.2 |" in markdown
    report = json.loads((results / "report" / "report.json").read_text())
    assert report["humanevalpack"] == table
    assert "HumanEvalPack (OctoPack)" in (results / "report" / "index.html").read_text()


def test_tiny_chain_scores_the_checkpoint_on_livecodebench(clean_run: Path) -> None:
    """The tiny profile has livecodebench.enabled, all four scenarios on fixture items: one greedy
    sample each from the fine-tuned checkpoint, judged in gVisor by each scenario's rules, and
    one table beside the model card's four figures."""
    out = clean_run / "results" / "tiny" / "livecodebench" / "codegeneration"
    samples = _records(out / "samples.jsonl")
    assert [s["question_id"] for s in samples] == ["fx-lc-sum", "fx-lc-order", "fx-abc-mean", "fx-cf-reverse"]
    assert all(len(s["completions"]) == 1 and "error" not in s for s in samples)
    verdicts = _records(out / "verdicts.jsonl")
    assert [(v["question_id"], v["sample"]) for v in verdicts] == [(s["question_id"], 0) for s in samples]
    assert all(v["status"] in ("pass", "fail") and v["reason"] != "missing" for v in verdicts)
    # a failing sample's verdict carries the grader's report, which self repair's prompt quotes
    failing = [v for v in verdicts if v["status"] != "pass"]
    assert all(v["feedback"] is None or v["feedback"]["error_code"] in (-1, -2, -3, -4) for v in failing)
    repair = clean_run / "results" / "tiny" / "livecodebench" / "selfrepair"
    assert len(_records(repair / "repairs.jsonl")) == len(failing)
    assert [s["question_id"] for s in _records(repair / "samples.jsonl")] == [s["question_id"] for s in samples]
    for scenario, ids in (("testoutputprediction", ["fx-lc-order/0", "fx-lc-sum/0", "fx-lc-sum/1"]),
                          ("codeexecution", ["sample_0", "sample_2", "sample_10"])):
        scored = clean_run / "results" / "tiny" / "livecodebench" / scenario
        assert [s["id"] for s in _records(scored / "samples.jsonl")] == ids
        assert [(v["id"], v["sample"]) for v in _records(scored / "verdicts.jsonl")] == [(i, 0) for i in ids]
    card = json.loads((clean_run / "results" / "tiny" / "livecodebench" / "table.json").read_text())
    assert [(r["scenario"], r["card"]) for r in card["rows"]] == [
        ("codegeneration", 20.4), ("selfrepair", 20.9), ("testoutputprediction", 29.8), ("codeexecution", 28.1)]
    report = clean_run / "results" / "tiny" / "report"
    assert json.loads((report / "report.json").read_text())["livecodebench"] == card
    assert "<h3>LiveCodeBench</h3>" in (report / "index.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"]["all"]["problems"] == 4 and set(summary["groups"]) == {"all", "easy", "medium", "hard"}
    assert "| all | 4 | 1 |" in (out / "table.md").read_text()
    meta = json.loads((out / "samples.jsonl.meta.json").read_text())
    assert meta["config"]["generation"]["max_tokens"] == 256 and meta["config"]["generation"]["stop"] == ["###"]


def test_tiny_chain_reports_the_sidecars_funnel_and_hashes(clean_run: Path, tmp_path: Path) -> None:
    results = clean_run / "results" / "tiny"
    report = json.loads((results / "report" / "report.json").read_text())
    page = (results / "report" / "index.html").read_text()
    assert "<svg" in page and "<script" not in page
    # records, not only counts: examples per stage linked to the drop files, and the loss curve
    examples = {e["stage"]: e for e in report["examples"]}
    assert examples["executed"]["dropped"] and examples["executed"]["dropped_file"] == "executed.dropped.jsonl"
    assert '<a href="../executed.dropped.jsonl">' in page and "Fine-tuning loss" in page
    assert len(report["loss_curve"]) == json.loads((results / "checkpoint.meta.json").read_text())["stats"]["final_step"]
    meta = {name: json.loads((results / f"{name}.meta.json").read_text()) for name in
            [f"seeds/{n}" for n in SEED_ARTIFACTS if n != "dedup.duplicates.jsonl"] + [*GENERATED, EXECUTED, *CURATED[:3]]}
    # every funnel number is its stage's sidecar's, from the extracted seeds to the SFT set
    rows = {row["key"]: row for row in report["funnel"]}
    assert list(rows)[0] == "raw" and list(rows)[-1] == "sft"
    for row in report["funnel"]:
        counts, drops = meta[row["artifact"]]["counts"], meta[row["artifact"]]["drops"]
        if row["key"] == "samples":
            stats = meta["responses.jsonl"]["stats"]
            counts, drops = {"in": stats["samples"], "out": stats["samples_kept"]}, stats["sample_drops"]
        assert (row["in"], row["out"], row["drops"]) == (counts["in"], counts["out"], drops), row["key"]
        assert row["balanced"] and row["chained"] is not False, row["key"]
    assert rows["executed"]["in"] == rows["samples"]["out"] and rows["sft"]["out"] == len(_records(results / "sft.jsonl"))
    # the eval scores and every artifact's hash are the score files' and the sidecars'
    for score in report["evaluation"]["scores"]:
        result = json.loads((results / "eval" / f"{score['dataset']}.json").read_text())
        assert (score["base"]["passed"], score["plus"]["passed"]) == (result["base"]["passed"], result["plus"]["passed"])
    assert report["evaluation"]["table_md_matches"] is True
    for art in report["artifacts"]:
        if art["sha256_from"] == "sidecar":
            assert art["sha256"] == json.loads(Path(clean_run / f"{art['path']}.meta.json").read_text())["sha256"]
    assert report["input_links"].get("differs", 0) == 0 and report["input_links"]["match"] > 0
    # Snakemake's own report, with the run report, the funnel, the eval table and the card in it
    out = tmp_path / "snakemake-report.html"
    result = run(["--report", str(out), *PROFILE], clean_run, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    html = out.read_text()
    assert "funnel.svg" in html and "index.html" in html and "1. Run report" in html


def test_tiny_chain_names_every_dropped_record_and_explains_a_seed(clean_run: Path) -> None:
    """Each dropping stage's drop file holds one record per drop its sidecar counts, and
    `selfalign explain` follows a seed from the extracted functions to its SFT record."""
    import subprocess
    import sys
    from collections import Counter

    results = clean_run / "results" / "tiny"
    for stage in chain.ARTIFACT_STAGES:
        meta = json.loads((results / f"{stage.artifact}.meta.json").read_text())
        rows = _records(chain.dropped_path(results / stage.artifact))
        expected = {k: v for k, v in meta["drops"].items() if v}
        expected.update({f"sample:{k}": v for k, v in meta.get("stats", {}).get("sample_drops", {}).items() if v})
        assert Counter(r["reason"] for r in rows) == expected, stage.key
        assert meta["dropped"]["records"] == len(rows), stage.key
    failed = [r for r in _records(results / "executed.dropped.jsonl") if r["reason"].startswith("fail:")]
    assert failed and all(r["detail"]["stderr_tail"] and "exception" in r["detail"] for r in failed)
    quality = _records(results / "seeds" / "quality.dropped.jsonl")
    assert any(r["detail"].get("first_error") for r in quality if r["reason"] == "pyright_error")

    seed = _records(results / "sft.jsonl")[0]["source_id"]
    selfalign = str(Path(sys.executable).with_name("selfalign"))
    done = subprocess.run([selfalign, "explain", seed, "--results", str(results), "--json"],
                          capture_output=True, text=True, timeout=120, check=True)
    stages = {s["stage"]: s for s in json.loads(done.stdout)["stages"]}
    assert stages["raw"]["status"] == "kept" and stages["sft"]["status"] in ("kept", "partly kept")
    assert any(r["kept"] for r in stages["sft"]["records"])
    text = subprocess.run([selfalign, "explain", seed, "--results", str(results)],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert text.startswith(f"{seed}:") and "sample " in text


def _native_cpu_env() -> dict[str, str]:
    """What this CPU would run with if nothing forced the portable kernels: ATen's own pick
    (e.g. avx512), MKL's automatic dispatch, oneDNN's full ISA."""
    import subprocess
    import sys

    picked = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                            capture_output=True, text=True, check=True,
                            env={k: v for k, v in os.environ.items() if k not in PORTABLE_CPU_ENV}).stdout.strip()
    if picked.lower() == PORTABLE_CPU_ENV["ATEN_CPU_CAPABILITY"]:
        picked = "default"  # an AVX2-only CPU: ask for another setting still
    return {"ATEN_CPU_CAPABILITY": picked.lower(), "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "ALL"}


def test_tiny_chain_ends_verified_against_the_published_lock(clean_run: Path) -> None:
    results = clean_run / "results" / "tiny"
    report = json.loads((results / "verify.json").read_text())
    locked = len(json.loads((clean_run / "tests" / "expected" / "tiny.lock.json").read_text())["artifacts"])
    assert locked == 75  # the chain's 37, HumanEvalPack's 19 and LiveCodeBench's 19 (four scenarios and their table)
    assert report["ok"] and report["identical"] == report["artifacts"] == locked, report["first_divergence"]
    assert report["not_in_lock"] == []
    # the run report, written after the check, shows its verdict
    page = (results / "report" / "index.html").read_text()
    assert f"<b>Bytes against the lock:</b> verified: {locked} of {locked} artifacts identical" in page
    # every job ran with the portable kernels (the AVX2 floor), whatever the caller asked for
    for name in ("model/base", "checkpoint", "eval/humaneval.samples.jsonl"):
        facts = json.loads((results / f"{name}.meta.json").read_text())["determinism"]
        assert facts["env"] == {**facts["env"], **PORTABLE_CPU_ENV}, name
    # ... and the matmuls of the stages that trained ran in the fixed-order BLAS, not oneMKL
    for name in ("model/base", "checkpoint"):
        facts = json.loads((results / f"{name}.meta.json").read_text())["determinism"]
        assert facts["fixed_blas"]["calls"] > 100, name


#: The stages the killed run takes from the clean run instead of rebuilding them (the seed stages,
#: the tiny base model, judge, S->C and C->I): everything before I->R, the stage it is killed in.
#: That the tiny model stage gives the same bytes under this run's CPU request is proven at a
#: small shape in tests/test_tinymodel.py (test_a_build_under_another_cpu_request_...).
UPSTREAM_DIRS = ("seeds", "model")
UPSTREAM_FILES = ("concepts.", "instructions.")  # the artifacts, sidecars, drop files and indexes


def _start_from_clean_upstream(clean: Path, workdir: Path) -> list[str]:
    """Copy the clean run's artifacts before I->R (with their sidecars, drop files and indexes,
    mtimes kept) into workdir, check their hashes, and return what was copied."""
    import hashlib
    import shutil

    src, dst = clean / "results" / "tiny", workdir / "results" / "tiny"
    copied = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        if rel.split("/", 1)[0] in UPSTREAM_DIRS or rel.startswith(UPSTREAM_FILES):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / rel)
            copied.append(rel)
    for rel in copied:
        assert hashlib.sha256((dst / rel).read_bytes()).digest() == hashlib.sha256((src / rel).read_bytes()).digest()
    assert {"seeds/judged.jsonl", "model/base/model.safetensors", "instructions.jsonl"} <= set(copied)
    assert not any(rel.startswith(("responses", "executed", "generate/")) for rel in copied)
    return copied


def test_killed_midway_then_rerun_gives_the_same_bytes(clean_run: Path, tmp_path: Path) -> None:
    """Starts from the clean run's artifacts before I->R (copied, hashes checked) and is killed
    inside I->R with its server live; the rerun must give the clean run's bytes.

    Also the CPU-capability check: this run's environment asks for this CPU's own kernels
    (AVX-512 here) while the clean run's asked for nothing, and makes oneMKL take the dispatch it
    takes on the other vendor's CPU (tests/data/mkl_non_intel.c on an Intel machine,
    mkl_intel.c elsewhere); the workflow's portable kernels (determinism.cpu_kernels: the AVX2
    floor and the fixed-order BLAS) override the one and do not depend on the other, so the
    bytes of every stage from I->R on (CPU server sampling, execution, fine-tuning, eval) are
    the same, and the published ones."""
    workdir = copy_workflow(tmp_path / "selfalign")
    results = workdir / "results" / "tiny"
    copied = _start_from_clean_upstream(clean_run, workdir)
    log = tmp_path / "killed.log"
    other_vendor = "non_intel" if "GenuineIntel" in Path("/proc/cpuinfo").read_text() else "intel"
    native = {**_native_cpu_env(), "LD_PRELOAD": mkl_vendor_preload(tmp_path, other_vendor)}
    proc = start(PROFILE, workdir, log, extra_env=native)
    # Kill inside the I->R stage (server, client and all), once one of its resumable units is
    # on disk: the rerun must send only the rest and still give the same bytes.
    deadline = time.time() + CHAIN_TIMEOUT_S
    while time.time() < deadline and proc.poll() is None:
        if list(results.glob("generate/responses/shard-*.jsonl.parts/*.stats.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-4000:]}"
    kill_group(proc)  # SIGKILL to the whole group: snakemake gets no chance to clean up
    assert not (results / "responses.jsonl").exists()

    # A hard-killed snakemake leaves its lock; removing it is the documented recovery step.
    assert run(["--unlock", *PROFILE], workdir, timeout=120).returncode == 0
    result = run(PROFILE, workdir, timeout=CHAIN_TIMEOUT_S, extra_env=native)
    assert result.returncode == 0, result.stdout[-8000:]
    assert _artifacts(workdir) == _artifacts(clean_run)
    assert "verified:" in result.stdout and json.loads((results / "verify.json").read_text())["ok"]
    facts = json.loads((results / "checkpoint.meta.json").read_text())["determinism"]
    assert facts["cpu_capability"] == "AVX2" and facts["env"]["ATEN_CPU_CAPABILITY"] == "avx2"
    # nothing left behind by the interrupted job, and it was resumed, not redone
    assert not list(results.rglob("*.parts"))
    meta = json.loads((results / "responses.jsonl.meta.json").read_text())
    assert meta["stats"]["units_resumed"] >= 1
    # the copied upstream was used as it was, not rebuilt (its bytes, and the stages' logs absent)
    assert not (results / "logs" / "model").exists() and len(copied) > 10
