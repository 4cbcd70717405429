"""``selfalign explain``: a record's path through the chain, answered from the stages' indexes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from selfalign import chain
from selfalign.audit.explain import ExplainError, explain, index_path, render
from selfalign.cli import main
from selfalign.records import write_jsonl
from selfalign.runtime import StageStats, finish

SEED = "stdlib/m.py#L000010"
GONE = "stdlib/m.py#L000020"


def _stage(results: Path, key: str, kept: list[dict], dropped: list[tuple[str, str, dict]], **extra: object) -> None:
    stage = chain.stage(key)
    artifact = results / stage.artifact
    artifact.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(artifact, kept)
    stats = StageStats(n_in=len(kept), n_out=len(kept))
    for rid, reason, detail in dropped:
        if reason.startswith(chain.SAMPLE_DROP_PREFIX):  # a sample of a kept record, as I->R writes it
            stats.dropped.append({"id": rid, "reason": reason, "detail": detail})
        else:
            stats.n_in += 1
            stats.drop(reason, id=rid, detail=detail)
    stats.extra = dict(extra)
    finish(artifact, stats, stage=stage.sidecar_stage, inputs=[], params={}, started=0.0, drop_file=True)


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    results = tmp_path / "results" / "mini"
    seed = {"id": SEED, "content": "def f(x):\n    return x"}
    gone = {"id": GONE, "content": "def g(x):\n    return y"}
    _stage(results, "raw", [seed, gone], [])
    _stage(results, "dedup", [seed, gone], [])
    _stage(results, "quality", [seed], [(GONE, "pyright_error", {"first_error": '2:12: "y" is not defined'})])
    _stage(results, "filtered", [seed], [])
    _stage(results, "judged", [{**seed, "generation": {"judge": {"answer": " Yes"}}}], [])
    _stage(results, "concepts", [{**seed, "concepts": ["identity"]}], [])
    _stage(results, "instructions", [{**seed, "concepts": ["identity"], "instruction": "Write f."}], [])
    _stage(results, "responses", [{**seed, "instruction": "Write f.",
                                   "responses": [{"sample": 0, "response": "A"}, {"sample": 2, "response": "C"}]}],
           [(f"{SEED}/1", "sample:parse_unfinished", {"finish_reason": "length", "text_tail": "..."})],
           sample_drops={"parse_unfinished": 1})
    _stage(results, "executed", [{"id": f"{SEED}/0", "instruction": "Write f.", "response": "A",
                                  "execution": {"status": "pass"}}],
           [(f"{SEED}/2", "fail:assertion", {"exception": "AssertionError"})])
    for key in ("sanitized", "cleaned"):
        _stage(results, key, [{"id": f"{SEED}/0", "instruction": "Write f.", "response": "A"}], [])
    _stage(results, "sft", [{"id": f"{SEED}/0", "instruction": "Write f.", "response": "A"}], [])
    return results


def test_a_kept_seed_is_followed_to_its_sft_record(run: Path) -> None:
    steps = {s.stage.key: s for s in explain(run, SEED)}
    assert [s for s in steps] == [s.key for s in chain.ARTIFACT_STAGES]
    assert steps["raw"].status == "kept" and steps["sft"].status == "kept"
    responses = steps["responses"]
    assert responses.status == "partly kept"
    assert [(f.id, f.kept) for f in responses.found] == [(SEED, True), (f"{SEED}/1", False)]
    executed = steps["executed"]
    assert {f.id: f.kept for f in executed.found} == {f"{SEED}/0": True, f"{SEED}/2": False}
    text = render(SEED, list(steps.values()))
    assert "sample 2: C" in text and "fail:assertion" in text and "SFT record" in text


def test_a_dropped_seed_says_where_and_why(run: Path) -> None:
    steps = {s.stage.key: s for s in explain(run, GONE)}
    assert steps["dedup"].status == "kept"
    assert steps["quality"].status == "dropped"
    assert steps["quality"].found[0].record["detail"]["first_error"].startswith("2:12")
    assert all(steps[k].status == "not_reached" for k in ("filtered", "judged", "sft"))


def test_a_sample_id_narrows_the_sample_stages_to_that_sample(run: Path) -> None:
    steps = {s.stage.key: s for s in explain(run, f"{SEED}/2")}
    assert steps["filtered"].status == "kept"  # the stages before samples show its record
    assert [f.id for f in steps["executed"].found] == [f"{SEED}/2"] and steps["executed"].status == "dropped"
    assert steps["sft"].status == "not_reached"


def test_an_unknown_id_and_a_stale_index_are_errors(run: Path) -> None:
    with pytest.raises(ExplainError, match="no record or sample"):
        explain(run, "nope")
    # the artifact changed after its index was built (a stage rerun by hand, say)
    meta_path = run / "concepts.jsonl.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ExplainError, match="stale index.*--reindex"):
        explain(run, SEED)


def test_the_cli_prints_the_path_and_json(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", SEED, "--results", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{SEED}:") and "quality" in out
    assert main(["explain", GONE, "--results", str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in data["stages"]][:3] == ["kept", "kept", "dropped"]
    index_path(run / "seeds/raw.jsonl").unlink()
    assert main(["explain", SEED, "--results", str(run)]) == 2  # a clear error, no scan
    assert main(["explain", SEED, "--results", str(run), "--reindex"]) == 0
    with sqlite3.connect(index_path(run / "seeds/raw.jsonl")) as db:
        assert db.execute("SELECT count(*) FROM rows").fetchone() == (2,)


def test_the_report_shows_each_stages_first_records_and_one_drop_per_reason(run: Path) -> None:
    from selfalign.audit.report import build_examples, loss_svg

    examples = {e["stage"]: e for e in build_examples(run)}
    quality = examples["quality"]
    assert [k["id"] for k in quality["kept"]] == [SEED]
    assert quality["dropped"] == [{"id": GONE, "reason": "pyright_error", "summary": 'first_error=2:12: "y" is not defined'}]
    assert quality["dropped_file"] == "seeds/quality.dropped.jsonl"
    # the I->R stage's unparsable samples are examples too
    assert [d["reason"] for d in examples["responses"]["dropped"]] == ["sample:parse_unfinished"]
    curve = [{"step": 1.0, "loss": 2.0}, {"step": 2.0, "loss": 1.5}]
    assert loss_svg(curve) == loss_svg(curve) and "<svg" in loss_svg(curve)
