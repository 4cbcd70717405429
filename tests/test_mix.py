"""External instruction sets in the SFT mix (config curation.mix, selfalign.mix): OctoPack's OASST
file by its pin, a local JSONL and a CommitPackFT-shaped dataset through ``datasets``, chosen
deterministically, decontaminated like the self-generated records, counted per source in the
sidecar, the dataset card and the report's funnel."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import shared_data
from workflow_utils import RELEASE_CURATION, REPO

from selfalign.audit.report import build_funnel
from selfalign.config import ConfigError, load_config
from selfalign.mix import MixError, MixSource, chosen_indices, load_source, parse_sources, to_pair
from selfalign.pins import octopack_pins
from selfalign.provenance import write_sidecar

OASST = shared_data() / "octopack" / "oasst-octopack.jsonl.gz"


def _oasst_rows() -> list[dict]:
    with gzip.open(OASST, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_a_source_is_checked_against_the_schema_and_its_kind() -> None:
    with pytest.raises(MixError, match="count or fraction"):
        MixSource.from_dict({"name": "a", "kind": "jsonl", "path": "x", "count": 1, "fraction": 0.5})
    with pytest.raises(MixError, match="needs path"):
        MixSource.from_dict({"name": "a", "kind": "jsonl"})
    with pytest.raises(MixError, match="needs dataset, revision"):
        MixSource.from_dict({"name": "a", "kind": "hub"})
    with pytest.raises(MixError, match="pin"):
        MixSource.from_dict({"name": "a", "kind": "pinned"})
    with pytest.raises(MixError, match="other than 'self'"):
        MixSource.from_dict({"name": "self", "kind": "jsonl", "path": "x"})
    with pytest.raises(ConfigError, match="revision"):  # a branch name is not a pin
        MixSource.from_dict({"name": "c", "kind": "hub", "dataset": "bigcode/commitpackft", "revision": "main"})
    with pytest.raises(ValueError, match="unknown"):
        MixSource.from_dict({"name": "a", "kind": "jsonl", "path": "x", "weight": 2})
    with pytest.raises(MixError, match="used twice"):
        parse_sources([{"name": "a", "kind": "jsonl", "path": "x"}, {"name": "a", "kind": "jsonl", "path": "y"}])


def test_formats_and_the_seeded_choice_in_file_order() -> None:
    # CommitPackFT as OctoPack made instructions of it (add_commitpackft.py at octopack e17a8f6)
    row = {"subject": "Fix the off-by-one", "old_contents": "def f(n):\n    return n\n",
           "new_contents": "def f(n):\n    return n + 1\n"}
    assert to_pair(row, "commit", "x:1") == ("Fix the off-by-one\ndef f(n):\n    return n\n", row["new_contents"])
    assert to_pair({"prompt": "p", "completion": "c"}, "prompt_completion", "x:1") == ("p", "c")
    with pytest.raises(MixError, match=r"f\.jsonl:7: field 'completion' missing"):
        to_pair({"prompt": "p"}, "prompt_completion", "f.jsonl:7")
    source = MixSource(name="s", kind="jsonl", path="x", count=5, seed=3)
    picked = chosen_indices(100, source)
    assert picked == sorted(picked) and len(set(picked)) == 5 and picked == chosen_indices(100, source)
    assert picked != chosen_indices(100, MixSource(name="s", kind="jsonl", path="x", count=5, seed=4))
    assert chosen_indices(10, MixSource(name="s", kind="jsonl", path="x", fraction=0.25)).__len__() == 2
    assert chosen_indices(4, MixSource(name="s", kind="jsonl", path="x")) == [0, 1, 2, 3]
    with pytest.raises(MixError, match="count 11 but the source has 10 rows"):
        chosen_indices(10, MixSource(name="s", kind="jsonl", path="x", count=11))


def test_a_bad_row_names_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "a"}\n')
    with pytest.raises(MixError, match=rf"{bad}:2: field 'response' missing"):
        load_source(MixSource(name="mine", kind="jsonl", path=str(bad), format="instruction_response"))


def test_a_hub_source_loads_through_datasets(tmp_path: Path) -> None:
    """A CommitPackFT-shaped dataset (data/<language>/data.jsonl) on disk, read by
    datasets.load_dataset exactly as the Hub's would be (data_dir, split, revision)."""
    rows = [{"commit": f"{n:040x}", "subject": f"Change {n}", "old_contents": f"x = {n}\n",
             "new_contents": f"x = {n + 1}\n", "lang": "Python"} for n in range(6)]
    (tmp_path / "data" / "python").mkdir(parents=True)
    (tmp_path / "data" / "python" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = MixSource.from_dict({"name": "commitpackft-python", "kind": "hub", "dataset": str(tmp_path),
                                  "revision": "0" * 40, "data_dir": "data/python", "format": "commit", "count": 3})
    records, n = load_source(source)
    assert n == 6 and len(records) == 3
    index = int(records[0].id.split(":")[1])
    assert records[0].instruction == f"Change {index}\nx = {index}\n" and records[0].response == f"x = {index + 1}\n"


def test_oasst_conversation_trees_through_datasets_give_question_and_answer(tmp_path: Path) -> None:
    """bigcode/oasst-octopack's shape (a row per conversation tree: ``conversations``, messages
    with ``text``; OctoPack kept the first two, question and answer), written here as a fixture,
    loaded through datasets.load_dataset as the Hub's would be; a tree with one message is an
    error naming the row."""
    trees = [{"conversations": [{"text": f"Question {n}?", "role": "prompter"},
                                {"text": f"Answer {n}.", "role": "assistant"},
                                {"text": "A follow-up", "role": "prompter"}][: 3 if n % 2 else 2], "lang": "en"}
             for n in range(4)]
    (tmp_path / "oasst_octopack.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trees))
    source = MixSource.from_dict({"name": "oasst", "kind": "hub", "dataset": str(tmp_path),
                                  "revision": "1f5db3451c66a64e37158fcdf8c1951db8e90b33",
                                  "format": "oasst_conversation"})
    records, n = load_source(source)
    assert n == 4 and [(r.instruction, r.response) for r in records] == [(f"Question {k}?", f"Answer {k}.")
                                                                         for k in range(4)]
    with pytest.raises(MixError, match=r"x:3: field 'conversations' missing or not a list of two"):
        to_pair({"conversations": [{"text": "alone"}]}, "oasst_conversation", "x:3")
    with pytest.raises(MixError, match=r"x:4: field 'conversations\[1\]\.text' missing"):
        to_pair({"conversations": [{"text": "q"}, {"content": "a"}]}, "oasst_conversation", "x:4")


def test_sft_with_oasst_and_a_local_set_mixed_in_counts_each_source(tmp_path: Path) -> None:
    """`selfalign curate sft` as the rule runs it: the release's own cleaned records, then 5
    OASST-shaped records by the octopack.oasstcommitpackft pin (from the shared mirror) and a local JSONL with one
    HumanEval leak, dropped by the same decontamination."""
    cleaned = tmp_path / "cleaned.jsonl"
    with gzip.open(RELEASE_CURATION / "cleaned.jsonl.gz", "rb") as fh:
        cleaned.write_bytes(fh.read())
    n_self = sum(1 for line in cleaned.read_text().splitlines() if line.strip())
    with gzip.open(shared_data() / "evalplus" / "HumanEvalPlus-v0.1.9.jsonl.gz", "rt") as fh:
        he = json.loads(fh.readline())
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"instruction": "Complete it.", "response": he["prompt"] + he["canonical_solution"]})
                    + "\n" + json.dumps({"instruction": "Say hi.", "response": "print('hi')"}) + "\n")
    config = load_config([REPO / "config.yaml"])
    config["octopack"]["mirrors"] = [str(shared_data() / "octopack")]
    pins = {"octopack.oasstcommitpackft": octopack_pins(config)["oasstcommitpackft"].to_dict()}
    mix = [{"name": "oasst", "kind": "pinned", "pin": "octopack.oasstcommitpackft", "format": "prompt_completion", "count": 5},
           {"name": "mine", "kind": "jsonl", "path": str(mine), "format": "instruction_response"}]
    decontamination = {"humaneval": "evalplus:v0.1.9", "mbpp": "evalplus:v0.1.0",
                       "mirrors": [str(shared_data() / "evalplus")]}
    out = tmp_path / "sft.jsonl"
    command = [str(Path(sys.executable).with_name("selfalign")), "curate", "sft", "--input", str(cleaned),
               "--out", str(out), "--parquet", str(tmp_path / "sft.parquet"),
               "--report", str(tmp_path / "decontamination.json"), "--card", str(tmp_path / "README.md"),
               "--run-name", "mixed", "--params", json.dumps({"decontaminate": True}),
               "--decontamination", json.dumps(decontamination), "--mix", json.dumps(mix),
               "--pins", json.dumps(pins), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    records = [json.loads(line) for line in out.read_text().splitlines()]
    external = [r for r in records if "source" in r]
    assert [r["source"] for r in external] == ["oasst"] * 5 + ["mine"]
    # all self-generated records first, in their order; then each source in file order
    assert records[: len(records) - 6] == [r for r in records if "source" not in r]
    oasst = _oasst_rows()
    for record in external[:5]:
        row = oasst[int(record["id"].split(":")[1])]
        assert (record["instruction"], record["response"]) == (row["prompt"], row["completion"])
    assert external[5]["id"] == "mine:1"  # mine:0 holds HumanEval/0: dropped
    meta = json.loads((tmp_path / "sft.jsonl.meta.json").read_text())
    sources = meta["stats"]["sources"]
    assert sources["oasst"] == {"rows": len(oasst), "in": 5, "out": 5, "contaminated": 0}
    assert sources["mine"] == {"rows": 2, "in": 2, "out": 1, "contaminated": 1}
    assert sources["self"]["in"] == n_self and meta["stats"]["added"] == 7
    assert meta["counts"]["out"] == len(records) and meta["config"]["mix"] == mix
    drops = [json.loads(line) for line in (tmp_path / "sft.dropped.jsonl").read_text().splitlines()]
    assert [d["id"] for d in drops if d["id"].startswith("mine:")] == ["mine:0"]
    report = json.loads((tmp_path / "decontamination.json").read_text())
    assert any(h["id"] == "mine:0" for h in report["hits"])
    card = (tmp_path / "README.md").read_text()
    assert "## Sources" in card and f"| `oasst` | {len(oasst)} | 5 | 5 | 0 |" in card
    assert "| `mine` | 2 | 2 | 1 | 1 |" in card
    assert pq.read_table(tmp_path / "sft.parquet").column("source").to_pylist()[-6:] == ["oasst"] * 5 + ["mine"]

    # the report's funnel counts the mixed-in records as added, not as a broken chain
    write_sidecar(cleaned, stage="clean", counts={"in": n_self, "out": n_self, "dropped": 0})
    [clean_row, sft_row] = build_funnel(tmp_path)[-2:]
    assert sft_row.added == {"oasst": 5, "mine": 2} and sft_row.chained and sft_row.balanced
    assert sft_row.to_json()["added_from_sources"] == {"oasst": 5, "mine": 2}
