"""DS-1000: its problems, the release's Completion-mode prompt, post-processing and the check program.

Problems are rows of ``xlangai/DS-1000`` (its ``test.jsonl``, the "simplified" format of April
2024: ``prompt``, ``reference_code``, ``metadata`` with ``problem_id``, ``library``,
``perturbation_type``, ... and ``code_context``, which defines ``test_execution(solution)`` and
sometimes ``test_string(solution)``), read through ``datasets``.

The prompt is the release's (starcoder2-self-align ``evaluation/ds_1000.py`` at d7b96df, Completion
mode): a DS-1000 prompt is split into an instruction (the problem, ``<code>`` blocks as fenced
Python) and a response prefix (the problem's code so far and a ``# Solution`` line) for the
SC2-Instruct template; my own port of its ``preprocess_completion_prompt``, which handles the
three shapes DS-1000's prompts take (a ``BEGIN SOLUTION`` block, a function to complete with
``### BEGIN SOLUTION``, a Matplotlib script ending ``# SOLUTION START``). A prompt of none of these
shapes is an error naming the problem (the release's asserts stopped its run there). A completion
is cut at its first fence (its ``postprocess``); the check program is ``code_context`` followed by
``test_execution(code)`` (and ``test_string(code)`` where the context defines it), as DS-1000's
own test script builds it; it runs in the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .prompt_template import SC2_INSTRUCT_PROMPT
from .records import FirstSeen, RecordError, dataset_file_rows

DATASET = "xlangai/DS-1000"
LIBRARIES = ("Numpy", "Pandas", "Scipy", "Matplotlib", "Sklearn", "Pytorch", "Tensorflow")
#: Seconds for one problem's check (DS-1000's test script: ``check_correctness(..., timeout=120)``).
CHECK_TIMEOUT_S = 120


class PromptShapeError(ValueError):
    """A DS-1000 prompt in none of the shapes the release's Completion mode converts."""


@dataclass(frozen=True)
class Problem:
    problem_id: int
    library: str
    perturbation_type: str
    prompt: str
    reference_code: str
    code_context: str


def problem_from_row(row: Mapping[str, Any], path: str = "<rows>", lineno: int = 0) -> Problem:
    """One published row as a :class:`Problem`; a missing or malformed field is named."""
    for name in ("prompt", "reference_code", "code_context"):
        if not isinstance(row.get(name), str):
            raise RecordError(path, lineno, "missing, or not a string", field=name)
    metadata = row.get("metadata")
    if not isinstance(metadata, Mapping):
        raise RecordError(path, lineno, "missing, or not an object", field="metadata")
    problem_id = metadata.get("problem_id")
    if not isinstance(problem_id, int) or isinstance(problem_id, bool):
        raise RecordError(path, lineno, "missing, or not an integer", field="metadata.problem_id")
    if metadata.get("library") not in LIBRARIES:
        raise RecordError(path, lineno, f"not one of {', '.join(LIBRARIES)}", field="metadata.library")
    if "def test_execution(" not in row["code_context"]:
        raise RecordError(path, lineno, "defines no test_execution(solution)", field="code_context")
    return Problem(problem_id, metadata["library"], str(metadata.get("perturbation_type", "")), row["prompt"],
                   row["reference_code"], row["code_context"])


def load_problems(files: Sequence[str | Path]) -> list[Problem]:
    """Every problem of the given ``test.jsonl`` files, in file order, through ``datasets``; a
    duplicate ``problem_id`` is an error."""
    problems: list[Problem] = []
    seen = FirstSeen()
    for path, lineno, row in dataset_file_rows(files):
        problem = problem_from_row(row, path, lineno)
        seen.add(problem.problem_id, path, lineno, "metadata.problem_id", f"problem_id {problem.problem_id}")
        problems.append(problem)
    return problems


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise PromptShapeError(what)


def completion_prompt(prompt: str) -> tuple[str, str]:
    """The release's Completion-mode split of a DS-1000 prompt: (instruction, response prefix)."""
    if "SOLUTION START" in prompt:
        # a Matplotlib script to continue
        _require("<code>" not in prompt and "</code>" not in prompt, "a SOLUTION START prompt with <code> blocks")
        _require(prompt.strip().endswith("# SOLUTION START"), "a SOLUTION START prompt that goes on after it")
        code = prompt[: prompt.rindex("# SOLUTION START")].strip()
        instruction = f"Write a solution to the following problem:\n```python\n{code}\n```"
        response = f"```python\n{code}\n# Solution\n"
    else:
        _require("A:" in prompt, "no 'A:' before the answer")
        at = prompt.rindex("A:")
        answer = prompt[at + 2 :].strip()
        instruction = prompt[:at].strip()
        if instruction.startswith("Problem:"):
            instruction = instruction[len("Problem:") :].strip()
        lines = answer.splitlines(keepends=True)
        if "### BEGIN SOLUTION" in prompt:
            # a function to complete: its last lines are "# return ...", "# ...", "### BEGIN SOLUTION"
            _require(prompt.count("<code>") == 1 and prompt.count("</code>") == 0,
                     "a ### BEGIN SOLUTION prompt without exactly one open <code>")
            _require(len(lines) >= 3, "a ### BEGIN SOLUTION answer of fewer than 3 lines")
            returns, result, begin = lines[-3:]
            _require(returns.strip().startswith("# return") and result.strip().startswith("# ")
                     and begin.strip() == "### BEGIN SOLUTION", "a function prompt not ending as DS-1000's do")
            response = "".join(lines[:-3]).strip()
            response += "\n" + begin.replace("###", "#").replace("BEGIN SOLUTION", "Solution") + "\n"
        else:
            # a <code> block, a line saying where the solution goes, "BEGIN SOLUTION", an open <code>
            _require("BEGIN SOLUTION" in prompt, "no BEGIN SOLUTION")
            _require(prompt.count("<code>") == 2 and prompt.count("</code>") == 1,
                     "a BEGIN SOLUTION prompt without two <code> and one </code>")
            first_end = prompt.index("</code>")
            _require(first_end < prompt.index("<code>", prompt.index("<code>") + 1),
                     "a BEGIN SOLUTION prompt whose blocks overlap")
            _require(len(lines) >= 4, "a BEGIN SOLUTION answer of fewer than 4 lines")
            block_end, middle, begin, block_start = lines[-4:]
            _require(begin.strip() == "BEGIN SOLUTION" and block_start.strip() == "<code>",
                     "a BEGIN SOLUTION prompt not ending 'BEGIN SOLUTION', '<code>'")
            if block_end.strip() == "</code>":
                prefix, starting = lines[:-4], lines[-3:-2]
            elif len(lines) >= 6 and lines[-6].strip() == "</code>":
                prefix, starting = lines[:-6], lines[-5:-2]
            else:
                _require(middle.strip() == "</code>", "no </code> where DS-1000's prompts close the block")
                prefix, starting = lines[:-3], []
            response = "".join([*prefix, *(f"# {line.lstrip()}" for line in starting)]).strip()
            response += "\n# Solution\n"
    fence = {"<code>": "```python", "</code>": "```"}
    for tag, replacement in fence.items():
        instruction = instruction.replace(tag, replacement)
        response = response.replace(tag, replacement)
    return instruction, response


def build_prompt(problem: Problem, template: str = SC2_INSTRUCT_PROMPT) -> str:
    """The text the release sent for a problem: the template with the instruction and the
    response prefix; a prompt of an unknown shape names the problem."""
    try:
        instruction, response = completion_prompt(problem.prompt)
    except PromptShapeError as exc:
        raise PromptShapeError(f"DS-1000 problem {problem.problem_id} ({problem.library}): {exc}") from None
    return template.format(instruction=instruction, response=response)


def postprocess(completion: str) -> str:
    """The release's ``postprocess``: the completion up to its first fence."""
    return completion.split("```")[0]


def check_program(problem: Problem, code: str) -> str:
    """The program that passes only if ``code`` solves the problem: its ``code_context``, then
    ``test_execution(code)``, and ``test_string(code)`` where the context defines it."""
    program = f"{problem.code_context}\ncode = {code!r}\ntest_execution(code)\n"
    if "test_string(" in problem.code_context:
        program += "test_string(code)\n"
    return program
