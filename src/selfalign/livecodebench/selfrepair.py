"""LiveCodeBench self repair: each failing code-generation sample, its failure shown, fixed once.

As LiveCodeBench's runner does it (``run_main_repair`` at its commit 99affe6): for every
code-generation sample of every problem, a sample that passed is kept as it is (no request); a
failing one gets one request (n = 1) whose prompt holds the question, the sample's extracted code
and what went wrong, as the grader reported it (the ``feedback`` of its code-generation verdict:
LiveCodeBench's ``error_code`` -1 compilation, -2 wrong answer with the input, the output and the
expected output, -3 time limit, -4 runtime error). The repaired samples are then one samples line
per problem in code generation's shape, scored by the same grader on the same tests.

A problem without code-generation samples (its request refused) has no repair line: it is scored
as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..records import JsonObj, RecordError, iter_jsonl, write_jsonl
from .codegen import Problem, extract_code

SYSTEM_MESSAGE = (
    "You are a helpful programming assistant and an expert Python programmer. You are helping a user write a "
    "program to solve a problem. The user has written some code, but it has some errors and is not passing the "
    "tests. You will help the user by first giving a concise (at most 2-3 sentences) textual explanation of what "
    "is wrong with the code. After you have pointed out what is wrong with the code, you will then generate a fixed "
    "version of the program. You must put the entired fixed program within code delimiters only for once."
)
FORMATTING_WITHOUT_STARTER_CODE = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows."
)


def check_message(feedback: Mapping[str, Any] | None) -> str:
    """LiveCodeBench's ``get_check_prompt``: what went wrong, in words; "" without an error code."""
    if not feedback or "error_code" not in feedback:
        return ""
    code = feedback["error_code"]
    if code == -1:
        return f"The above code is incorrect and got the following compilation error.\n{feedback.get('error')}"
    if code == -2:
        return (f"The above code is incorrect and got a wrong answer.\nInput: {feedback.get('inputs')}\n"
                f"Generated Output: {feedback.get('output')}\nExpected: {feedback.get('expected')}")
    if code == -3:
        return (f"The above code is incorrect and got time limit exceeded.\n{feedback.get('error')}\n"
                f"Input: {feedback.get('inputs')}\nExpected: {feedback.get('expected')}")
    if code == -4:
        return (f"The above code is incorrect and got a runtime error.\nInput: {feedback.get('inputs')}\n"
                f"Expected: {feedback.get('expected')}\n{feedback.get('error')}")
    raise ValueError(f"unknown error_code {code!r} in a verdict's feedback")


def repair_prompt(problem: Problem, code: str, feedback: Mapping[str, Any] | None) -> str:
    """LiveCodeBench's self-repair prompt for StarCoder2-Instruct (its system message, then the
    generic question template; the question is the statement alone, as LiveCodeBench passes it)."""
    prompt = f"### Question:\n{problem.content}\n\n"
    prompt += f"### Answer:\n```python\n{code}\n```\n\n"
    prompt += check_message(feedback) + "\n"
    prompt += f"### Format: {FORMATTING_WITHOUT_STARTER_CODE}\n"
    prompt += "```python\n# YOUR CODE HERE\n```\n\n"
    prompt += "### Answer: (use the provided format with backticks)\n\n"
    return f"{SYSTEM_MESSAGE}\n{prompt}"


def _codegen(samples: str | Path, verdicts: str | Path, problems: Sequence[Problem]
             ) -> dict[str, list[tuple[str, JsonObj]]]:
    """Per problem with samples: each (completion, its verdict row), in sample order. A verdict
    missing for a sample, or for an unknown problem, is an error naming the file and line."""
    known = {p.question_id for p in problems}
    completions: dict[str, list[str]] = {}
    for lineno, row in iter_jsonl(samples, {"question_id": str}):
        if row["question_id"] not in known:
            raise RecordError(samples, lineno, f"unknown problem {row['question_id']!r}", field="question_id")
        if row.get("completions"):
            completions[row["question_id"]] = list(row["completions"])
    by_sample: dict[tuple[str, int], JsonObj] = {}
    for lineno, row in iter_jsonl(verdicts, {"question_id": str, "sample": int, "status": str}):
        if row["question_id"] not in known:
            raise RecordError(verdicts, lineno, f"unknown problem {row['question_id']!r}", field="question_id")
        by_sample[(row["question_id"], row["sample"])] = row
    out: dict[str, list[tuple[str, JsonObj]]] = {}
    for qid, texts in completions.items():
        pairs = []
        for k, text in enumerate(texts):
            if (qid, k) not in by_sample:
                raise RecordError(verdicts, 0, f"no verdict for {qid!r} sample {k}", field="sample")
            pairs.append((text, by_sample[(qid, k)]))
        out[qid] = pairs
    return out


def repair_requests(samples: str | Path, verdicts: str | Path, problems: Sequence[Problem],
                    code_block: str = "first") -> list[tuple[JsonObj, str]]:
    """(fields, prompt) of every failing code-generation sample, in problem then sample order."""
    found = _codegen(samples, verdicts, problems)
    requests = []
    for problem in problems:
        for k, (text, verdict) in enumerate(found.get(problem.question_id, [])):
            if verdict["status"] != "pass":
                requests.append(({"question_id": problem.question_id, "sample": k},
                                 repair_prompt(problem, extract_code(text, code_block), verdict.get("feedback"))))
    return requests


def assemble(samples: str | Path, verdicts: str | Path, repairs: str | Path, problems: Sequence[Problem],
             out: str | Path) -> dict[str, int]:
    """Write ``out``: per problem with code-generation samples, its samples after repair (a
    passing one as it was, a failing one its repair's completion; a refused repair request
    keeps the problem's line with an empty completion, scored as a failure)."""
    found = _codegen(samples, verdicts, problems)
    repaired: dict[tuple[str, int], str] = {}
    for lineno, row in iter_jsonl(repairs, {"question_id": str, "sample": int}):
        texts = row.get("completions") or [""]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise RecordError(repairs, lineno, "expected a list of strings", field="completions")
        repaired[(row["question_id"], row["sample"])] = texts[0]
    rows, kept, fixed = [], 0, 0
    for problem in problems:
        pairs = found.get(problem.question_id)
        if pairs is None:
            continue
        texts = []
        for k, (text, verdict) in enumerate(pairs):
            if verdict["status"] == "pass":
                texts.append(text)
                kept += 1
            else:
                if (problem.question_id, k) not in repaired:
                    raise RecordError(repairs, 0, f"no repair for {problem.question_id!r} sample {k}", field="sample")
                texts.append(repaired[(problem.question_id, k)])
                fixed += 1
        rows.append({"question_id": problem.question_id, "completions": texts})
    write_jsonl(out, rows)
    return {"problems": len(rows), "kept": kept, "repaired": fixed}
