"""Bad input at the execution stage (README, "Bad input"): each case a named error (file, line,
field, said once) or a named drop, never a crash with no place, never a silent duplicate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from selfalign.chain import dropped_path
from selfalign.execution import ExecutionParams, run_execution
from selfalign.records import RecordError, dumps, iter_jsonl, read_jsonl, write_jsonl

pytestmark = [pytest.mark.timeout(300), pytest.mark.sandbox]

PARAMS = {"backend": "gvisor", "timeout_s": 4, "memory_mb": 1024, "workers": 1, "records_per_unit": 16}
OK = "[Implementation]\n```python\ndef f():\n    return 1\n```\n\n[Tests]\n```python\nassert f() == 1\n```"


def _run(path: Path, out: Path, **params: object) -> object:
    return run_execution(path, out, ExecutionParams.from_dict({**PARAMS, **params}), show_progress=False)


def test_a_lone_surrogate_is_carried_or_dropped_by_name_without_stopping_the_shard(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    # valid JSON for a string Python can hold and UTF-8 cannot: "\ud800" escaped
    in_prose = json.dumps({"id": "prose", "responses": [{"sample": 0, "response": "note \ud800\n" + OK}]})
    in_code = json.dumps({"id": "code", "responses": [{"sample": 0, "response": "```python\nx = '\ud800'\n```"}]})
    path.write_text(in_prose + "\n" + in_code + "\n" + json.dumps({"id": "next", "response": OK}) + "\n")
    out = tmp_path / "out.jsonl"
    stats = _run(path, out)
    kept = read_jsonl(out)
    # in the prose, the code still runs and passes, as the release ran it; the record keeps the
    # character (written escaped, read back the same)
    assert [r["id"] for r in kept] == ["prose/0", "next/0"]
    assert kept[0]["response"].startswith("note \ud800\n")
    # in the code, no Python block parses: the release's extract_code had nothing to run either
    drops = read_jsonl(dropped_path(out))
    assert [(d["id"], d["reason"]) for d in drops] == [("code/0", "no_code")]
    assert "\ud800" in drops[0]["detail"]["response_tail"]
    assert stats.counts() == {"in": 3, "out": 2, "dropped": 1}  # type: ignore[attr-defined]


def test_invalid_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(dumps({"id": "a", "response": OK}).encode() + b"\n" + b'{"id": "b", "response": "\xff"}\n')
    with pytest.raises(RecordError, match=r"in\.jsonl:2: not valid UTF-8 \(byte 0xff at byte 26\)"):
        _run(path, tmp_path / "out.jsonl")


def test_duplicate_ids_stop_the_stage_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl(path, [{"id": "a", "response": OK}, {"id": "b", "response": OK}, {"id": "a", "response": OK}])
    with pytest.raises(RecordError, match=r"in\.jsonl:3: field 'id': duplicate id 'a' \(first at line 1\)$"):
        _run(path, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    # a later shard sees the ids of the shards before it too (they are read to reach its slice)
    with pytest.raises(RecordError, match="duplicate id 'a'"):
        run_execution(path, tmp_path / "s1.jsonl", ExecutionParams.from_dict(PARAMS), shard=1, num_shards=2,
                      show_progress=False)


def test_a_mistyped_field_is_said_once(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl(path, [{"id": "a", "parsing_result": "not a list"}])
    with pytest.raises(RecordError) as caught:
        _run(path, tmp_path / "out.jsonl")
    assert str(caught.value) == f"{path}:1: field 'parsing_result': expected list, got str"


def test_a_nul_byte_in_the_code_is_its_own_drop_reason(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl(path, [{"id": "a", "response": "```python\ndef f():\x00\n    return 1\n```"}])
    out = tmp_path / "out.jsonl"
    stats = _run(path, out)
    assert dict(stats.drops) == {"nul_byte": 1}  # type: ignore[attr-defined]
    assert [d["reason"] for _, d in iter_jsonl(dropped_path(out))] == ["nul_byte"]


def test_an_oversized_response_is_dropped_in_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    huge = "```python\n" + "x = 1\n" * 2_000_000 + "```"  # 12 MB, 2M lines
    write_jsonl(path, [{"id": "big", "response": huge}, {"id": "small", "response": OK}])
    out = tmp_path / "out.jsonl"
    started = time.perf_counter()
    stats = _run(path, out, max_response_chars=1_000_000)
    seconds = time.perf_counter() - started
    assert [r["id"] for r in read_jsonl(out)] == ["small/0"]
    drop = read_jsonl(dropped_path(out))[0]
    assert (drop["id"], drop["reason"], drop["detail"]) == ("big/0", "too_long",
                                                            {"chars": len(huge), "limit": 1_000_000})
    assert dict(stats.drops) == {"too_long": 1}  # type: ignore[attr-defined]
    assert seconds < 20, seconds  # the sandbox's start and one small sample; the big one never runs


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'["a list"]\n', r":1: expected a JSON object, got list$"),
        (b'{"id": "a", "response": "x"}', r":1: truncated line \(no trailing newline\)"),
        (b'{"id": "a", "instruction": "x"}\n', r":1: field 'responses': no 'responses', 'parsing_result' or 'response'"),
    ],
)
def test_other_malformed_lines_are_named(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line)
    with pytest.raises(RecordError, match=message):
        _run(path, tmp_path / "out.jsonl")
