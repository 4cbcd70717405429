"""HumanEvalPack requests and samples: the harness's prompts and stop words per task kind, the
sampling settings (greedy, or OctoPack's n = 20 at 0.2), explain's two steps, and samples the
scorer reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_data

from selfalign.generation.client import CompletionResult
from selfalign.octopack.generate import (
    PackGenParams,
    pack_requests,
    read_descriptions,
    sample_record,
)
from selfalign.octopack.humanevalpack import build_prompt, find_files, load_tasks, stop_words
from selfalign.octopack.score import read_samples

FILES = find_files(shared_data() / "octopack", ["python", "js", "rust"])


@pytest.fixture(scope="module")
def tasks() -> dict:
    return {language: load_tasks(path, language, 2) for language, path in FILES.items()}


def test_one_request_per_task_with_the_harness_prompt_and_stop_words(tasks: dict) -> None:
    for fmt in ("octocoder", "sc2-instruct"):
        requests = pack_requests(tasks, "fixtests", PackGenParams(format=fmt))
        assert [r.id for r in requests] == ["python/Python/0", "python/Python/1", "js/JavaScript/0",
                                            "js/JavaScript/1", "rust/Rust/0", "rust/Rust/1"]
        assert [r.index for r in requests] == list(range(6))
        for request in requests:
            language, task_id = request.id.split("/", 1)
            task = next(t for t in tasks[language] if t.task_id == task_id)
            assert request.prompt == build_prompt(task, "fixtests", fmt)
            assert tuple(request.params.stop) == stop_words(language)
            assert (request.params.n, request.params.temperature, request.params.max_tokens) == (1, 0.0, 512)
    # the octocoder format is Question/Answer; the SC2-Instruct chat template wraps the instruction
    assert pack_requests(tasks, "synthesize", PackGenParams())[0].prompt.startswith("Question: ")
    sc2 = pack_requests(tasks, "synthesize", PackGenParams(format="sc2-instruct"))[0].prompt
    assert "### Instruction" in sc2 and "### Response" in sc2


def test_octopacks_sampling_asks_for_twenty_choices_in_one_request(tasks: dict) -> None:
    params = PackGenParams(temperature=0.2, n=20)
    [request, *_] = pack_requests(tasks, "synthesize", params)
    assert (request.params.n, request.params.temperature, request.params.top_p) == (20, 0.2, 0.95)
    with pytest.raises(ValueError, match="need temperature > 0"):
        PackGenParams(n=20)
    with pytest.raises(ValueError, match="unknown prompt format"):
        PackGenParams(format="chatml")


def test_samples_lines_are_what_the_scorer_reads(tasks: dict, tmp_path: Path) -> None:
    python = tasks["python"]
    body = python[0]["canonical_solution"]
    ok = sample_record("python", python[0], CompletionResult(0, "python/Python/0", [(body, "stop"), ("x", "length")], {}, 1))
    assert ok == {"language": "python", "task_id": "Python/0", "completions": [body, "x"],
                  "finish_reasons": ["stop", "length"]}
    refused = sample_record("python", python[1], CompletionResult(1, "python/Python/1", [], {}, 1, error="400: too long"))
    assert refused["completions"] == [] and refused["error"] == "400: too long"
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(ok) + "\n" + json.dumps(refused) + "\n")
    samples = read_samples(path, {"python": python}, "synthesize")
    # the refused task is missing: as many failing stand-ins as the most samples of a task
    assert [(s.task_id, s.index, s.code is None) for s in samples] == [
        ("Python/0", 0, False), ("Python/0", 1, False), ("Python/1", 0, True), ("Python/1", 1, True)]


def test_explain_is_two_steps_and_the_second_sees_only_the_description(tasks: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the explaindescribe samples"):
        pack_requests(tasks, "explainsynthesize", PackGenParams())
    describe = pack_requests(tasks, "explaindescribe", PackGenParams())
    task = tasks["python"][0]
    assert task["canonical_solution"].strip() in describe[0].prompt  # describe sees the code
    path = tmp_path / "describe.jsonl"
    path.write_text(json.dumps({"language": "python", "task_id": "Python/0",
                                "completions": ["Checks whether two numbers are closer than a threshold."]}) + "\n")
    descriptions = read_descriptions(path, tasks)
    assert descriptions == {("python", "Python/0"): "Checks whether two numbers are closer than a threshold."}
    synthesize = pack_requests(tasks, "explainsynthesize", PackGenParams(), descriptions)
    first, second = synthesize[0].prompt, synthesize[1].prompt
    assert "closer than a threshold" in first and task["canonical_solution"].strip() not in first
    assert task["docstring"].strip() not in first
    assert "Write functional code in Python according to the description." in second  # empty description
