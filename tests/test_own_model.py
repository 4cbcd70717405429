"""Bring your own base model: a second tiny architecture (Qwen2, BOS-less tokenizer, built here)
named by model.name runs train -> eval generation -> scoring through the workflow, with
training.extra overriding a TrainingArguments key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from own_model import build_qwen2
from workflow_utils import copy_workflow, release_exec_parquet, run


@pytest.mark.slow
def test_a_qwen2_base_model_trains_generates_and_is_scored(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf" / "selfalign")
    texts = ["def add_one(x):\n    return x + 1\n", "Write a Python function that adds one to x."] * 40
    base = build_qwen2(tmp_path / "qwen2", texts)
    parquet, _ = release_exec_parquet(tmp_path / "exec.parquet")
    overlay = tmp_path / "own.yaml"
    overlay.write_text(
        f"start_from: {{stage: executed, shape: release, dataset: parquet, data_files: [{parquet}]}}\n"
        f"model: {{name: {base}, revision: null, build: null}}\n"
        "training: {max_steps: 2, extra: {report_to: none, dataloader_drop_last: false}}\n"
        "evaluation: {limit: 2}\n",
        encoding="utf-8",
    )
    targets = ["results/tiny/eval/humaneval.json", "results/tiny/eval/mbpp.json"]
    result = run(["--profile", "profiles/tiny", "--configfile", "profiles/tiny/recipe.yaml", str(overlay),
                  "--cores", "2", *targets], workdir, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    results = workdir / "results" / "tiny"
    checkpoint = results / "checkpoint"
    assert json.loads((checkpoint / "config.json").read_text())["model_type"] == "qwen2"
    # the release's chat template, without a BOS the tokenizer does not have
    template = (checkpoint / "chat_template.jinja").read_text()
    assert "bos_token" not in template and template.startswith("{{'You are an exceptionally intelligent")
    train_meta = json.loads((results / "checkpoint.meta.json").read_text())
    assert train_meta["stats"]["final_step"] == 2
    assert train_meta["config"]["extra"] == {"dataloader_drop_last": False, "report_to": "none"}
    assert train_meta["stats"]["memory"]["parameters"] > 0
    for dataset in ("humaneval", "mbpp"):
        samples = [json.loads(line) for line in (results / "eval" / f"{dataset}.samples.jsonl").read_text().splitlines()]
        assert len(samples) == 2 and all("error" not in s for s in samples)
        meta = json.loads((results / "eval" / f"{dataset}.samples.jsonl.meta.json").read_text())
        assert meta["stats"]["bos_prefix"] == ""  # BOS-less: nothing before the prompt
        scores = json.loads((results / "eval" / f"{dataset}.json").read_text())
        assert scores["n_samples"] == 2 and scores["missing_samples"] == 0
