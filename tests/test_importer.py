from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import stdlib_functions

from selfalign.importer import ImportSpec, import_records
from selfalign.records import RecordError, read_jsonl, write_jsonl


def test_import_local_jsonl_validates_and_copies(tmp_path: Path) -> None:
    records = stdlib_functions()[:5]
    src = tmp_path / "mine.jsonl"
    write_jsonl(src, records)
    out = tmp_path / "quality.jsonl"
    stats = import_records(ImportSpec.from_dict({"stage": "quality", "jsonl": str(src)}), out, show_progress=False)
    assert stats.n_out == 5
    assert read_jsonl(out) == records


def test_import_rejects_duplicate_ids_and_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "mine.jsonl"
    write_jsonl(src, [{"id": "a", "content": "x"}, {"id": "a", "content": "y"}])
    with pytest.raises(RecordError, match="duplicate id 'a'"):
        import_records(ImportSpec(stage="dedup", jsonl=str(src)), tmp_path / "o.jsonl", show_progress=False)
    src.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(RecordError) as err:
        import_records(ImportSpec(stage="dedup", jsonl=str(src)), tmp_path / "o.jsonl", show_progress=False)
    assert (err.value.line, err.value.field) == (1, "content")


def test_import_through_datasets_loader(tmp_path: Path) -> None:
    """The Hub path, exercised on a local parquet file through the same datasets.load_dataset call."""
    records = stdlib_functions()[:4]
    table = pa.table(
        {"content": [r["content"] for r in records], "sha1": [f"{i:040x}" for i in range(4)], "id": list(range(4))}
    )
    parquet = tmp_path / "train.parquet"
    pq.write_table(table, parquet)
    spec = ImportSpec.from_dict(
        {"stage": "quality", "dataset": "parquet", "data_files": [str(parquet)], "content_field": "content", "id_field": "sha1"}
    )
    out = tmp_path / "quality.jsonl"
    import_records(spec, out, show_progress=False)
    got = read_jsonl(out)
    assert [g["content"] for g in got] == [r["content"] for r in records]
    assert got[0]["id"] == "parquet/" + "0" * 40
    assert got[2]["origin"]["row"] == 2

    missing = ImportSpec.from_dict({"stage": "quality", "dataset": "parquet", "data_files": [str(parquet)], "content_field": "code"})
    with pytest.raises(RecordError, match="field 'code': missing"):
        import_records(missing, tmp_path / "o.jsonl", show_progress=False)


def test_spec_rejects_unknown_keys_and_ambiguous_sources() -> None:
    with pytest.raises(ValueError, match="revison"):
        ImportSpec.from_dict({"stage": "raw", "jsonl": "x", "revison": "main"})
    with pytest.raises(ValueError, match="exactly one"):
        ImportSpec.from_dict({"stage": "raw"})


# ------------------------------------------------------------- the release's / published shapes
#
# Rows as the release's scripts (0b19dbc) write them and BigCode published them:
# self_ossinstruct.py writes dict(prompt=, fingerprint=, **the input row minus prompt and
# fingerprint, **the parsed result), with `parsing_result: [{response}]` when it asks for n > 1
# samples; execution_filter.py writes one row per passing sample, `response` at the top level.

SEEDS = [
    {"sha1": "a" * 40, "id": 7, "seed": "def inc(x):\n    \"\"\"Add one.\"\"\"\n    return x + 1\n"},
    {"sha1": "b" * 40, "id": 12, "seed": "def neg(x):\n    \"\"\"Negate.\"\"\"\n    return -x\n"},
]


def _concepts(seed: dict) -> dict:
    return {"prompt": "<the S->C prompt>", "fingerprint": None, **seed, "concepts": ["arithmetic", "functions"]}


def _instructions(seed: dict) -> dict:
    return {**_concepts(seed), "prompt": "<the C->I prompt>", "instruction": f"Write {seed['seed'].split('(')[0][4:]}."}


def _responses(seed: dict) -> dict:
    return {**_instructions(seed), "prompt": "<the I->R prompt>",
            "parsing_result": [{"response": "first"}, {"response": "second"}]}


def _passed(seed: dict, response: str) -> dict:
    row = {k: v for k, v in _responses(seed).items() if k != "parsing_result"}
    return {**row, "response": response}


def _import(tmp_path: Path, stage: str, rows: list[dict], **extra: object) -> list[dict]:
    src = tmp_path / f"{stage}-published.jsonl"
    write_jsonl(src, rows)
    out = tmp_path / f"{stage}.jsonl"
    spec = ImportSpec.from_dict({"stage": stage, "shape": "release", "jsonl": str(src), **extra})
    stats = import_records(spec, out, show_progress=False)
    assert stats.n_in == stats.n_out == len(rows)
    assert stats.extra["artifact"].endswith(f"{stage}.jsonl")
    return read_jsonl(out)


def test_release_concepts_map_to_our_fields_with_their_ids(tmp_path: Path) -> None:
    got = _import(tmp_path, "concepts", [_concepts(s) for s in SEEDS])
    assert [g["id"] for g in got] == ["7", "12"]
    assert got[0]["content"] == SEEDS[0]["seed"] and got[0]["concepts"] == ["arithmetic", "functions"]
    assert "prompt" not in got[0] and "fingerprint" not in got[0] and "seed" not in got[0]
    assert got[0]["origin"]["fields"] == {"sha1": "a" * 40, "id": 7}
    assert got[1]["origin"]["line"] == 2 and got[1]["origin"]["shape"] == "release"


def test_release_instructions_and_responses(tmp_path: Path) -> None:
    instructions = _import(tmp_path, "instructions", [_instructions(s) for s in SEEDS])
    assert instructions[1]["instruction"] == "Write neg."
    responses = _import(tmp_path, "responses", [_responses(s) for s in SEEDS])
    assert responses[0]["responses"] == [{"sample": 0, "response": "first"}, {"sample": 1, "response": "second"}]
    # --num_sample_per_request 1 writes the response at the top level
    single = {k: v for k, v in _responses(SEEDS[0]).items() if k != "parsing_result"}
    assert _import(tmp_path, "responses", [{**single, "response": "only"}])[0]["responses"] == [
        {"sample": 0, "response": "only"}]
    bad = {**_responses(SEEDS[0]), "parsing_result": [{"text": "x"}]}
    with pytest.raises(RecordError, match="item 0 has no string 'response'"):
        _import(tmp_path, "responses", [bad])


def test_release_exec_filter_rows_number_the_samples_of_one_id(tmp_path: Path) -> None:
    rows = [_passed(SEEDS[0], "a"), _passed(SEEDS[1], "b"), _passed(SEEDS[0], "c")]
    got = _import(tmp_path, "executed", rows)
    assert [(g["id"], g["source_id"], g["sample"], g["response"]) for g in got] == [
        ("7/0", "7", 0, "a"), ("12/0", "12", 0, "b"), ("7/1", "7", 1, "c")]
    assert got[0]["execution"]["status"] == "pass"
    assert got[0]["instruction"] == "Write inc." and got[0]["content"] == SEEDS[0]["seed"]


def test_release_rows_without_ids_are_numbered_and_duplicates_say_how(tmp_path: Path) -> None:
    # the release's own local I->R output has no id
    rows = [{"instruction": "i1", "response": "r1"}, {"instruction": "i2", "response": "r2"}]
    assert [g["id"] for g in _import(tmp_path, "executed", rows)] == ["line000000001/0", "line000000002/0"]
    twice = [_concepts(SEEDS[0]), _concepts(SEEDS[0])]
    with pytest.raises(RecordError, match="duplicate id '7' .*id_field: null") as err:
        _import(tmp_path, "concepts", twice)
    assert err.value.line == 2
    assert [g["id"] for g in _import(tmp_path, "concepts", twice, id_field=None)] == ["line000000001", "line000000002"]
    with pytest.raises(RecordError, match="field 'instruction': missing"):
        _import(tmp_path, "instructions", [_concepts(SEEDS[0])])


def test_release_parquet_through_datasets(tmp_path: Path) -> None:
    """The published sets are parquet on the Hub: the same datasets.load_dataset call, locally."""
    rows = [_passed(SEEDS[0], "a"), _passed(SEEDS[1], "b")]
    parquet = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    out = tmp_path / "executed.jsonl"
    spec = ImportSpec.from_dict({"stage": "executed", "shape": "release", "dataset": "parquet", "data_files": [str(parquet)]})
    import_records(spec, out, show_progress=False)
    got = read_jsonl(out)
    assert [g["id"] for g in got] == ["7/0", "12/0"]
    assert got[1]["origin"] == {"dataset": "parquet", "revision": None, "split": "train", "row": 1,
                                "shape": "release", "fields": {"sha1": "b" * 40, "id": 12}}


def test_spec_names_the_stages_it_can_replace() -> None:
    with pytest.raises(ValueError, match="start_from.stage must be one of raw, .*executed"):
        ImportSpec.from_dict({"stage": "sft", "jsonl": "x"})
