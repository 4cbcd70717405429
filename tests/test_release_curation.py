"""config.yaml's curation against the release's own scripts (tag starcoder2-instruct = 0b19dbc).

The goldens in tests/data/release/curation/ were made by running the release's
``RAW=1 sanitize_data.py``, ``clean_data.py [--diversify_func_names]`` and ``SMART=1
sanitize_data.py`` on ``input.jsonl`` (tests/data/release/README.md says how). Our stages, with
the paper config's parameters, must give the same records (id, instruction, response) in the
same order.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import yaml

from selfalign.curation import CleanParams, SmartParams, run_clean, run_sanitize, run_sft

GOLDEN = Path(__file__).parent / "data" / "release" / "curation"
CONFIG = Path(__file__).parents[1] / "config.yaml"


def paper_curation() -> dict:
    return yaml.safe_load(CONFIG.read_text())["curation"]


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release-golden")
    for packed in GOLDEN.glob("*.jsonl.gz"):
        with gzip.open(packed, "rb") as src, open(out / packed.name[: -len(".gz")], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return out


def triples(path: Path) -> list[tuple[str, str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [(r["id"], r["instruction"], r["response"]) for r in map(json.loads, handle)]


def assert_same(ours: Path, release: Path) -> None:
    got, want = triples(ours), triples(release)
    assert [g[0] for g in got] == [w[0] for w in want], "ids or their order differ"
    for g, w in zip(got, want, strict=True):
        assert g == w, f"record {g[0]} differs"


def test_sanitize_is_the_release_raw_pass(golden: Path, tmp_path: Path) -> None:
    stats = run_sanitize(golden / "input.jsonl", tmp_path / "s.jsonl", show_progress=False)
    assert_same(tmp_path / "s.jsonl", golden / "sanitized.jsonl")
    assert stats.n_in == 176 and stats.n_out == 159


@pytest.mark.parametrize(
    ("diversify", "golden_name", "kept"),
    [(True, "cleaned.jsonl", 21), (False, "cleaned-no-diversify.jsonl", 140)],
)
def test_clean_is_the_release_clean_data(
    golden: Path, tmp_path: Path, diversify: bool, golden_name: str, kept: int
) -> None:
    params = CleanParams.from_dict({**paper_curation()["clean"], "diversify_func_names": diversify})
    stats = run_clean(golden / "sanitized.jsonl", tmp_path / "c.jsonl", params, show_progress=False)
    assert_same(tmp_path / "c.jsonl", golden / golden_name)
    assert stats.n_out == kept


@pytest.mark.parametrize(
    ("source", "golden_name", "kept"),
    [("cleaned.jsonl", "sft.jsonl", 21), ("sanitized.jsonl", "sft-from-sanitized.jsonl", 158)],
)
def test_sft_is_the_release_smart_pass(
    golden: Path, tmp_path: Path, source: str, golden_name: str, kept: int
) -> None:
    params = SmartParams.from_dict(paper_curation()["sft"])
    stats = run_sft(golden / source, tmp_path / "f.jsonl", params, show_progress=False)
    assert_same(tmp_path / "f.jsonl", golden / golden_name)
    assert stats.n_out == kept


def test_the_corrected_overlay_differs_from_the_release(golden: Path, tmp_path: Path) -> None:
    """The opt-in overlays change the curation (so the goldens really pin the release's)."""
    enhance = yaml.safe_load((CONFIG.parent / "recipes" / "enhance.yaml").read_text())
    overlay = yaml.safe_load((CONFIG.parent / "recipes" / "corrected.yaml").read_text())
    clean = CleanParams.from_dict({**paper_curation()["clean"], **enhance["curation"]["clean"]})
    run_clean(golden / "sanitized.jsonl", tmp_path / "c.jsonl", clean, show_progress=False)
    assert triples(tmp_path / "c.jsonl") != triples(golden / "cleaned.jsonl")
    smart = SmartParams.from_dict({**paper_curation()["sft"], **overlay["curation"]["sft"]})
    run_sft(golden / "sanitized.jsonl", tmp_path / "f.jsonl", smart, show_progress=False)
    assert triples(tmp_path / "f.jsonl") != triples(golden / "sft-from-sanitized.jsonl")


def test_the_release_shape_without_ids_curates_the_same(golden: Path, tmp_path: Path) -> None:
    """The release's files (and the published sets' JSONL exports) carry no string ``id``:
    sanitize gives each record its line number as one, and the texts come out as the release's."""
    source = tmp_path / "no-ids.jsonl"
    with open(golden / "input.jsonl", encoding="utf-8") as handle, open(source, "w", encoding="utf-8") as out:
        for line in handle:
            record = json.loads(line)
            del record["id"]
            out.write(json.dumps(record) + "\n")
    stats = run_sanitize(source, tmp_path / "s.jsonl", show_progress=False)
    assert stats.extra["ids_from_line_numbers"] == 176
    clean = CleanParams.from_dict(paper_curation()["clean"])
    run_clean(tmp_path / "s.jsonl", tmp_path / "c.jsonl", clean, show_progress=False)
    run_sft(tmp_path / "c.jsonl", tmp_path / "f.jsonl", SmartParams.from_dict(paper_curation()["sft"]), show_progress=False)
    assert [t[1:] for t in triples(tmp_path / "f.jsonl")] == [t[1:] for t in triples(golden / "sft.jsonl")]
