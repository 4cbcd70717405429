"""SFT examples against the release's own star_align.train.map_dataset (0b19dbc).

tests/data/release/train/golden.json holds the token ids and labels the release's function made
for the first six records of the curation golden's sft.jsonl, with the tokenizer beside it (a
StarCoder2-style tokenizer trained here: BOS = EOS = pad = <|endoftext|>, as StarCoder2's), at
max_training_seq_length 1280 and 96 (six truncated), and with a copy of the tokenizer that has
no BOS. Our encoding must give the same ids, labels and truncation.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from selfalign.training.data import encode_example

DATA = Path(__file__).parent / "data" / "release" / "train"
TOKENIZERS = {"tok": "tokenizer", "tok-nobos": "tokenizer-nobos"}


def golden() -> dict:
    with gzip.open(DATA / "golden.json.gz", "rt", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("case", range(3))
def test_token_ids_and_label_masks_are_the_release_ones(case: int) -> None:
    data = golden()
    want = data["cases"][case]
    tokenizer = AutoTokenizer.from_pretrained(DATA / TOKENIZERS[want["tokenizer"]])
    got = [encode_example(tokenizer, r["instruction"], r["response"], want["max_length"]) for r in data["records"]]
    assert [e.input_ids for e in got] == want["input_ids"]
    assert [e.labels for e in got] == want["labels"]
    assert [e.truncated for e in got] == want["exceeding_length"]
    if want["tokenizer"] == "tok-nobos":
        assert tokenizer.bos_token_id is None and got[0].input_ids[0] != tokenizer.eos_token_id
