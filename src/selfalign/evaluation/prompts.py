"""The text-to-code prompts StarCoder2-15B-Instruct-v0.1 was evaluated with, byte for byte.

Upstream (``evaluation/text2code.py`` with ``SC2_INSTRUCT_PROMPT``) turns each EvalPlus task into
an instruction and a *response prefix*, fills the instruction template with both, and lets the
model continue greedily (512 new tokens) until ``\\n```````. The completion is cut at its first
```` ``` ```` and EvalPlus scores ``task prompt + completion``.

* HumanEval: the instruction is "Write a Python function to solve the given task:" and the
  stripped task prompt in a python block; the response opens a python block and repeats the
  task prompt, so the model continues inside the function.
* MBPP: the description (everything in the docstring before its first ``assert``, with a final
  period added when missing) plus "Your code should pass the following assertion:" and the
  assertion in a python block; the response opens an empty python block.

The template does not end with a newline, so upstream put one at the start of each response
prefix: the prompt holds a blank line after ``### Response``. That is kept, as it is what the
published scores were measured with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The instruction template the model was trained and is evaluated with (one definition).
from ..prompt_template import SC2_INSTRUCT_PROMPT

#: Where greedy generation stops; the completion is then cut at its first fence.
EVAL_STOP = ("\n```",)

HUMANEVAL_HEADER = "Write a Python function to solve the given task:"
MBPP_ASSERTION_HEADER = "Your code should pass the following assertion:"


@dataclass(frozen=True)
class EvalPrompt:
    """One task's prompt: ``text`` is what the model continues."""

    task_id: str
    instruction: str
    response_prefix: str

    @property
    def text(self) -> str:
        return SC2_INSTRUCT_PROMPT.format(
            instruction=self.instruction, response=self.response_prefix
        )


def _prefix_newline() -> str:
    return "" if SC2_INSTRUCT_PROMPT.endswith("\n") else "\n"


def _field(task: Mapping[str, Any], name: str) -> str:
    value = task.get(name)
    if not isinstance(value, str):
        raise ValueError(f"task {task.get('task_id')!r}: field {name!r} must be a string")
    return value


def humaneval_prompt(task: Mapping[str, Any]) -> EvalPrompt:
    """The prompt for one HumanEval(+) task (fields ``task_id``, ``prompt``)."""
    prompt = _field(task, "prompt").strip()
    return EvalPrompt(
        task_id=_field(task, "task_id"),
        instruction=f"{HUMANEVAL_HEADER}\n```python\n{prompt}\n```",
        response_prefix=f"{_prefix_newline()}```python\n{prompt}",
    )


def mbpp_prompt(task: Mapping[str, Any]) -> EvalPrompt:
    """The prompt for one MBPP(+) task, whose ``prompt`` is a docstring holding the description
    and the first test assertion."""
    text = _field(task, "prompt")
    try:
        start, end = text.index('"""'), text.rindex('"""')
    except ValueError:
        raise ValueError(f"task {task.get('task_id')!r}: prompt has no docstring") from None
    body = text[start + 3 : end]
    if "assert" not in body:
        raise ValueError(f"task {task.get('task_id')!r}: prompt has no assertion")
    cut = body.index("assert")
    description = body[:cut].strip()
    if not description.endswith("."):
        description += "."
    assertion = body[cut:].strip()
    return EvalPrompt(
        task_id=_field(task, "task_id"),
        instruction=f"{description}\n\n{MBPP_ASSERTION_HEADER}\n```python\n{assertion}\n```",
        response_prefix=f"{_prefix_newline()}```python",
    )


def eval_prompt(dataset: str, task: Mapping[str, Any]) -> EvalPrompt:
    if dataset == "humaneval":
        return humaneval_prompt(task)
    if dataset == "mbpp":
        return mbpp_prompt(task)
    raise ValueError(f"unknown dataset {dataset!r}: expected humaneval or mbpp")


def completion_code(completion: str) -> str:
    """The part of a generated completion EvalPlus scores: everything before the first fence."""
    index = completion.find("```")
    return completion if index == -1 else completion[:index]
