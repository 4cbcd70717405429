from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfalign.records import (
    RecordError,
    iter_jsonl,
    read_jsonl,
    write_jsonl,
)
from selfalign.runtime import StageStats, shard_bounds
from selfalign.runtime.resume import ResumableOutput, UnitResult


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "content": "x"}\n{"id": "b", "content": \n', encoding="utf-8")
    with pytest.raises(RecordError) as err:
        read_jsonl(path, {"id": str, "content": str})
    assert err.value.line == 2
    assert f"{path}:2" in str(err.value)


def test_missing_and_mistyped_fields_are_named(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "content": "x"}\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(RecordError) as err:
        read_jsonl(path, {"id": str, "content": str})
    assert (err.value.line, err.value.field) == (2, "content")

    path.write_text('{"id": 7, "content": "x"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match="field 'id': expected str, got int"):
        read_jsonl(path, {"id": str})


def test_non_object_and_truncated_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(RecordError, match="expected a JSON object"):
        read_jsonl(path)
    path.write_text('{"id": "a"}', encoding="utf-8")  # no trailing newline: a cut-short file
    with pytest.raises(RecordError, match="truncated"):
        read_jsonl(path)


def test_write_is_atomic_and_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    records = [{"id": "b", "content": "é\n"}, {"id": "a", "content": "x"}]
    write_jsonl(path, records)
    first = path.read_bytes()
    write_jsonl(path, records)
    assert path.read_bytes() == first
    assert [r for _, r in iter_jsonl(path)] == records

    class Boom(Exception):
        pass

    def failing():
        yield {"id": "c"}
        raise Boom

    with pytest.raises(Boom):
        write_jsonl(path, failing())
    assert path.read_bytes() == first  # the old file is untouched, no temp file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_resumable_output_skips_done_units_and_discards_stale_parts(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    work = ResumableOutput(out, "fp-1")
    work.write_unit(0, UnitResult([{"id": "a"}], {"n": 1}))
    work.write_unit(1, UnitResult([{"id": "b"}, {"id": "c"}], {"n": 2}))
    # a half-written unit (records but no stats) is not done
    (work.parts / "00000002.jsonl").write_text('{"id": "d"}\n', encoding="utf-8")

    again = ResumableOutput(out, "fp-1")
    assert again.done_units() == {0, 1}
    again.write_unit(2, UnitResult([{"id": "d"}], {"n": 1}))
    stats = again.finalize(3)
    assert [s["n"] for s in stats] == [1, 2, 1]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c", "d"]
    assert not again.parts.exists()

    stale = ResumableOutput(out, "fp-1")
    stale.write_unit(0, UnitResult([{"id": "old"}], {}))
    fresh = ResumableOutput(out, "fp-2")  # inputs or params changed: stale parts must not mix in
    assert fresh.done_units() == set()


def test_shard_bounds_partition_in_order() -> None:
    for n in (0, 1, 7, 100):
        for k in (1, 2, 3, 16):
            spans = [shard_bounds(n, s, k) for s in range(k)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    with pytest.raises(ValueError):
        shard_bounds(10, 3, 3)


def test_stage_stats_balance() -> None:
    stats = StageStats(n_in=3, n_out=1)
    stats.drop("x", 2)
    stats.check_balance()
    stats.drop("y")
    with pytest.raises(AssertionError, match="accounting"):
        stats.check_balance()


def test_concat_merges_shard_stats_without_inflating_shared_descriptions() -> None:
    from selfalign.runtime import merge_extra

    shard = {"benchmarks": {"strings": {"humaneval_solutions": 161}}, "removed_per_benchmark": {"x": 1}, "ids": ["a"]}
    other = {"benchmarks": {"strings": {"humaneval_solutions": 161}}, "removed_per_benchmark": {"x": 1}, "ids": ["b"]}
    merged = merge_extra([shard, other])
    assert merged == {"benchmarks": {"strings": {"humaneval_solutions": 161}}, "removed_per_benchmark": {"x": 2}, "ids": ["a", "b"]}
    with pytest.raises(ValueError, match="disagree"):
        merge_extra([shard, {**other, "benchmarks": {"strings": {}}}])


def test_gzip_jsonl_is_read_with_the_same_checks(tmp_path: Path) -> None:
    import gzip

    good = tmp_path / "rows.jsonl.gz"
    good.write_bytes(gzip.compress(b'{"id": "a"}\n{"id": "b"}\n'))
    assert [r["id"] for _, r in iter_jsonl(good, {"id": str})] == ["a", "b"]
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"id": "a"}\n{"id": 3}\n'))
    with pytest.raises(RecordError, match=r"bad\.jsonl\.gz:2: field 'id': expected str, got int"):
        list(iter_jsonl(bad, {"id": str}))
