"""The judge's prompts and verdicts against the release's own filter_dataset.py (0b19dbc).

tests/data/release/judge/golden.json was made by running the release's ``prompt_fmt`` (its
module-level ``random.seed(42)``, the dummy prompt built first, then one in-place shuffle per
prompt) on input.jsonl, and its verdict rule on a list of completions (README beside it).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from selfalign.generation.judge import (
    JUDGE_DUMMY_CODE,
    UpstreamJudgeOrder,
    judge_prompt,
    parse_judge,
)

DATA = Path(__file__).parent / "data" / "release" / "judge"


def golden() -> dict:
    with gzip.open(DATA / "golden.json.gz", "rt", encoding="utf-8") as handle:
        return json.load(handle)


def test_judge_prompts_are_the_release_prompts_in_its_shuffle_order() -> None:
    want = golden()
    codes = [json.loads(line)["content"] for line in (DATA / "input.jsonl").read_text().splitlines()]
    # The script as written, without vLLM's reseeding: random.seed(42), the dummy's shuffle first.
    replay = UpstreamJudgeOrder(rng_seed=42)
    assert [judge_prompt(c, i, upstream_order=replay).prompt for i, c in enumerate(codes)] == want["prompts"]


def test_the_dummy_prompt_is_the_release_dummy_prompt() -> None:
    want = golden()
    assert JUDGE_DUMMY_CODE == want["dummy_code"]
    first = UpstreamJudgeOrder(rng_seed=42, leading_shuffles=0)
    assert judge_prompt(JUDGE_DUMMY_CODE, 0, upstream_order=first).prompt == want["dummy_prompt"]


def test_verdicts_follow_the_release_yes_no_count() -> None:
    want = golden()
    assert [parse_judge(c).keep for c in want["completions"]] == want["verdicts"]
