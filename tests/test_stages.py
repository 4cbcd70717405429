"""The generation stages (judge, S->C, C->I, I->R) against a scripted completions server.

The server is a stdlib ``ThreadingHTTPServer`` whose answer to each request comes from a
function of the request body, so each test states what the "model" says and checks what the
stage makes of it: which records come out, which are dropped and why, what the prompts and
seeds were (the upstream ones for the record's global index), and that sharding, killing and
resuming change none of it. Real records: stdlib functions with docstrings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data, stdlib_functions

from selfalign.fetch import FetchError
from selfalign.generation.client import ServerNotReadyError
from selfalign.generation.judge import JUDGE_DUMMY_CODE, judge_prompt
from selfalign.generation.prompts import (
    concepts_prompt,
    instruction_prompt,
    load_tiny_fewshot,
    response_prompt,
)
from selfalign.generation.stages import FewshotSource, StageSettings, run_stage
from selfalign.records import RecordError, read_jsonl, write_jsonl
from selfalign.serving.launch import ServerError

pytestmark = pytest.mark.timeout(120)

Answer = Callable[[dict[str, Any]], tuple[int, Any]]


class Scripted:
    """An OpenAI completions endpoint whose answers come from ``answer(body)``."""

    def __init__(self, answer: Answer, latency_s: float = 0.0) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with scripted.lock:
                    scripted.bodies.append(body)
                time.sleep(scripted.latency_s)
                status, payload = scripted.answer(body)
                self._send(status, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def prompts(self) -> list[str]:
        return [b["prompt"] for b in self.bodies]


def completion(body: dict[str, Any], texts: list[tuple[str, str]]) -> tuple[int, Any]:
    choices = [{"index": j, "text": t, "finish_reason": r, "logprobs": None} for j, (t, r) in enumerate(texts)]
    usage = {"prompt_tokens": 10, "completion_tokens": 5 * len(texts), "total_tokens": 10 + 5 * len(texts)}
    return 200, {"id": "x", "object": "text_completion", "created": 0, "model": body["model"], "choices": choices, "usage": usage}


def settings(**generation: Any) -> StageSettings:
    return StageSettings.from_dict(
        {
            "model": {"name": "tiny", "revision": None},
            "serving": {
                "backend": "endpoint",
                "served_model_name": "tiny",
                "endpoint": "http://127.0.0.1:1",
                "ready_timeout_s": 3,
            },
            "client": {
                "max_concurrency": 3,
                "requests_per_unit": 2,
                "max_retries": 4,
                "backoff_initial_s": 0.01,
                "backoff_max_s": 0.05,
                "ready_timeout_s": 5,
                "request_timeout_s": 10,
            },
            "generation": {"fewshot": {"source": "tiny"}, "limit": None, "judge_overlong": "server", **generation},
        }
    )


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    path = tmp_path / "seeds.jsonl"
    write_jsonl(path, stdlib_functions()[:9])
    return path


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    made: list[Scripted] = []

    def make(answer: Answer, latency_s: float = 0.0) -> Scripted:
        made.append(Scripted(answer, latency_s))
        return made[-1]

    yield make
    for server in made:
        server.close()


# ------------------------------------------------------------------------------------ judge


def test_judge_keeps_yes_drops_no_and_ties_with_upstream_prompts(
    seeds: Path, tmp_path: Path, scripted: Callable[..., Scripted]
) -> None:
    records = read_jsonl(seeds)
    verdicts = [" Yes", " No", " yes, no", " Yes", " Not sure", " YES"] + [" Yes"] * 3
    by_prompt = {judge_prompt(r["content"], i).prompt: verdicts[i] for i, r in enumerate(records)}
    server = scripted(lambda body: completion(body, [(by_prompt[body["prompt"]], "length")]))
    out = tmp_path / "judged.jsonl"

    stats = run_stage("judge", seeds, out, settings(limit=6), base_url=server.url, show_progress=False)

    kept = read_jsonl(out)
    assert [r["id"] for r in kept] == [records[i]["id"] for i in (0, 3, 5)]
    assert dict(stats.drops) == {"judge_no": 2, "judge_tie": 1}
    assert (stats.n_in, stats.n_out) == (6, 3)
    assert stats.extra["records_beyond_limit"] == 3
    # The upstream request: temperature 0, 5 tokens, stop at newline, seed 42 + index.
    body = server.bodies[0]
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.0, 5, ["\n"])
    assert sorted(b["seed"] for b in server.bodies) == [42 + i for i in range(6)]
    assert kept[1]["generation"]["judge"] == {
        "index": 3,
        "seed": 45,
        "fewshot": list(judge_prompt(records[3]["content"], 3).shots),
        "answer": " Yes",
        "yes": 1,
        "no": 0,
    }
    assert kept[1]["content"] == records[3]["content"]


def test_an_overlong_judge_prompt_takes_the_dummy_verdict_as_in_the_release(
    seeds: Path, tmp_path: Path, scripted: Callable[..., Scripted]
) -> None:
    """filter_dataset.py at 0b19dbc: code whose prompt would exceed 16,380 tokens is judged as
    its dummy function, and the record keeps the dummy's verdict; ``drop`` drops it instead."""
    records = read_jsonl(seeds)
    long_id = records[2]["id"]

    def count(text: str) -> int:  # a stand-in tokenizer: 1 token per char, record 2 is huge
        return 20_000 if text == records[2]["content"] else len(text) // 4

    dummy = judge_prompt(JUDGE_DUMMY_CODE, 2).prompt
    server = scripted(lambda body: completion(body, [(" Yes" if body["prompt"] == dummy else " No", "stop")]))
    out = tmp_path / "judged.jsonl"
    config = settings(limit=4, judge_overlong="dummy")
    stats = run_stage("judge", seeds, out, config, base_url=server.url, show_progress=False, token_counter=count)
    [kept] = read_jsonl(out)
    assert kept["id"] == long_id and kept["content"] == records[2]["content"]
    assert kept["generation"]["judge"]["dummy_prompt"] is True
    assert dummy in [b["prompt"] for b in server.bodies]
    assert stats.extra["judge_dummy_prompts"] == 1 and dict(stats.drops) == {"judge_no": 3}

    dropped = run_stage(
        "judge", seeds, tmp_path / "dropped.jsonl", settings(limit=4, judge_overlong="drop"),
        base_url=server.url, show_progress=False, token_counter=count,
    )
    assert dict(dropped.drops) == {"judge_no": 3, "prompt_too_long": 1}
    with pytest.raises(ValueError, match="judge_overlong"):
        settings(judge_overlong="truncate")


# ------------------------------------------------------------------ concepts, global indices


def test_shards_prompt_with_the_global_index_and_concatenate_to_the_unsharded_run(
    seeds: Path, tmp_path: Path, scripted: Callable[..., Scripted]
) -> None:
    fewshot = load_tiny_fewshot()
    server = scripted(lambda body: completion(body, [(f" concept-{body['seed']}, loops \n", "stop")]))
    whole = tmp_path / "whole.jsonl"
    run_stage("concepts", seeds, whole, settings(), base_url=server.url, show_progress=False)
    parts = []
    for shard in range(3):
        part = tmp_path / f"part-{shard}.jsonl"
        run_stage("concepts", seeds, part, settings(), shard=shard, num_shards=3, base_url=server.url, show_progress=False)
        parts.append(part.read_bytes())
    assert b"".join(parts) == whole.read_bytes()

    records = read_jsonl(seeds)
    expected = {concepts_prompt(fewshot, r["content"], i).prompt for i, r in enumerate(records)}
    assert set(server.prompts()) == expected
    out = read_jsonl(whole)
    assert [r["concepts"] for r in out] == [[f"concept-{3407 + i}", "loops"] for i in range(len(records))]
    assert out[4]["generation"]["concepts"]["seed"] == 3407 + 4
    assert out[4]["generation"]["concepts"]["fewshot"] == list(concepts_prompt(fewshot, records[4]["content"], 4).shots)
    body = server.bodies[0]
    assert (body["temperature"], body["max_tokens"], body["n"], body["stop"]) == (0.7, 1536, 1, ["## Example"])


def test_unparsable_completions_are_counted_not_fatal(
    seeds: Path, tmp_path: Path, scripted: Callable[..., Scripted]
) -> None:
    def answer(body: dict[str, Any]) -> tuple[int, Any]:
        index = body["seed"] - 3407
        if index == 1:
            return completion(body, [("cut off in the midd", "length")])
        if index == 2:
            return completion(body, [("  \n ", "stop")])
        if index == 3:
            return 400, {"error": {"message": "prompt too long", "type": "BadRequestError"}}
        return completion(body, [("a, b", "stop")])

    server = scripted(answer)
    out = tmp_path / "concepts.jsonl"
    stats = run_stage("concepts", seeds, out, settings(), base_url=server.url, show_progress=False)
    assert dict(stats.drops) == {"parse_unfinished": 1, "parse_empty": 1, "request_failed": 1}
    assert stats.n_out == 6 and len(read_jsonl(out)) == 6
    assert stats.extra["finish_reasons"] == {"length": 1, "stop": 7}
    assert stats.extra["errors"] == 1


def test_server_errors_are_retried_until_it_recovers(
    seeds: Path, tmp_path: Path, scripted: Callable[..., Scripted]
) -> None:
    seen: Counter[int] = Counter()

    def answer(body: dict[str, Any]) -> tuple[int, Any]:
        seen[body["seed"]] += 1
        if seen[body["seed"]] <= 2:
            return 500, {"error": {"message": "warming up", "type": "InternalServerError"}}
        return completion(body, [("x, y", "stop")])

    server = scripted(answer)
    out = tmp_path / "concepts.jsonl"
    stats = run_stage("concepts", seeds, out, settings(), base_url=server.url, show_progress=False)
    assert stats.n_out == 9 and not stats.drops
    assert stats.extra["retries"] == 18 and stats.extra["errors"] == 0


# ------------------------------------------------------------------- instructions, responses


def test_instructions_sample_the_property_from_the_record_seed(tmp_path: Path, scripted: Callable[..., Scripted]) -> None:
    concepts = tmp_path / "concepts.jsonl"
    write_jsonl(concepts, [{"id": f"c{i}", "concepts": ["recursion", f"idea {i}"]} for i in range(5)])
    server = scripted(lambda body: completion(body, [(" Write a function.\n", "stop")]))
    out = tmp_path / "instructions.jsonl"
    run_stage("instructions", concepts, out, settings(), base_url=server.url, show_progress=False)
    fewshot = load_tiny_fewshot()
    for i, record in enumerate(read_jsonl(out)):
        expected = instruction_prompt(fewshot, ["recursion", f"idea {i}"], i)
        assert record["instruction"] == "Write a function."
        assert record["property"] == expected.property.to_json()  # type: ignore[union-attr]
        assert expected.prompt in server.prompts()


def test_responses_keep_parsable_samples_and_count_the_rest(tmp_path: Path, scripted: Callable[..., Scripted]) -> None:
    instructions = tmp_path / "instructions.jsonl"
    write_jsonl(instructions, [{"id": f"i{i}", "instruction": f"Task {i}"} for i in range(3)])

    def answer(body: dict[str, Any]) -> tuple[int, Any]:
        index = body["seed"] - 3407
        if index == 1:  # every sample unfinished
            return completion(body, [("partial", "length")] * body["n"])
        texts = [(f"[Reasoning] r{j}", "stop") for j in range(body["n"])]
        texts[2] = ("partial", "length")
        return completion(body, texts)

    server = scripted(answer)
    out = tmp_path / "responses.jsonl"
    stats = run_stage("responses", instructions, out, settings(responses={"n": 4}), base_url=server.url, show_progress=False)
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["i0", "i2"]
    assert [s["sample"] for s in records[0]["responses"]] == [0, 1, 3]
    assert records[0]["responses"][1]["response"] == "[Reasoning] r1"
    assert dict(stats.drops) == {"no_response": 1}
    assert stats.extra["samples"] == 12 and stats.extra["samples_kept"] == 6
    assert stats.extra["sample_drops"] == {"parse_unfinished": 6}
    fewshot = load_tiny_fewshot()
    assert response_prompt(fewshot, "Task 2", 2).prompt in server.prompts()
    assert {b["n"] for b in server.bodies} == {4}


# --------------------------------------------------------------------------- bad input, server


def test_a_record_without_its_field_stops_with_file_and_line(tmp_path: Path, scripted: Callable[..., Scripted]) -> None:
    path = tmp_path / "instructions.jsonl"
    write_jsonl(path, [{"id": "a", "instruction": "x"}, {"id": "b", "prompt": "y"}])
    server = scripted(lambda body: completion(body, [("r", "stop")]))
    with pytest.raises(RecordError) as caught:
        run_stage("responses", path, tmp_path / "out.jsonl", settings(), base_url=server.url, show_progress=False)
    assert f"{path}:2" in str(caught.value) and "instruction" in str(caught.value)


def test_an_endpoint_that_never_answers_fails_in_bounded_time(seeds: Path, tmp_path: Path) -> None:
    config = settings()
    started = time.monotonic()
    with pytest.raises((ServerNotReadyError, ServerError)) as caught:
        run_stage("concepts", seeds, tmp_path / "out.jsonl", config, show_progress=False)
    assert time.monotonic() - started < 30
    assert "127.0.0.1:1" in str(caught.value)


def test_a_vllm_that_cannot_start_says_which_command(seeds: Path, tmp_path: Path) -> None:
    data = {
        "model": {"name": "bigcode/starcoder2-15b", "revision": "abc123"},
        "serving": {
            "backend": "vllm",
            "served_model_name": "sc2",
            "ready_timeout_s": 20,
            "vllm": {"launcher": ["/nonexistent/launcher"], "args": ["--dtype", "bfloat16"]},
        },
        "client": {},
        "generation": {"fewshot": {"source": "tiny"}, "limit": None},
    }
    with pytest.raises(ServerError) as caught:
        run_stage("concepts", seeds, tmp_path / "out.jsonl", StageSettings.from_dict(data), show_progress=False)
    message = str(caught.value)
    assert "/nonexistent/launcher vllm serve bigcode/starcoder2-15b --revision abc123" in message


def test_upstream_fewshot_comes_from_a_mirror_by_sha256(tmp_path: Path) -> None:
    mirror = shared_data() / "upstream"
    good = FewshotSource.from_dict(
        {
            "source": "upstream",
            "url": "https://example.invalid/prompts/self-ossinstruct-fewshot.txt",
            "sha256": "828e833f7c90d12e8163d889c0245ffb45ef4937d36abf1f66ddac566ac30a5b",
            "mirrors": [str(mirror)],
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    assert len(good.load().examples) == 16
    bad = FewshotSource.from_dict({**good.__dict__, "mirrors": [str(mirror)], "sha256": "0" * 64})
    with pytest.raises(FetchError):
        bad.load()


# ------------------------------------------------------------------------------ kill, resume


def test_a_killed_stage_resumes_without_loss_or_duplicates(
    seeds: Path, tmp_path: Path, scripted: Callable[..., Scripted]
) -> None:
    server = scripted(lambda body: completion(body, [(f"c{body['seed']}", "stop")]), latency_s=0.15)
    params = json.dumps(
        {
            "model": {"name": "tiny", "revision": None},
            "serving": {"backend": "endpoint", "served_model_name": "tiny", "endpoint": server.url},
            "client": {"max_concurrency": 1, "requests_per_unit": 2, "ready_timeout_s": 5},
            "generation": {"fewshot": {"source": "tiny"}, "limit": None},
        }
    )
    out = tmp_path / "concepts.jsonl"
    command = [sys.executable, "-m", "selfalign.cli", "generate", "concepts", "--params", params]
    command += ["--input", str(seeds), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(server.bodies) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert not out.exists()
    sent_before = len(server.bodies)

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in read_jsonl(seeds)]
    assert [r["concepts"] for r in records] == [[f"c{3407 + i}"] for i in range(9)]
    # Units of two finished before the kill were not asked again.
    assert len(server.bodies) - sent_before <= 9 - 4
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["counts"] == {"in": 9, "out": 9, "dropped": 0}
    assert meta["stats"]["units_resumed"] >= 2
