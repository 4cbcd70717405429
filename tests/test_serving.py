"""The CPU completions server and its launcher, driven the way the stages drive them.

A tiny StarCoder2 (random weights, a BPE tokenizer trained here on stdlib sources) is built in
the test, served through :class:`ServerProcess`, and queried with the `openai` client: what the
stages rely on is the wire behaviour, so that is what is checked, not internals.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from selfalign.serving import (
    ServerError,
    ServerProcess,
    api_base,
    cpu_server_command,
    free_port,
    vllm_command,
    wait_ready,
)

pytestmark = pytest.mark.server

MODEL = "tiny-sc2"
CONTEXT = 256
PROMPT = "def add(a, b):\n    return a + b\n\n\ndef "


def build_tiny_model(out: Path) -> Path:
    """A 2-layer StarCoder2 with a 512-token byte-level BPE, deterministic and offline."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Starcoder2Config, Starcoder2ForCausalLM

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / f"{name}.py").read_text(encoding="utf-8") for name in ("bisect", "heapq")]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        model_max_length=CONTEXT,
    )
    eos = tokenizer.eos_token_id
    config = Starcoder2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(0)
    Starcoder2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-sc2"))


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[ServerProcess]:
    launched = ServerProcess.cpu(
        tiny_model, served_model_name=MODEL, threads=1, max_batch=4, slots=2, ready_timeout_s=120
    )
    with launched:
        yield launched


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_base, api_key="none", max_retries=0, timeout=60)


def complete(client: openai.OpenAI, **params: Any) -> Any:
    """One completion with the test defaults (sampling at temperature 1, 24 tokens)."""
    request: dict[str, Any] = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": 24,
        "temperature": 1.0,
        "seed": 7,
    }
    request.update(params)
    return client.completions.create(**request)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


# --- the CPU server, over HTTP -------------------------------------------------------------


def test_models_health_and_response_shape(server: ServerProcess, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert get_json(server.base_url + "/health") == {"status": "ok"}
    raw = post_json(
        server.api_base + "/completions",
        {"model": MODEL, "prompt": PROMPT, "max_tokens": 5, "seed": 1},
    )
    assert set(raw) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    }
    assert set(raw["choices"][0]) == {"index", "text", "finish_reason", "logprobs"}

    response = complete(client, max_tokens=6)
    assert response.id.startswith("cmpl-")
    assert response.object == "text_completion"
    assert isinstance(response.created, int) and response.model == MODEL
    assert response.system_fingerprint and response.system_fingerprint.startswith("fp_cpu_")
    (choice,) = response.choices
    assert choice.index == 0 and choice.logprobs is None and isinstance(choice.text, str)
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert "completion_tokens=" in server.log_tail(), "one log line per request"


def test_n_and_prompt_lists(client: openai.OpenAI) -> None:
    three = complete(client, n=3, max_tokens=8)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len({c.text for c in three.choices}) > 1, "samples of one request must differ"
    listed = complete(client, prompt=[PROMPT, "import heapq\n"], n=2, max_tokens=8)
    assert [c.index for c in listed.choices] == [0, 1, 2, 3]
    # A prompt in a list gets exactly what it would get alone: the same per-sample seeds.
    assert [c.text for c in listed.choices[:2]] == [
        c.text for c in complete(client, n=2, max_tokens=8).choices
    ]


def test_same_seed_same_text_even_under_concurrency(client: openai.OpenAI) -> None:
    """Two slots run requests side by side; no request's text may depend on its neighbours."""
    baseline = complete(client, n=2).choices
    others: list[dict[str, Any]] = [
        {"seed": 99, "prompt": "class Heap:\n", "n": 3},
        {"seed": 5, "temperature": 0.7, "top_p": 0.9, "max_tokens": 40},
        {"seed": 6, "prompt": ["x = 1\n", "y = 2\n"]},
    ]
    jobs = [{"n": 2}, *others, {"n": 2}, *others, {"n": 2}]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda params: complete(client, **params), jobs))
    alone = {i: complete(client, **params) for i, params in enumerate(others)}
    for position, (params, result) in enumerate(zip(jobs, results, strict=True)):
        if params == {"n": 2}:
            assert [c.text for c in result.choices] == [c.text for c in baseline]
        else:
            expected = alone[others.index(params)]
            assert [c.text for c in result.choices] == [c.text for c in expected.choices], position


def test_different_seeds_differ(client: openai.OpenAI) -> None:
    texts = {complete(client, seed=seed).choices[0].text for seed in (1, 2, 3)}
    assert len(texts) == 3


def test_temperature_zero_is_greedy_and_ignores_seed(client: openai.OpenAI) -> None:
    texts = [
        c.text for seed in (1, 2) for c in complete(client, temperature=0, seed=seed, n=2).choices
    ]
    assert len(set(texts)) == 1 and texts[0]


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    response = complete(client, temperature=0, max_tokens=10)
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 10


def test_stop_string_truncates_and_stops_early(client: openai.OpenAI) -> None:
    full = complete(client, seed=11, max_tokens=40).choices[0].text
    candidates = [
        full[i : i + 2] for i in range(len(full) // 3, len(full) - 1) if full[i : i + 2].isalnum()
    ]
    assert candidates, f"no ASCII stop string candidate in {full!r}"
    stop = candidates[0]
    expected = full[: full.find(stop)]
    for form in (stop, [stop, "@@never@@"]):
        response = complete(client, seed=11, max_tokens=40, stop=form)
        (choice,) = response.choices
        assert choice.text == expected and choice.finish_reason == "stop"
        assert response.usage is not None and response.usage.completion_tokens < 40


def test_overlong_prompt_is_a_400_and_the_server_survives(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256"):
        complete(client, prompt="x " * 600)
    with pytest.raises(openai.BadRequestError, match="for the completion"):
        complete(client, max_tokens=CONTEXT)
    with pytest.raises(openai.BadRequestError, match="top_k"):
        complete(client, extra_body={"top_k": 5})
    with pytest.raises(openai.NotFoundError):
        complete(client, model="no-such-model")
    assert complete(client, max_tokens=2).choices[0].text is not None


# --- the generation engine, in process --------------------------------------------------------


def test_eos_ends_a_sample_with_stop(tiny_model: Path) -> None:
    import torch

    from selfalign.serving.cpu_server import Engine, SamplingParams, find_stop, sample_seed

    engine = Engine.load(tiny_model)
    eos = engine.tokenizer.eos_token_id
    with torch.no_grad():  # make every hidden state e_0 and EOS the only token scoring on it
        engine.model.model.norm.weight.zero_()
        engine.model.model.norm.bias.zero_()
        engine.model.model.norm.bias[0] = 1.0
        engine.model.lm_head.weight[eos, 0] = 50.0
    params = SamplingParams(max_tokens=10, temperature=0.0, top_p=1.0, seed=0)
    (sample,) = engine.generate(engine.encode(PROMPT), 1, params)
    assert (sample.text, sample.finish_reason, sample.completion_tokens) == ("", "stop", 1)
    assert find_stop("a## Example\nb\n", ["\n", "## Example"]) == 1
    assert sample_seed(3408, 0) != sample_seed(3407, 1)


# --- the launcher -------------------------------------------------------------------------


def test_existing_endpoint_is_only_waited_for(server: ServerProcess) -> None:
    with ServerProcess(None, server.api_base, ready_timeout_s=10) as existing:
        assert existing.api_base == server.api_base and existing.process is None
    assert wait_ready(server.base_url, 10) < 10
    assert server.process is not None and server.process.poll() is None


def test_command_that_exits_at_once_fails_fast_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('boom: no such model'); sys.exit(3)"]
    started = time.monotonic()
    port = free_port()
    with pytest.raises(ServerError) as caught:
        ServerProcess(command, f"http://127.0.0.1:{port}", log_path=tmp_path / "log").start()
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "exited with code 3" in message and "boom: no such model" in message
    assert shlex.join(command) in message and f"127.0.0.1:{port}/v1/models" in message
    assert caught.value.returncode == 3


def test_server_that_never_gets_ready_is_killed_after_the_timeout(tmp_path: Path) -> None:
    script = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('pid', os.getpid(), flush=True); time.sleep(60)"
    )
    started = time.monotonic()
    process = ServerProcess(
        [sys.executable, "-c", script],
        f"http://127.0.0.1:{free_port()}",
        ready_timeout_s=1.5,
        grace_s=0.5,
        poll_interval_s=0.1,
        log_path=tmp_path / "log",
    )
    with pytest.raises(ServerError, match="within the 1.5 s timeout") as caught:
        process.start()
    assert 1.5 <= time.monotonic() - started < 10
    pid = int(caught.value.log_tail.split()[1])
    with pytest.raises(ProcessLookupError):  # SIGTERM was ignored, so SIGKILL ended it
        os.kill(pid, 0)


def test_process_lifecycle_with_a_stand_in_server(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text('{"object": "list", "data": []}')
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    launched = ServerProcess(command, f"http://127.0.0.1:{port}/v1/", cwd=tmp_path)
    with launched:
        assert launched.process is not None
        pid, log = launched.process.pid, launched.log_path
        assert get_json(launched.api_base + "/models") == {"object": "list", "data": []}
    assert launched.process is None and launched.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert log is not None and not log.exists(), "a temporary log goes away on a clean exit"
    with pytest.raises(ServerError, match="did not answer"):
        wait_ready(f"http://127.0.0.1:{port}", 0.5, interval_s=0.1)


def test_a_server_dies_with_a_job_killed_by_sigkill(tmp_path: Path) -> None:
    """The server runs in its own session (out of reach of a kill aimed at the job's group):
    when the job that started it is SIGKILLed, the server must still go, not linger."""
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text('{"object": "list", "data": []}')
    port = free_port()
    job = textwrap.dedent(
        f"""
        import sys, time
        from selfalign.serving.launch import ServerProcess
        command = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
        server = ServerProcess(command, "http://127.0.0.1:{port}", cwd={str(tmp_path)!r}).start()
        print(server.process.pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", job], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    server_pid = int(proc.stdout.readline())
    os.kill(server_pid, 0)  # running
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(server_pid, os.WNOHANG)
        time.sleep(0.1)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the server outlived the job that started it")


def test_command_lines() -> None:
    assert vllm_command("bigcode/starcoder2-15b", "abc123", 8001, ["--dtype", "bfloat16"]) == [
        "vllm", "serve", "bigcode/starcoder2-15b", "--revision", "abc123",
        "--host", "127.0.0.1", "--port", "8001", "--seed", "0", "--dtype", "bfloat16",
    ]  # fmt: skip
    command = cpu_server_command("/m", 9, served_model_name="m", threads=2, max_batch=4)
    assert command[:3] == [sys.executable, "-m", "selfalign.serving.cpu_server"]
    assert command[3:] == [
        "--model", "/m", "--host", "127.0.0.1", "--port", "9",
        "--served-model-name", "m", "--threads", "2", "--max-batch", "4",
    ]  # fmt: skip
    assert api_base("http://h:1/") == api_base("http://h:1/v1") == "http://h:1/v1"
