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


def test_the_release_bos_goes_before_every_prompt_once() -> None:
    """llm_wrapper.py at 0b19dbc encoded eval prompts with add_bos=True: one BOS first when the
    tokenizer has one. Over the completions API: the BOS text for a tokenizer that does not add
    it itself, nothing for one that does or has none."""
    from tokenizers import processors

    from selfalign.evaluation.generate import bos_prefix
    from selfalign.tinymodel import train_tokenizer

    tokenizer = train_tokenizer(["def f(x):\n    return x\n"] * 20, vocab_size=300, model_max_length=512)
    prefix = bos_prefix(tokenizer)
    assert prefix == tokenizer.bos_token and prefix
    ids = tokenizer(prefix + "def f", add_special_tokens=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    requests = eval_requests("humaneval", [{"task_id": "HumanEval/0", "prompt": "def f():\n    pass\n",
                                            "entry_point": "f"}], EvalParams().sampling(), prefix)
    assert requests[0].prompt.startswith(prefix + "You are an exceptionally intelligent")

    adds = train_tokenizer(["def f(x):\n    return x\n"] * 20, vocab_size=300, model_max_length=512)
    bos = adds.bos_token
    adds.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, adds.bos_token_id)]
    )
    assert bos_prefix(adds) == ""  # the server's tokenizer adds it: not twice

    adds.bos_token = None
    assert bos_prefix(adds) == ""  # no BOS at all (Qwen2.5-Coder): the release added none either
