"""The HumanEvalPack results table: every scored task x language from the score summaries, with
OctoCoder's published pass@1 beside, and pass@k from n = 20 samples as OctoPack scores them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfalign.evaluation.benchmarks import OCTOCODER, benchmark
from selfalign.octopack.results import build_table, render_table, write_table
from selfalign.octopack.score import summarize


def _rows(language: str, passed_per_task: list[int], n: int) -> list[dict]:
    return [{"language": language, "task_id": f"{language}/{t}", "sample": s,
             "status": "pass" if s < c else "fail", "reason": "" if s < c else "exit 1"}
            for t, c in enumerate(passed_per_task) for s in range(n)]


def _summary(kind: str, languages: dict, limit: int | None = 2) -> dict:
    return {"kind": kind, "backend": "gvisor", "limit": limit, "languages": languages}


def test_twenty_samples_give_the_unbiased_pass_at_1_and_10() -> None:
    """OctoPack's setting: n = 20 per task; pass@k by the unbiased estimator, averaged over tasks."""
    summary = summarize(_rows("python", [5, 0], 20), ks=(1, 10, 100))
    entry = summary["python"]
    assert entry["samples_per_task"] == 20 and entry["passed"] == 5
    assert entry["pass_at_k"]["pass@1"] == pytest.approx(0.125)  # (5/20 + 0) / 2
    assert entry["pass_at_k"]["pass@10"] == pytest.approx(round((1 - 3003 / 184756) / 2, 6))
    assert "pass@100" not in entry["pass_at_k"]  # more than the samples allow


def test_the_table_has_every_task_and_language_with_octocoder_beside() -> None:
    languages = {lang: summarize(_rows(lang, [1, 0], 1))[lang] for lang in ("python", "js", "rust")}
    table = build_table({kind: _summary(kind, languages) for kind in ("explainsynthesize", "synthesize", "fixtests",
                                                                      "fixdocs")})
    rows = table["rows"]
    # task order as the paper's, languages in HumanEvalPack's order, an average row per task
    assert [(r["task"], r["language"]) for r in rows] == [
        (kind, lang) for kind in ("synthesize", "fixtests", "fixdocs", "explainsynthesize")
        for lang in ("python", "js", "rust", "avg")]
    python = rows[0]
    assert (python["pass@1"], python["pass@10"], python["tasks"], python["octocoder_pass@1"]) == (50.0, None, 2, 46.2)
    assert rows[2]["octocoder_pass@1"] == 23.4  # Synthesize Rust, the model card's, from the registry
    assert benchmark("humanevalsynthesize-rust").paper("OctoCoder") == {"synthesize": 23.4}
    assert benchmark("humanevalfixtests-rust").paper("OctoCoder") == {}
    average = {r["task"]: r for r in rows if r["language"] == "avg"}
    assert average["synthesize"]["pass@1"] == 50.0 and average["synthesize"]["tasks"] == 6
    assert [average[k]["octocoder_pass@1"] for k in ("synthesize", "fixtests", "fixdocs", "explainsynthesize")] == [
        35.5, 27.0, None, 24.5]
    assert rows[4]["octocoder_pass@1"] is None  # Fix per language: not read, not guessed
    markdown = render_table(table)
    assert "| HumanEvalSynthesize | Python | 2 | 1 | 50.0 | - | 46.2 | 0 |" in markdown
    assert "| HumanEvalExplain | average | 6 | - | 50.0 | - | 24.5 | 0 |" in markdown
    assert "the first 2 tasks per language" in markdown
    assert all(p.source in markdown for p in OCTOCODER.values())


def test_summaries_are_read_by_their_kind_and_a_kind_twice_is_an_error(tmp_path: Path) -> None:
    languages = {"go": summarize(_rows("go", [0, 0], 1))["go"]}
    paths = []
    for kind in ("fixtests", "synthesize"):
        paths.append(tmp_path / f"{kind}.json")
        paths[-1].write_text(json.dumps(_summary(kind, languages, limit=None)))
    table = write_table(paths, tmp_path / "table.md", tmp_path / "table.json")
    assert [r["task"] for r in table["rows"]] == ["synthesize", "synthesize", "fixtests", "fixtests"]
    assert json.loads((tmp_path / "table.json").read_text()) == table
    assert "all 164 tasks per language" in (tmp_path / "table.md").read_text()
    with pytest.raises(ValueError, match="a second summary of task 'fixtests'"):
        write_table([*paths, paths[0]], tmp_path / "t.md", tmp_path / "t.json")
    with pytest.raises(ValueError, match="not a scored HumanEvalPack task"):
        build_table({"explaindescribe": _summary("explaindescribe", languages)})
