"""selfalign compare: our SFT set against a dataset in the published 50k set's shape."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from selfalign.audit.compare import Source, compare
from selfalign.cli import main

GOLDEN = Path(__file__).parent / "data" / "release" / "curation"


def release_sft() -> list[dict]:
    with gzip.open(GOLDEN / "sft.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def published_shape(records: list[dict]) -> list[dict]:
    """Rows as bigcode/self-oss-instruct-sc2-exec-filter-50k holds them (the release's fields)."""
    return [{"fingerprint": None, "sha1": f"{n:040x}", "seed": "def f(): ...", "response": r["response"],
             "concepts": ["c"], "prompt": "p", "instruction": r["instruction"], "id": n}
            for n, r in enumerate(records)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_identical_sets_match_in_full_and_in_order(tmp_path: Path) -> None:
    records = release_sft()
    ours = write_jsonl(tmp_path / "sft.jsonl", records)
    theirs = tmp_path / "published.parquet"
    pq.write_table(pa.Table.from_pylist(published_shape(records)), theirs)
    report = compare(ours, Source(path=str(theirs)))
    assert (report["matched"], report["identical"], report["same_order"]) == (len(records), len(records), True)
    assert report["only_ours"]["count"] == report["only_published"]["count"] == 0


def test_differences_are_counted_per_field_with_where_they_start(tmp_path: Path) -> None:
    records = release_sft()
    theirs = published_shape(records)
    theirs[3]["response"] = theirs[3]["response"][:10] + "X" + theirs[3]["response"][11:]
    theirs[4]["instruction"] += "  "  # whitespace only: still the same key, but a different field
    del theirs[5]
    theirs.append({**theirs[0], "instruction": "Something only the published set has.", "id": 999})
    theirs[1], theirs[2] = theirs[2], theirs[1]
    ours = write_jsonl(tmp_path / "sft.jsonl", records)
    published = write_jsonl(tmp_path / "published.jsonl", theirs)
    out = tmp_path / "report.json"
    assert main(["compare", "--ours", str(ours), "--published-file", str(published), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["matched"] == len(records) - 1
    assert report["only_ours"]["count"] == 1 and report["only_published"]["count"] == 1
    assert report["fields"]["response"]["differ"] == 1
    assert report["fields"]["response"]["examples"][0]["first_difference_at"] == 10
    assert report["fields"]["instruction"]["differ"] == 1
    assert report["identical"] == len(records) - 3 and report["same_order"] is False
