"""LiveCodeBench code generation: problems in the published shape read through `datasets`, the
private tests' encoding, the prompt, code extraction, and the grader in gVisor proven by
known-correct and known-wrong solutions for LeetCode (functional) and AtCoder/Codeforces (stdin)
problems."""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib
from datetime import date
from pathlib import Path

import pytest

from selfalign.livecodebench.codegen import (
    RELEASE_FILES,
    build_prompt,
    decode_tests,
    extract_code,
    in_window,
    load_problems,
    problem_from_row,
)
from selfalign.livecodebench.score import LcbSandboxParams, grade
from selfalign.records import RecordError

DATA = Path(__file__).parent / "data" / "livecodebench"
FILES = [Path(__file__).parents[1] / "src" / "selfalign" / "data" / "livecodebench-tiny" / "test.jsonl"]
SOLUTIONS = json.loads((DATA / "solutions.json").read_text())


@pytest.fixture(scope="module")
def problems() -> dict:
    return {p.question_id: p for p in load_problems(FILES)}


def test_releases_are_cumulative_files_of_the_dataset() -> None:
    assert RELEASE_FILES["release_v1"] == ("test.jsonl",)
    assert RELEASE_FILES["release_v3"] == ("test.jsonl", "test2.jsonl", "test3.jsonl")
    assert len(RELEASE_FILES["release_v6"]) == 6


def test_problems_load_through_datasets_with_their_private_tests_decoded(problems: dict) -> None:
    assert list(problems) == ["fx-lc-sum", "fx-lc-order", "fx-abc-mean", "fx-cf-reverse"]
    total = problems["fx-lc-sum"]
    assert total.fn_name == "sumAll" and total.contest_date == date(2023, 10, 1)
    # public tests first, then the private ones (pickled, compressed, base64 in the file)
    assert [(t.input, t.output) for t in total.tests] == [("[1, 2, 3]", "6"), ("[]", "0"), ("[-5, 5, 7]", "7")]
    assert problems["fx-lc-order"].private_tests[0].input == "9\n-1"  # plain JSON is read too
    assert problems["fx-abc-mean"].fn_name is None and problems["fx-abc-mean"].tests[0].testtype == "stdin"
    # the contest-date window (LiveCodeBench's --start_date/--end_date, both inclusive)
    window = in_window(problems.values(), date(2023, 9, 1), date(2024, 1, 13))
    assert [p.question_id for p in window] == ["fx-lc-sum", "fx-lc-order"]


def test_a_pickled_test_list_may_hold_only_plain_data() -> None:
    tests = [{"input": "1", "output": "2", "testtype": "stdin"}]
    assert decode_tests(base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()) == tests
    # a pickle that would call os.system on load is refused, not run
    hostile = base64.b64encode(zlib.compress(pickle.dumps(os.system))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        decode_tests(hostile)
    row = json.loads(FILES[0].read_text().splitlines()[0])
    with pytest.raises(RecordError, match=r"x\.jsonl:7.*private_test_cases.*refusing"):
        problem_from_row({**row, "private_test_cases": hostile}, "x.jsonl", 7)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("question_id", None, "missing, or not a string"),
    ("contest_date", "yesterday", "not an ISO date"),
    ("metadata", "{", "not JSON"),
    ("public_test_cases", json.dumps([{"input": "1", "output": "2"}]), "testtype"),
])
def test_a_malformed_row_names_file_line_and_field(field: str, value: object, message: str) -> None:
    row = json.loads(FILES[0].read_text().splitlines()[0])
    with pytest.raises(RecordError, match=rf"rows\.jsonl:3.*{field}.*{message}|rows\.jsonl:3.*{message}"):
        problem_from_row({**row, field: value}, "rows.jsonl", 3)


def test_a_duplicate_question_id_is_an_error(tmp_path: Path) -> None:
    line = FILES[0].read_text().splitlines()[0]
    twice = tmp_path / "test.jsonl"
    twice.write_text(line + "\n" + line + "\n")
    with pytest.raises(RecordError, match="duplicate question_id 'fx-lc-sum'"):
        load_problems([twice])


def test_prompt_is_livecodebenchs_for_starcoder2_instruct(problems: dict) -> None:
    with_starter = build_prompt(problems["fx-lc-sum"])
    assert with_starter.startswith("You are an expert Python programmer. You will be given a question")
    assert "\n### Question:\nReturn the sum of nums.\n\n### Format: You will use the following starter code" in with_starter
    assert with_starter.endswith("```python\nclass Solution:\n    def sumAll(self, nums: List[int]) -> int:\n        \n```"
                                 "\n\n### Answer: (use the provided format with backticks)\n\n")
    stdin = build_prompt(problems["fx-abc-mean"])
    assert "### Format: Read the inputs from stdin solve the problem" in stdin and "# YOUR CODE HERE" in stdin


def test_the_code_is_the_first_fenced_block_as_when_the_card_was_made() -> None:
    answer = "Here:\n```python\nprint(1)\n```\nor better\n```python\nprint(2)\n```\nDone."
    # LiveCodeBench 99affe6 (April 2024) took the first block; since its 264e841, the last
    assert extract_code(answer) == "print(1)" and extract_code(answer, "last") == "print(2)"
    assert extract_code("print(3)") == "" and extract_code("```python\nprint(4)") == ""
    with pytest.raises(ValueError, match="code block"):
        extract_code(answer, "middle")


@pytest.mark.sandbox
@pytest.mark.timeout(300)
def test_correct_solutions_pass_and_wrong_ones_fail_in_the_sandbox(problems: dict) -> None:
    """The grader's self-check: each problem's known-correct solution passes every public and
    private test (a float printed with more digits still matches, a tuple is compared as a list,
    `if __name__ == '__main__'` runs, stdin.buffer reads); each known-wrong one fails, named."""
    items, expected = [], []
    for qid, problem in problems.items():
        items += [(problem, SOLUTIONS[qid]["correct"]), (problem, SOLUTIONS[qid]["wrong"])]
        expected += [(qid, "correct", "pass"), (qid, "wrong", "fail")]
    # and the ways a sample fails otherwise: its own exception, a test's time limit, no code
    items += [(problems["fx-lc-sum"], "class Solution:\n    def sumAll(self, nums):\n        return 1 // 0\n"),
              (problems["fx-abc-mean"], "while True:\n    pass\n"),
              (problems["fx-cf-reverse"], "")]
    verdicts = grade(items, LcbSandboxParams(test_timeout_s=1))
    got = [(qid, kind, v.status) for (qid, kind, _), v in zip(expected, verdicts[:8], strict=True)]
    assert got == expected, [(e, v.reason, v.stderr_tail[-300:]) for e, v in zip(expected, verdicts[:8], strict=True)]
    assert all(v.reason == "exception:WrongAnswer" for v in verdicts[1:8:2])
    crash, slow, empty = verdicts[8:]
    assert (crash.status, crash.reason) == ("fail", "exception:ZeroDivisionError")
    assert slow.status in ("fail", "timeout") and "TimeLimitExceeded" in slow.reason + slow.stderr_tail
    assert (empty.status, empty.reason) == ("fail", "exception:WrongAnswer")  # prints nothing
