"""The evaluation prompts equal the strings upstream evaluated StarCoder2-15B-Instruct with."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import shared_data

from selfalign.evaluation.prompts import completion_code, eval_prompt

SYSTEM = (
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate "
    "and reliable responses to user instructions.\n\n"
)


def first_task(name: str) -> dict:
    with gzip.open(shared_data() / "evalplus" / name, "rt") as handle:
        return json.loads(handle.readline())


def test_humaneval_prompt_is_upstreams() -> None:
    task = first_task("HumanEvalPlus-v0.1.9.jsonl.gz")
    body = (
        "from typing import List\n\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
        "    given threshold.\n"
        "    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n"
        "    False\n"
        "    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n"
        "    True\n"
        '    """'
    )
    expected = (
        SYSTEM
        + "### Instruction\nWrite a Python function to solve the given task:\n```python\n"
        + body
        + "\n```\n\n### Response\n\n```python\n"
        + body
    )
    assert eval_prompt("humaneval", task).text == expected


def test_mbpp_prompt_is_upstreams() -> None:
    task = first_task("MbppPlus-v0.1.0.jsonl.gz")
    expected = (
        SYSTEM
        + "### Instruction\nWrite a function to find the shared elements from the given two lists.\n\n"
        "Your code should pass the following assertion:\n```python\n"
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n```\n\n"
        "### Response\n\n```python"
    )
    assert eval_prompt("mbpp", task).text == expected


def test_mbpp_description_gets_a_period_and_every_task_has_a_prompt() -> None:
    task = {"task_id": "Mbpp/x", "prompt": '"""\nWrite a function that adds\nassert add(1, 2) == 3\n"""\n'}
    assert eval_prompt("mbpp", task).instruction.startswith("Write a function that adds.\n\n")
    with gzip.open(shared_data() / "evalplus" / "MbppPlus-v0.1.0.jsonl.gz", "rt") as handle:
        tasks = [json.loads(line) for line in handle]
    assert len({eval_prompt("mbpp", t).text for t in tasks}) == len(tasks) == 399
    with pytest.raises(ValueError, match="no assertion"):
        eval_prompt("mbpp", {"task_id": "Mbpp/y", "prompt": '"""\nno test here\n"""'})
    with pytest.raises(ValueError, match="unknown dataset"):
        eval_prompt("apps", task)


def test_completion_is_cut_at_the_first_fence() -> None:
    assert completion_code("\n    return 1\n```\n\nMore text") == "\n    return 1\n"
    assert completion_code("\n    return 1\n") == "\n    return 1\n"
