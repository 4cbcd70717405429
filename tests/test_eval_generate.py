"""Eval samples: one greedy request per task with upstream's prompt; samples in EvalPlus format."""

from __future__ import annotations

import pytest

from selfalign.evaluation.generate import EvalParams, eval_requests, load_tasks, sample_record
from selfalign.evaluation.prompts import EVAL_STOP, eval_prompt
from selfalign.generation.client import CompletionResult


@pytest.fixture(scope="module")
def params(evalplus_dir) -> EvalParams:
    return EvalParams(limit=3, mirrors=[str(evalplus_dir)])


def test_requests_are_greedy_512_tokens_in_dataset_order(params: EvalParams) -> None:
    tasks = load_tasks("mbpp", params)
    requests = eval_requests("mbpp", tasks, params.sampling())
    assert [r.id for r in requests] == ["Mbpp/2", "Mbpp/3", "Mbpp/4"]
    assert [r.index for r in requests] == [0, 1, 2]
    for request, task in zip(requests, tasks, strict=True):
        assert request.prompt == eval_prompt("mbpp", task).text
        assert request.params.temperature == 0.0 and request.params.max_tokens == 512
        assert request.params.n == 1 and tuple(request.params.stop) == EVAL_STOP


def test_humaneval_solution_is_the_prompt_plus_the_code_before_the_fence(params: EvalParams) -> None:
    task = load_tasks("humaneval", params)[0]
    body = "\n    return any(abs(a - b) < threshold for a in numbers for b in numbers if a is not b)\n"
    result = CompletionResult(0, task["task_id"], [(body + "```\nExplanation", "stop")], {}, 1)
    sample = sample_record("humaneval", task, result)
    assert sample["solution"] == task["prompt"].strip() + body
    assert sample["completion"].endswith("Explanation") and sample["finish_reason"] == "stop"
    compile(sample["solution"], "solution", "exec")


def test_mbpp_solution_is_the_code_alone(params: EvalParams) -> None:
    task = load_tasks("mbpp", params)[0]
    code = "\ndef similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    sample = sample_record("mbpp", task, CompletionResult(0, task["task_id"], [(code, "length")], {}, 1))
    assert sample["solution"] == code and sample["finish_reason"] == "length"


def test_a_refused_request_keeps_its_task_with_an_error(params: EvalParams) -> None:
    task = load_tasks("mbpp", params)[1]
    result = CompletionResult(1, task["task_id"], [], {}, 1, error="400: prompt too long")
    sample = sample_record("mbpp", task, result)
    assert sample == {"task_id": "Mbpp/3", "solution": "", "completion": "", "finish_reason": None,
                      "error": "400: prompt too long"}


def test_params_validate() -> None:
    assert EvalParams().version("humaneval") == "v0.1.9" and EvalParams().version("mbpp") == "v0.1.0"
    with pytest.raises(ValueError, match="limt"):
        EvalParams.from_dict({"limt": 3})
    with pytest.raises(ValueError, match="unknown dataset"):
        EvalParams().version("apps")
