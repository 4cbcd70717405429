"""HumanEvalPack prompts and post-processing against the evaluation harness's own output.

``tests/data/octopack/harness-goldens.jsonl.gz`` was made in a scratch directory outside the
project by bigcode-evaluation-harness 8fc5bae6's ``bigcode_eval/tasks/humanevalpack.py`` itself
(its ``Task`` base stubbed so it reads the shared data's first 3 tasks per language instead of the
Hub): for every language, the ``octocoder`` and ``instruct`` formats and the five task kinds, the
prompt it builds (``get_prompt``) and what its ``postprocess_generation`` keeps of ``prompt +
completion``, for completions that run past the function (trailing helpers, ``main``), stop at
``<|endoftext|>``, or (descriptions) repeat a line of the solution and overrun the length limit.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from selfalign.octopack import humanevalpack as hp

GOLDENS = Path(__file__).parent / "data" / "octopack" / "harness-goldens.jsonl.gz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "octopack"


def _rows() -> list[dict]:
    with gzip.open(GOLDENS, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def tasks() -> dict[str, list[hp.Task]]:
    return {lang: hp.load_tasks(SHARED / f"humanevalpack-{lang}.jsonl.gz", lang, 3) for lang in hp.LANGUAGES}


def test_goldens_cover_every_language_kind_and_format() -> None:
    rows = _rows()
    assert len(rows) == 6 * 2 * 5 * 3 * 2
    assert {(r["language"], r["kind"], r["format"]) for r in rows} == {
        (lang, kind, fmt) for lang in hp.LANGUAGES for kind in hp.TASKS for fmt in ("octocoder", "instruct")}


@pytest.mark.parametrize("language", hp.LANGUAGES)
def test_prompts_and_postprocessing_are_the_harness(language: str, tasks: dict[str, list[hp.Task]]) -> None:
    for row in (r for r in _rows() if r["language"] == language):
        task = tasks[language][row["index"]]
        where = (row["kind"], row["format"], task.task_id)
        assert hp.build_prompt(task, row["kind"], row["format"], description=row["description"]) == row["prompt"], where
        assert hp.postprocess(task, row["kind"], row["completion"]) == row["postprocessed"], where


def test_explainsynthesize_needs_the_description(tasks: dict[str, list[hp.Task]]) -> None:
    with pytest.raises(ValueError, match="description"):
        hp.build_prompt(tasks["go"][0], "explainsynthesize", "octocoder")
