"""DS-1000: problems in the published shape (xlangai/DS-1000's test.jsonl) read through
`datasets`, the release's Completion-mode prompt for each of the three prompt shapes, its
post-processing, and the check program (code_context + test_execution, + test_string) proven in
gVisor by known-right and known-wrong answers (Pandas and Numpy, the libraries the sandbox has
so far)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfalign import ds1000
from selfalign.livecodebench.score import LcbSandboxParams, run_programs
from selfalign.prompt_template import SC2_INSTRUCT_PROMPT
from selfalign.records import RecordError

FILES = [Path(__file__).parents[1] / "src" / "selfalign" / "data" / "ds1000-tiny" / "test.jsonl"]
ANSWERS = json.loads((Path(__file__).parent / "data" / "ds1000" / "answers.json").read_text())


@pytest.fixture(scope="module")
def problems() -> dict[int, ds1000.Problem]:
    return {p.problem_id: p for p in ds1000.load_problems(FILES)}


def test_problems_load_through_datasets(problems: dict) -> None:
    assert [(p.problem_id, p.library) for p in problems.values()] == [(0, "Pandas"), (1, "Numpy"), (2, "Matplotlib")]
    assert "def test_execution(" in problems[0].code_context and problems[0].perturbation_type == "Origin"


@pytest.mark.parametrize(("change", "message"), [
    ({"prompt": None}, r"field 'prompt'.*not a string"),
    ({"metadata": {"problem_id": "7", "library": "Numpy"}}, r"metadata\.problem_id.*not an integer"),
    ({"metadata": {"problem_id": 7, "library": "Keras"}}, r"metadata\.library.*not one of"),
    ({"code_context": "x = 1\n"}, r"code_context.*no test_execution"),
])
def test_a_malformed_row_names_file_line_and_field(change: dict, message: str) -> None:
    row = json.loads(FILES[0].read_text().splitlines()[0])
    with pytest.raises(RecordError, match=rf"rows\.jsonl:4.*{message}"):
        ds1000.problem_from_row({**row, **change}, "rows.jsonl", 4)


def test_a_duplicate_problem_is_an_error(tmp_path: Path) -> None:
    line = FILES[0].read_text().splitlines()[1]
    (tmp_path / "t.jsonl").write_text(line + "\n" + line + "\n")
    with pytest.raises(RecordError, match=r"t\.jsonl:2.*duplicate problem_id 1"):
        ds1000.load_problems([tmp_path / "t.jsonl"])


def test_the_release_splits_each_prompt_shape_into_instruction_and_response(problems: dict) -> None:
    # a BEGIN SOLUTION block: the problem (without "Problem:"), the code so far as the response,
    # the "where the solution goes" line commented out, then "# Solution"
    instruction, response = ds1000.completion_prompt(problems[0].prompt)
    assert instruction.startswith("I have a dataframe of scores") and instruction.endswith("keep every column.")
    assert response.startswith("```python\nimport pandas as pd\n\n\ndf = pd.DataFrame(")
    assert response.endswith('"player": ["x", "y", "z"]})\n# result = ... # put solution in this variable\n# Solution\n')
    # a function to complete: its three closing comment lines give way to an indented "# Solution"
    instruction, response = ds1000.completion_prompt(problems[1].prompt)
    assert instruction.endswith("For [1, 2, 3, 4] it is 20.")
    assert response == ("```python\nimport numpy as np\nexample_a = np.array([1, 2, 3, 4])\ndef f(a = example_a):\n"
                        "    # Solution\n")
    # a Matplotlib script: the code is both the instruction's block and the response's start
    instruction, response = ds1000.completion_prompt(problems[2].prompt)
    assert instruction.startswith("Write a solution to the following problem:\n```python\nimport numpy as np\n")
    assert instruction.endswith("# plot y over x with a red dashed line\n```")
    assert response.endswith("# plot y over x with a red dashed line\n# Solution\n")
    text = ds1000.build_prompt(problems[1])
    assert text == SC2_INSTRUCT_PROMPT.format(instruction=ds1000.completion_prompt(problems[1].prompt)[0],
                                              response=ds1000.completion_prompt(problems[1].prompt)[1])


def test_a_prompt_of_no_known_shape_names_the_problem(problems: dict) -> None:
    odd = ds1000.Problem(9, "Scipy", "Origin", "Problem:\nno answer marker here", "", "def test_execution(s): pass")
    with pytest.raises(ds1000.PromptShapeError, match=r"problem 9 \(Scipy\): no 'A:'"):
        ds1000.build_prompt(odd)
    cut = problems[0].prompt.replace("BEGIN SOLUTION\n<code>\n", "BEGIN SOLUTION\n")
    with pytest.raises(ds1000.PromptShapeError, match="two <code>"):
        ds1000.completion_prompt(cut)


def test_postprocess_cuts_at_the_first_fence() -> None:
    assert ds1000.postprocess("x = 1\n```\nmore```") == "x = 1\n"
    assert ds1000.postprocess("x = 2\n") == "x = 2\n"


@pytest.mark.sandbox
@pytest.mark.timeout(300)
def test_right_answers_pass_and_wrong_ones_fail_in_the_sandbox(problems: dict) -> None:
    """The check's self-check for the libraries the sandbox has so far (Pandas, Numpy): the
    reference solution and each known-right answer pass; each known-wrong one fails (a wrong
    value, a wrong type, a syntax error, a loop that test_string refuses though its value is
    right)."""
    cases = []
    for key, kinds in ANSWERS.items():
        problem = problems[int(key)]
        cases.append((problem, "reference", problem.reference_code))
        cases += [(problem, kind, ds1000.postprocess(a)) for kind, answers in kinds.items() for a in answers]
    params = LcbSandboxParams(sample_site="bundled:livecodebench", preload=("numpy", "pandas"))
    verdicts = run_programs([(ds1000.check_program(p, code), 60.0) for p, _, code in cases], params)
    got = [(p.problem_id, kind, v.status) for (p, kind, _), v in zip(cases, verdicts, strict=True)]
    assert got == [(p.problem_id, kind, "fail" if kind == "wrong" else "pass") for p, kind, _ in cases], [
        (c[0].problem_id, c[1], v.reason, v.stderr_tail[-200:]) for c, v in zip(cases, verdicts, strict=True)]
