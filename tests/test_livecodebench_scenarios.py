"""LiveCodeBench's self repair, test output prediction and code execution: items in the published
shapes read through `datasets`, LiveCodeBench's prompts and extraction rules, the grader's failure
feedback self repair quotes, and the checks in gVisor proven by known-right and known-wrong
answers per scenario."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from selfalign.livecodebench import prediction, selfrepair
from selfalign.livecodebench.codegen import load_problems
from selfalign.livecodebench.score import (
    LcbSandboxParams,
    grade,
    parse_feedback,
    prediction_jobs,
    run_programs,
    summarize,
)
from selfalign.records import RecordError

DATA = Path(__file__).parent / "data" / "livecodebench"
TINY = Path(__file__).parents[1] / "src" / "selfalign" / "data" / "livecodebench-tiny"
ANSWERS = json.loads((DATA / "answers.json").read_text())
SOLUTIONS = json.loads((DATA / "solutions.json").read_text())
SANDBOX = LcbSandboxParams(sample_site="bundled:livecodebench", preload=("numpy", "pandas"))


@pytest.fixture(scope="module")
def test_output() -> list[prediction.TestOutputItem]:
    return prediction.load_test_output([TINY / "test_generation.jsonl"])


@pytest.fixture(scope="module")
def execution() -> list[prediction.ExecutionItem]:
    return prediction.load_execution([TINY / "execution.jsonl"])


def test_prediction_items_load_in_livecodebenchs_order(test_output: list, execution: list) -> None:
    # test output prediction: by (question_id, test_id); code execution: by the number in the id
    assert [i.key for i in test_output] == ["fx-lc-order/0", "fx-lc-sum/0", "fx-lc-sum/1"]
    assert (test_output[1].input, test_output[1].output, test_output[1].function_name) == ("[1, 2, 3]", "6", "sumAll")
    assert [i.key for i in execution] == ["sample_0", "sample_2", "sample_10"]
    assert execution[0].contest_date == date(2023, 10, 1)
    chosen, words = prediction.in_window(execution, "2024-01-01", None, None)
    assert [i.key for i in chosen] == ["sample_2", "sample_10"] and words.startswith("2 items")


def test_parquet_as_the_hub_publishes_it_reads_the_same(tmp_path: Path, execution: list) -> None:
    from datasets import load_dataset

    rows = load_dataset("json", data_files=str(TINY / "execution.jsonl"), split="train")
    rows.to_parquet(str(tmp_path / "test-00000-of-00001.parquet"))
    assert prediction.load_execution([tmp_path / "test-00000-of-00001.parquet"]) == execution


@pytest.mark.parametrize(("name", "field", "value", "message"), [
    ("execution.jsonl", "code", None, "missing, or not a string"),
    ("execution.jsonl", "id", "twelve", "expected <name>_<number>"),
    ("execution.jsonl", "contest_date", "soon", "not a date"),
    ("test_generation.jsonl", "test", "[]", "not a JSON list"),
    ("test_generation.jsonl", "test_id", None, "missing, or not an integer"),
])
def test_a_malformed_item_names_file_row_and_field(tmp_path: Path, name: str, field: str, value: object,
                                                   message: str) -> None:
    lines = (TINY / name).read_text().splitlines()
    row = json.loads(lines[1])
    if value is None:
        del row[field]
    else:
        row[field] = value
    bad = tmp_path / name
    bad.write_text("\n".join([lines[0], json.dumps(row)]) + "\n")
    load = prediction.load_execution if name == "execution.jsonl" else prediction.load_test_output
    with pytest.raises(RecordError, match=rf"{name}:2.*{field}.*{message}|{name}:2.*{message}"):
        load([bad])


def test_a_duplicate_item_is_an_error(tmp_path: Path) -> None:
    line = (TINY / "execution.jsonl").read_text().splitlines()[0]
    (tmp_path / "e.jsonl").write_text(line + "\n" + line + "\n")
    with pytest.raises(RecordError, match=r"e\.jsonl:2.*duplicate 'sample_0'"):
        prediction.load_execution([tmp_path / "e.jsonl"])


def test_prompts_are_livecodebenchs_for_starcoder2_instruct(test_output: list, execution: list) -> None:
    text = prediction.test_output_prompt(test_output[0])
    assert text.startswith("You are a helpful programming assistant and an expert Python programmer. You are helping "
                           "a user to write a test case")
    # the statement runs into "Function:" (LiveCodeBench's template has no newline there)
    assert "\nProblem:\nReturn [max(a, b), min(a, b)].\nFunction:\n```\ndef order(" in text
    assert text.endswith("Please complete the following test case:\n\n```\nassert order(3, 5) == # TODO\n```\n")
    direct = prediction.execution_prompt(execution[0])
    assert direct.endswith("[PYTHON]\n" + execution[0].code + "\nassert sumAll(nums = [1, 2, 3]) == ??\n[/PYTHON]\n"
                           "[ANSWER]\n")
    assert "repeatNumber(number = 17) == 17" in direct and "[THOUGHT]" not in direct
    assert prediction.execution_prompt(execution[0], cot=True).endswith("[/PYTHON]\n[THOUGHT]\n")


def test_extraction_follows_livecodebench() -> None:
    # test output: the last line starting with assert; else the first ```python block
    assert prediction.extract_test_output("x\nassert f(1) == 2\nassert f(2) == 3\n") == "assert f(2) == 3"
    assert prediction.extract_test_output("```\nzzz\n```\n```python\nf(1) == 5\n```") == "f(1) == 5"
    assert prediction.predicted_expression("assert f(1) == [1, 2]") == "[1, 2]"
    assert prediction.predicted_expression("assert f(1) != 2") == "Not an equality assertion"
    assert prediction.predicted_expression("# a comment\nassert g() == 'x'") == "'x'"
    # code execution: after ==, up to [/ANSWER] (else the first line); with cot, inside [ANSWER]
    assert prediction.extract_execution("assert f(x = 1) == 'a'\n[/ANSWER]") == "'a'"
    assert prediction.extract_execution("17\nmore text") == "17"
    assert prediction.extract_execution("step 1 == 2\n[ANSWER]\nassert f() == 3\n[/ANSWER]", cot=True) == "3"


@pytest.mark.sandbox
@pytest.mark.timeout(300)
def test_right_answers_pass_and_wrong_ones_fail_in_the_sandbox(test_output: list, execution: list) -> None:
    """The prediction checks' self-check: every known-right answer passes, every known-wrong one
    fails (a wrong value, a name, prose, an inequality, a call that is not the value), and a code
    execution answer that repeats the input is skipped, not run. The code-execution checks import
    numpy and pandas (LiveCodeBench's BASE_IMPORTS), one item's code calls numpy."""
    cases = []
    for scenario, items in (("testoutputprediction", test_output), ("codeexecution", execution)):
        for item in items:
            for kind, answers in ANSWERS[scenario][item.key].items():
                cases += [(scenario, item, kind, a) for a in answers]
    jobs = [prediction_jobs([item], {item.key: [answer]}, scenario)[0] for scenario, item, _, answer in cases]
    skipped = [(c[1].key, j.preset) for c, j in zip(cases, jobs, strict=True) if j.preset]
    assert skipped == [("sample_0", ("skip", "contains_input"))]
    verdicts = iter(run_programs([(j.program, j.timeout_s) for j in jobs if j.program], SANDBOX))
    got = [(c[1].key, c[2], "skip" if j.preset else next(verdicts).status) for c, j in zip(cases, jobs, strict=True)]
    want = [(c[1].key, c[2], {"correct": "pass", "wrong": "fail", "repeats_input": "skip"}[c[2]]) for c in cases]
    assert got == want


def test_skipped_answers_do_not_count_unless_all_are() -> None:
    rows = [{"id": "a", "sample": 0, "status": "pass", "reason": "ok"},
            {"id": "a", "sample": 1, "status": "skip", "reason": "contains_input"},
            {"id": "b", "sample": 0, "status": "skip", "reason": "contains_input"},
            {"id": "b", "sample": 1, "status": "skip", "reason": "contains_input"}]
    groups = summarize(rows, [("a", "easy"), ("b", "easy")], (1,), key=lambda r: r["id"])
    # a: 1 of 1 scored; b: all skipped, so 0 of 2 (LiveCodeBench's [False] * len)
    assert groups["all"]["pass_at_k"] == {"pass@1": 0.5} and groups["all"]["passed"] == 1


@pytest.mark.sandbox
@pytest.mark.timeout(300)
def test_the_grader_reports_what_went_wrong_as_livecodebench_does() -> None:
    """Self repair's input: a failing code-generation sample's verdict carries LiveCodeBench's
    metadata (error_code -1..-4, the test's input, the output, the expected output), the verdict's
    reason unchanged."""
    problems = {p.question_id: p for p in load_problems([TINY / "test.jsonl"])}
    items = [(problems["fx-lc-sum"], SOLUTIONS["fx-lc-sum"]["wrong"]),
             (problems["fx-abc-mean"], SOLUTIONS["fx-abc-mean"]["wrong"]),
             (problems["fx-lc-sum"], "class Solution:\n    def sumAll(self, nums):\n        return 1 // 0\n"),
             (problems["fx-lc-sum"], "def broken(:\n"),
             (problems["fx-abc-mean"], "while True:\n    pass\n"),
             (problems["fx-lc-sum"], SOLUTIONS["fx-lc-sum"]["correct"])]
    verdicts = grade(items, LcbSandboxParams(test_timeout_s=1))
    feedback = [parse_feedback(v) for v in verdicts]
    assert feedback[0] == {"error_code": -2, "error_message": "Wrong Answer", "inputs": "[1, 2, 3]", "output": "5",
                           "expected": "6"}
    assert verdicts[0].reason == "exception:WrongAnswer"
    assert feedback[1] is not None and (feedback[1]["error_code"], feedback[1]["output"]) == (-2, "2\n")
    assert feedback[1]["inputs"] == "4\n1 2 3 4\n" and feedback[1]["expected"] == "2.5\n"
    assert feedback[2] is not None and feedback[2]["error_code"] == -4 and "ZeroDivisionError" in feedback[2]["error"]
    assert verdicts[2].reason == "exception:ZeroDivisionError"
    assert feedback[3] is not None and feedback[3]["error_code"] == -1 and "SyntaxError" in feedback[3]["error"]
    assert feedback[4] is not None and feedback[4]["error_code"] == -3
    assert verdicts[5].status == "pass" and feedback[5] is None


def test_self_repair_prompt_quotes_the_failure() -> None:
    problem = load_problems([TINY / "test.jsonl"])[0]
    wrong = {"error_code": -2, "inputs": "[1]", "output": "0", "expected": "1"}
    text = selfrepair.repair_prompt(problem, "print(0)", wrong)
    assert text.startswith(selfrepair.SYSTEM_MESSAGE + "\n### Question:\nReturn the sum of nums.\n\n### Answer:\n"
                           "```python\nprint(0)\n```\n\nThe above code is incorrect and got a wrong answer.\n"
                           "Input: [1]\nGenerated Output: 0\nExpected: 1\n### Format: Read the inputs from stdin")
    assert text.endswith("```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided format with backticks)\n\n")
    assert selfrepair.check_message(None) == "" and selfrepair.check_message({}) == ""
    assert selfrepair.check_message({"error_code": -1, "error": "SyntaxError()"}).endswith("compilation error.\n"
                                                                                            "SyntaxError()")
    assert "time limit exceeded.\nTLE\nInput: 5" in selfrepair.check_message(
        {"error_code": -3, "error": "TLE", "inputs": "5", "expected": "6"})
    with pytest.raises(ValueError, match="unknown error_code"):
        selfrepair.check_message({"error_code": -9})


def test_self_repair_asks_only_for_failing_samples_and_keeps_the_passing_ones(tmp_path: Path) -> None:
    problems = load_problems([TINY / "test.jsonl"])
    samples, verdicts, repairs = tmp_path / "samples.jsonl", tmp_path / "verdicts.jsonl", tmp_path / "repairs.jsonl"
    samples.write_text("\n".join(json.dumps(r) for r in [
        {"question_id": "fx-lc-sum", "completions": ["```python\ngood\n```", "```python\nbad\n```"]},
        {"question_id": "fx-lc-order", "completions": [], "error": "refused"},
    ]) + "\n")
    verdicts.write_text("\n".join(json.dumps(r) for r in [
        {"question_id": "fx-lc-sum", "sample": 0, "status": "pass", "reason": "ok"},
        {"question_id": "fx-lc-sum", "sample": 1, "status": "fail", "reason": "exception:WrongAnswer",
         "feedback": {"error_code": -2, "inputs": "[1]", "output": "0", "expected": "1"}},
        {"question_id": "fx-lc-order", "sample": 0, "status": "fail", "reason": "missing"},
    ]) + "\n")
    requests = selfrepair.repair_requests(samples, verdicts, problems)
    assert [ident for ident, _ in requests] == [{"question_id": "fx-lc-sum", "sample": 1}]
    assert "```python\nbad\n```" in requests[0][1] and "Generated Output: 0" in requests[0][1]
    repairs.write_text(json.dumps({"question_id": "fx-lc-sum", "sample": 1, "completions": ["fixed"]}) + "\n")
    counts = selfrepair.assemble(samples, verdicts, repairs, problems, tmp_path / "out.jsonl")
    assert counts == {"problems": 1, "kept": 1, "repaired": 1}
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        {"question_id": "fx-lc-sum", "completions": ["```python\ngood\n```", "fixed"]}]
    repairs.write_text("")
    with pytest.raises(RecordError, match="no repair for 'fx-lc-sum' sample 1"):
        selfrepair.assemble(samples, verdicts, repairs, problems, tmp_path / "out.jsonl")


def test_the_workflow_reads_each_scenarios_settings_over_code_generations() -> None:
    from selfalign.livecodebench import workflow
    from selfalign.livecodebench.codegen import RELEASE_FILES

    lcb = {"revision": "r" * 40, "release": "release_v2", "generation": {"n": 10, "temperature": 0.2},
           "sandbox": {"workers": 2}, "k": [1, 5, 10], "scenarios": ["selfrepair", "codeexecution"],
           "self_repair": {"generation": {"n": 1}},
           "code_execution": {"revision": "e" * 40, "cot": True, "k": [1], "sandbox": {"preload": ["numpy"]}},
           "test_output_prediction": {"files": ["local.jsonl"]}, "start_date": "2024-01-01", "code_block": "last"}
    # self repair needs code generation's samples, so it comes too; LiveCodeBench's order
    assert workflow.scenarios(lcb) == ["codegeneration", "selfrepair", "codeexecution"]
    assert workflow.files(lcb, "selfrepair", RELEASE_FILES) == [f"results/livecodebench/data/{'r' * 40}/test.jsonl",
                                                                f"results/livecodebench/data/{'r' * 40}/test2.jsonl"]
    assert workflow.files(lcb, "codeexecution", RELEASE_FILES) == [f"results/livecodebench/codeexecution-data/{'e' * 40}"]
    assert workflow.files(lcb, "testoutputprediction", RELEASE_FILES) == ["local.jsonl"]
    assert json.loads(workflow.generation(lcb, "selfrepair")) == {"n": 1, "temperature": 0.2}
    assert json.loads(workflow.sandbox(lcb, "codeexecution")) == {"workers": 2, "preload": ["numpy"]}
    assert (workflow.ks(lcb, "codeexecution"), workflow.ks(lcb, "codegeneration")) == ("1", "1 5 10")
    assert (workflow.cot(lcb, "codeexecution"), workflow.cot(lcb, "codegeneration")) == ("--cot", "")
    assert workflow.select(lcb) == "--start-date 2024-01-01 --code-block last"


def test_the_card_table_puts_each_scenario_beside_the_model_card(tmp_path: Path) -> None:
    from selfalign.evaluation.benchmarks import keys
    from selfalign.livecodebench.table import card_table, render

    assert keys("livecodebench") == ("lcb-codegeneration", "lcb-selfrepair", "lcb-testoutputprediction",
                                     "lcb-codeexecution")
    paths = []
    for scenario, passed in (("codeexecution", 0.25), ("codegeneration", 0.5)):
        path = tmp_path / f"{scenario}.json"
        path.write_text(json.dumps({"scenario": scenario, "window": "2 items", "groups": {"all": {
            "problems": 2, "samples_per_problem": 4, "missing": 0, "pass_at_k": {"pass@1": passed}}}}))
        paths.append(path)
    table = card_table(paths)
    assert [(r["scenario"], r["pass@1"], r["card"]) for r in table["rows"]] == [
        ("codegeneration", 50.0, 20.4), ("codeexecution", 25.0, 28.1)]
    assert "| code generation | 2 | 4 | 50.0 | 20.4 | 0 |" in render(table)
    with pytest.raises(ValueError, match="a second summary of codegeneration"):
        card_table([paths[1], paths[1]])
