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
