"""Drop files: every dropping stage names each record it dropped, why, and enough to act on;
the files are in input order, survive a kill, and agree with the sidecars' counts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from selfalign import chain
from selfalign.curation import CleanParams, run_clean, run_sanitize
from selfalign.execution import drop_detail
from selfalign.records import read_jsonl, write_jsonl
from selfalign.runtime import DETAIL_CAP_ENV, StageStats, finish, write_drop_file
from selfalign.runtime.resume import ResumableOutput, UnitResult
from selfalign.sandbox.verdict import Verdict
from selfalign.seeds.filter import FilterParams, SeedFilter


def test_the_chain_lists_every_stage_once_in_order() -> None:
    keys = [s.key for s in chain.STAGES]
    assert len(keys) == len(set(keys)) and keys[0] == "raw" and keys[-1] == "sft"
    for stage in chain.STAGES[1:]:
        assert stage.reads is not None and keys.index(stage.reads) < keys.index(stage.key)
    assert list(chain.IMPORT_STAGES)[-1] == "executed" and "samples" not in chain.IMPORT_STAGES
    assert chain.dropped_path("r/seeds/quality.jsonl") == Path("r/seeds/quality.dropped.jsonl")
    assert chain.root_id("stdlib/a.py#L000010/3", per_sample=True) == "stdlib/a.py#L000010"
    assert chain.root_id("stdlib/a.py#L000010", per_sample=True) == "stdlib/a.py#L000010"
    assert chain.root_id("x/3", per_sample=False) == "x/3"


def test_drop_records_are_capped_by_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DETAIL_CAP_ENV, "40")
    stats = StageStats()
    stats.drop("fail", id="a/0", detail={"stderr_tail": "x" * 100 + "END", "head": "START" + "y" * 100, "n": 3})
    record = stats.dropped[0]
    assert record["id"] == "a/0" and record["reason"] == "fail" and record["detail"]["n"] == 3
    assert len(record["detail"]["stderr_tail"]) == 40 and record["detail"]["stderr_tail"].endswith("END")
    assert len(record["detail"]["head"]) == 40 and record["detail"]["head"].startswith("START")
    assert stats.drops == {"fail": 1}
    with pytest.raises(ValueError, match="one record"):
        stats.drop("fail", 2, id="b")


def test_resumable_drop_records_survive_a_kill_in_unit_order(tmp_path: Path) -> None:
    out = tmp_path / "stage.jsonl"

    def unit(u: int) -> UnitResult:
        stats = StageStats(n_in=2, n_out=1)
        stats.drop("why", id=f"r{u}", detail={"unit": u})
        return UnitResult([{"id": f"k{u}"}], stats.to_json())

    first = ResumableOutput(out, "fp", drops=True)
    first.write_unit(1, unit(1))  # units finish out of order; the run is then killed
    again = ResumableOutput(out, "fp", drops=True)
    assert again.done_units() == {1}
    again.write_unit(0, unit(0))
    again.write_unit(2, unit(2))
    summaries = again.finalize(3)
    assert [r["id"] for r in read_jsonl(chain.dropped_path(out))] == ["r0", "r1", "r2"]
    assert all("dropped" not in s for s in summaries)  # moved to the drop file, not kept twice
    # an output that keeps no drop records refuses units that carry some
    with pytest.raises(ValueError, match="drop records"):
        ResumableOutput(tmp_path / "other.jsonl", "fp").write_unit(0, unit(0))


def test_a_drop_site_that_names_no_record_stops_the_stage(tmp_path: Path) -> None:
    artifact = tmp_path / "cleaned.jsonl"
    write_jsonl(artifact, [])
    stats = StageStats(n_in=2)
    stats.drop("named", id="a")
    stats.drop("unnamed")
    with pytest.raises(AssertionError, match="does not name its record"):
        write_drop_file(artifact, stats)


def test_finish_hashes_the_drop_file_into_the_sidecar_and_indexes_it(tmp_path: Path) -> None:
    artifact = tmp_path / "sanitized.jsonl"
    write_jsonl(artifact, [{"id": "a/0", "response": "r"}])
    stats = StageStats(n_in=2, n_out=1)
    stats.drop("format:tag_count", id="b/1", detail={})
    finish(artifact, stats, stage="sanitize", inputs=[], params={}, started=0.0, drop_file=True)
    meta = json.loads((tmp_path / "sanitized.jsonl.meta.json").read_text())
    assert meta["dropped"]["file"] == "sanitized.dropped.jsonl" and meta["dropped"]["records"] == 1
    with sqlite3.connect(tmp_path / "sanitized.index.sqlite") as db:  # both lines indexed by root id
        rows = db.execute("SELECT root, kept, suffix FROM rows ORDER BY kept").fetchall()
    assert rows == [("b", 0, "/1"), ("a", 1, "/0")]


def test_a_failed_sample_says_which_line_raised_what() -> None:
    code = "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 4\n"
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "<sample>", line 4, in <module>\n'
        "AssertionError\n"
    )
    detail = drop_detail(Verdict("fail", "assertion", 0.01234, "", stderr), code)
    assert detail == {"status": "fail", "reason": "assertion", "exception": "AssertionError",
                      "failing_line": {"line": 4, "source": "assert add(1, 2) == 4"}, "stderr_tail": stderr}
    named = drop_detail(Verdict("fail", "exception:NameError", 0.0, "", "Traceback...\nNameError: name 'x' is not defined\n"))
    assert named["exception"] == "NameError: name 'x' is not defined" and "failing_line" not in named
    at = drop_detail(Verdict("fail", "exception:TypeError", 0.0, "", "TypeError: <function f at 0x7f3a2b1c4d50> is bad\n"))
    assert at["exception"] == "TypeError: <function f at 0x…> is bad"
    # a timeout's output depends on when it was cut off: not in the (deterministic) drop record
    assert drop_detail(Verdict("timeout", "timeout", 4.0, "partial", "partial")) == {"status": "timeout", "reason": "timeout"}


def test_the_seed_filter_names_the_word_and_import_it_matched() -> None:
    params = FilterParams.from_dict({"bad_words": ["todo"], "bad_imports": ["os"]})
    seed_filter = SeedFilter(params, {})
    assert seed_filter.check("def f(x):\n    # TODO later\n    return x") == "bad_word"
    assert seed_filter.detail("def f(x):\n    # TODO later\n    return x", "bad_word") == {"word": "todo"}
    assert seed_filter.detail("import os.path\ndef f(x):\n    return x", "bad_import") == {"import": "import os"}
    assert seed_filter.detail("def f():\n    return 1", "no_argument") == {"line": "def f():"}


def _response(tests: str = "assert f(1) == 1") -> str:
    return (
        "[Reasoning]\nr\n[Implementation]\n```python\ndef f(x):\n    return x\n```\n"
        f"[Explanation]\ne\n[Tests]\n```python\n{tests}\n```\n"
    )


def test_sanitize_and_clean_drop_records_match_their_counts(tmp_path: Path) -> None:
    executed = tmp_path / "executed.jsonl"
    same = [{"id": f"s{i}/0", "instruction": "Write f.", "response": _response(f"assert f({i}) == {i}")}
            for i in range(8)]
    write_jsonl(executed, [*same, {"id": "t/0", "instruction": "no tags", "response": "just text"}])
    sanitized = tmp_path / "sanitized.jsonl"
    stats = run_sanitize(executed, sanitized, show_progress=False)
    assert [r["id"] for r in stats.dropped] == ["t/0"] and stats.dropped[0]["detail"]["tags"]["[Tests]"] == 0
    cleaned = tmp_path / "cleaned.jsonl"
    stats = run_clean(sanitized, cleaned, CleanParams.from_dict({}), show_progress=False)
    (kept,) = [r["id"] for r in read_jsonl(cleaned)]
    assert len(stats.dropped) == sum(stats.drops.values()) == 7
    # in input order although clean visits them in its seeded shuffle, each naming the one kept
    assert [r["id"] for r in stats.dropped] == [r["id"] for r in same if r["id"] != kept]
    positions = [r["detail"]["shuffled_position"] for r in stats.dropped]
    assert positions != sorted(positions)
    assert all(r["reason"] == "duplicate_instruction" and r["detail"]["duplicate_of"] == kept for r in stats.dropped)
