"""Scoring HumanEvalPack samples: post-processing, test programs in the sandbox, pass@k per
language, missing tasks, and a samples file that names its bad line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_data

from selfalign.octopack import toolchains
from selfalign.octopack.execute import PackSandboxParams
from selfalign.octopack.humanevalpack import find_files, load_tasks, reference_generations
from selfalign.octopack.score import read_samples, score_samples
from selfalign.records import RecordError

pytestmark = pytest.mark.sandbox

FILES = find_files(shared_data() / "octopack", ["python", "js"])


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_samples_are_scored_per_language_with_pass_at_k_and_missing_tasks(tmp_path: Path) -> None:
    params = PackSandboxParams(timeouts={"js": 10.0})
    try:
        toolchains.load(params.toolchain_dir())
    except toolchains.ToolchainError as exc:
        pytest.fail(str(exc))
    python = load_tasks(FILES["python"], "python", 2)
    js = load_tasks(FILES["js"], "js", 2)
    p0, p1, j0 = reference_generations(python[0]), python[1], reference_generations(js[0])
    # Python/1 as a model writes it: the text after the (stripped) prompt, post-processed here
    completion = p1["prompt"][len(p1["prompt"].rstrip()):] + p1["canonical_solution"]
    samples = _write(tmp_path / "samples.jsonl", [
        {"language": "js", "task_id": js[0].task_id, "generations": [j0["canonical"], j0["canonical"]]},
        {"language": "python", "task_id": python[0].task_id, "generations": [p0["canonical"], p0["buggy"]]},
        {"language": "python", "task_id": python[1].task_id, "completions": [completion, "\n    return None\n"]},
        {"language": "go", "task_id": "Go/0", "completions": ["ignored: go is not asked for"]},
    ])
    summary = score_samples(samples, FILES, "synthesize", tmp_path / "out", params, limit=2, show_progress=False)
    py, javascript = summary["languages"]["python"], summary["languages"]["js"]
    # pass@1 is the mean over tasks of c/n: Python (1/2 + 1/2) / 2; JS (2/2 + 0/2 missing) / 2
    assert (py["tasks"], py["passed"], py["missing_tasks"], py["pass_at_k"]) == (2, 2, 0, {"pass@1": 0.5})
    assert (javascript["passed"], javascript["missing_tasks"], javascript["pass_at_k"]) == (2, 1, {"pass@1": 0.5})
    rows = [json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert [(r["language"], r["task_id"], r["sample"], r["status"]) for r in rows] == [
        ("python", "Python/0", 0, "pass"), ("python", "Python/0", 1, "fail"),
        ("python", "Python/1", 0, "pass"), ("python", "Python/1", 1, "fail"),
        ("js", "JavaScript/0", 0, "pass"), ("js", "JavaScript/0", 1, "pass"),
        ("js", "JavaScript/1", 0, "fail"), ("js", "JavaScript/1", 1, "fail"),
    ]
    assert [r["reason"] for r in rows][-2:] == ["missing", "missing"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| python | 2 | 2 | 50.0 | 0 |" in table and "| js | 2 | 2 | 50.0 | 1 |" in table
    meta = json.loads((tmp_path / "out" / "verdicts.jsonl.meta.json").read_text())
    assert meta["counts"] == {"samples": 8, "passed": 4, "missing_tasks": 1}
    assert meta["stats"]["program_seconds"] > 0  # timings in the sidecar, not in the verdicts
    assert all(set(r) == {"language", "task_id", "sample", "status", "reason"} for r in rows)


def test_a_bad_samples_line_is_named(tmp_path: Path) -> None:
    tasks = {"python": load_tasks(FILES["python"], "python", 2)}
    cases = [
        ({"language": "cobol", "task_id": "Python/0", "completions": ["x"]}, r":1: field 'language': unknown language"),
        ({"language": "python", "task_id": "Python/0", "completions": ["x"], "generations": ["y"]},
         r":1: needs exactly one of 'completions' and 'generations'"),
        ({"language": "python", "task_id": "Python/0", "completions": []}, r":1: field 'completions': expected a non"),
        ({"language": "python", "task_id": "Python/0"}, r":1: needs exactly one"),
    ]
    for row, message in cases:
        path = _write(tmp_path / "bad.jsonl", [row])
        with pytest.raises(RecordError, match=message):
            read_samples(path, tasks, "synthesize")
    twice = _write(tmp_path / "twice.jsonl", [{"language": "python", "task_id": "Python/0", "completions": ["x"]}] * 2)
    with pytest.raises(RecordError, match=r"twice\.jsonl:2: field 'task_id': duplicate task python 'Python/0' \(first at line 1\)"):
        read_samples(twice, tasks, "synthesize")
    with pytest.raises(ValueError, match="unknown HumanEvalPack kind to score 'explaindescribe'"):
        read_samples(twice, tasks, "explaindescribe")
