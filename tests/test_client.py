"""The completions client against a fake OpenAI-compatible server whose every answer we script.

The fake server is a small HTTP/1.1 server on ``asyncio`` streams (not FastAPI) because some
faults need the raw socket: closing a connection without any response is one of them. It runs
its own event loop in a thread on a free loopback port, so the client under test runs exactly
as in a stage (``asyncio.run`` in the calling thread, real sockets, the real ``openai``
package). Its answers are a pure function of the request, so the expected output is known.
"""

from __future__ import annotations

import asyncio
import http
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from selfalign.generation.client import (
    ClientParams,
    CompletionRequest,
    CompletionResult,
    GenerationError,
    SamplingParams,
    ServerNotReadyError,
    backoff_delay,
    complete_all,
    run_generation,
    run_generation_async,
    wait_for_server,
)
from selfalign.records import read_jsonl
from selfalign.runtime import StageStats

pytestmark = [pytest.mark.timeout(120), pytest.mark.server]

REPO = Path(__file__).resolve().parents[1]

# A scripted fault for one call: an HTTP status to answer with, "close" to drop the connection
# without a response, "short" to answer one choice short, or a float: sleep that long, then
# answer normally.
Fault = int | str | float


@dataclass
class Call:
    prompt: str
    started: float
    body: dict[str, Any] = field(default_factory=dict)
    ended: float = 0.0
    outcome: str = ""


@dataclass
class FakeServer:
    """A scriptable ``/v1/models`` + ``/v1/completions`` server (see the module docstring)."""

    latency: dict[str, float] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    models: list[str] = field(default_factory=lambda: ["fake"])
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        opening = asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def reset_log(self) -> None:
        self.calls = []
        self.max_in_flight = 0

    def prompts_seen(self) -> Counter[str]:
        return Counter(call.prompt for call in self.calls)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (line.split(":", 1) for line in head[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = await self._route(method, target, body)
                if answer is None:  # scripted: drop the connection without answering
                    return
                status, payload, extra = answer
                data = json.dumps(payload).encode()
                lines = [
                    f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
                    "content-type: application/json",
                    f"content-length: {len(data)}",
                    *(f"{name}: {value}" for name, value in extra.items()),
                ]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(
        self, method: str, target: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]] | None:
        if method == "GET" and target == "/v1/models":
            data = [
                {"id": name, "object": "model", "created": 0, "owned_by": "test"}
                for name in self.models
            ]
            return 200, {"object": "list", "data": data}, {}
        if method != "POST" or target != "/v1/completions":
            return 404, {"error": {"message": f"no route {method} {target}"}}, {}
        request = json.loads(body)
        prompt = request["prompt"]
        call = Call(prompt, time.monotonic(), request)
        earlier = sum(1 for c in self.calls if c.prompt == prompt)
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            script = self.faults.get(prompt, [])
            fault = script[earlier] if earlier < len(script) else None
            if fault == "close":
                call.outcome = "close"
                return None
            if fault == "short":  # one choice fewer than asked for
                call.outcome = "short"
                short = completion_body(request)
                short["choices"] = short["choices"][1:]
                return 200, short, {}
            if isinstance(fault, int):
                call.outcome = str(fault)
                extra = {"retry-after": "0.3"} if fault == 429 else {}
                return fault, {"error": {"message": f"scripted {fault}", "type": "test"}}, extra
            await asyncio.sleep(
                fault if isinstance(fault, float) else self.latency.get(prompt, 0.0)
            )
            call.outcome = "ok"
            return 200, completion_body(request), {}
        finally:
            self.in_flight -= 1
            call.ended = time.monotonic()


def sample_text(prompt: str, seed: int | None, j: int) -> str:
    """The fake model: a pure function of the request, so expected outputs are computable."""
    return f"<{prompt}|seed={seed}|{j}>"


def completion_body(request: dict[str, Any]) -> dict[str, Any]:
    n = request.get("n", 1)
    reason = "length" if request["max_tokens"] < 8 else "stop"
    # Choices deliberately in reverse: the client must order them by their index.
    choices = [
        {
            "index": j,
            "text": sample_text(request["prompt"], request.get("seed"), j),
            "finish_reason": reason,
            "logprobs": None,
        }
        for j in reversed(range(n))
    ]
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 0,
        "model": request["model"],
        "choices": choices,
        "usage": {"prompt_tokens": 3, "completion_tokens": 5 * n, "total_tokens": 3 + 5 * n},
    }


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer().start()
    yield fake
    fake.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_params(url: str, **overrides: Any) -> ClientParams:
    settings: dict[str, Any] = {
        "base_url": url,
        "model": "fake",
        "max_concurrency": 4,
        "request_timeout_s": 5.0,
        "max_retries": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "ready_timeout_s": 5.0,
        "requests_per_unit": 4,
    }
    settings.update(overrides)
    return ClientParams.from_dict(settings)


def make_requests(count: int, *, n: int = 1, prefix: str = "p") -> list[CompletionRequest]:
    """Requests with sparse global indices (a shard's slice) and per-request seeds."""
    return [
        CompletionRequest(
            index=10 + 3 * i,
            id=f"rec-{i:03d}",
            prompt=f"{prefix}{i}",
            params=SamplingParams(
                max_tokens=4 + i % 8, temperature=0.7, n=n, seed=3407 + i, stop=("\n",)
            ),
        )
        for i in range(count)
    ]


def make_record(
    request: CompletionRequest, result: CompletionResult
) -> tuple[list[dict[str, Any]], StageStats]:
    """What a stage's parser does: one record per request; a failed request is a counted drop."""
    delta = StageStats(n_in=1)
    if result.error is not None:
        delta.drop("request_error")
        return [], delta
    delta.n_out = 1
    delta.extra = {"parsed_texts": len(result.choices)}
    record = {
        "id": request.id,
        "index": request.index,
        "texts": [text for text, _ in result.choices],
        "finish_reasons": [reason for _, reason in result.choices],
    }
    return [record], delta


def expected_record(request: CompletionRequest) -> dict[str, Any]:
    sampling = request.params
    reason = "length" if sampling.max_tokens < 8 else "stop"
    return {
        "id": request.id,
        "index": request.index,
        "texts": [sample_text(request.prompt, sampling.seed, j) for j in range(sampling.n)],
        "finish_reasons": [reason] * sampling.n,
    }


def collect(
    requests: list[CompletionRequest], params: ClientParams, **kwargs: Any
) -> list[CompletionResult]:
    results: list[CompletionResult] = []
    asyncio.run(complete_all(requests, params, results.append, **kwargs))
    return results


# ----------------------------------------------------------------------------------- params


def test_params_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown client parameter.*max_conncurrency"):
        ClientParams.from_dict({"base_url": "http://x/v1", "model": "m", "max_conncurrency": 2})
    with pytest.raises(ValueError, match="client.max_concurrency must be >= 1, got 0"):
        ClientParams.from_dict({"base_url": "http://x/v1", "model": "m", "max_concurrency": 0})
    with pytest.raises(ValueError, match="base_url"):
        ClientParams(base_url="localhost:8000", model="m")
    assert ClientParams(base_url="http://x:1/v1/", model="m").base_url == "http://x:1/v1"
    assert ClientParams(base_url="http://x:1", model="m").base_url == "http://x:1/v1"
    assert SamplingParams(max_tokens=4, stop=["a"]).stop == ("a",)
    with pytest.raises(ValueError, match="list of strings"):
        SamplingParams(max_tokens=4, stop="\n")


def test_backoff_is_exponential_capped_and_deterministic() -> None:
    params = ClientParams(
        base_url="http://x/v1", model="m", backoff_initial_s=1.0, backoff_max_s=8.0
    )
    delays = [backoff_delay(params, "rec-1", retry) for retry in range(1, 8)]
    assert delays == [backoff_delay(params, "rec-1", retry) for retry in range(1, 8)]
    for retry, delay in enumerate(delays, start=1):
        step = min(8.0, 2.0 ** (retry - 1))
        assert step / 2 <= delay <= step
    # Jitter differs between requests, so requests that failed together spread out.
    assert len({backoff_delay(params, f"rec-{i}", 1) for i in range(20)}) == 20


# ------------------------------------------------------------------------------- happy path


def test_output_in_index_order_with_counts(server: FakeServer, tmp_path: Path) -> None:
    requests = make_requests(23, n=2)
    # Later requests answer first, so completion order is far from index order.
    for i, request in enumerate(requests):
        server.latency[request.prompt] = 0.002 * (23 - i) + (0.05 if i % 5 == 0 else 0.0)
    params = client_params(server.url, max_concurrency=6, requests_per_unit=5)
    output = tmp_path / "out.jsonl"
    stats = run_generation(lambda: requests, output, params, make_record, show_progress=False)

    assert read_jsonl(output) == [expected_record(r) for r in requests]
    assert not output.with_name("out.jsonl.parts").exists()
    sent = next(c.body for c in server.calls if c.prompt == "p3")
    assert sent == {
        "model": "fake",
        "prompt": "p3",
        "max_tokens": 7,
        "temperature": 0.7,
        "top_p": 1.0,
        "n": 2,
        "seed": 3410,
        "stop": ["\n"],
    }
    assert server.prompts_seen() == Counter({r.prompt: 1 for r in requests})
    assert 1 < server.max_in_flight <= 6
    assert (stats.n_in, stats.n_out, dict(stats.drops)) == (23, 23, {})
    extra = stats.extra
    assert (extra["requests"], extra["samples"], extra["attempts"], extra["retries"]) == (
        23,
        46,
        23,
        0,
    )
    lengths = sum(2 for r in requests if r.params.max_tokens < 8)
    assert extra["finish_reasons"] == {"length": lengths, "stop": 46 - lengths}
    assert (extra["errors"], extra["units"], extra["units_resumed"]) == (0, 5, 0)
    assert (extra["prompt_tokens"], extra["completion_tokens"]) == (23 * 3, 23 * 10)
    assert extra["parsed_texts"] == 46  # the caller's own counts are summed too


def test_no_requests_gives_an_empty_file_without_a_server(tmp_path: Path) -> None:
    params = client_params(f"http://127.0.0.1:{free_port()}/v1", ready_timeout_s=0.2)
    stats = run_generation(
        lambda: [], tmp_path / "out.jsonl", params, make_record, show_progress=False
    )
    assert (tmp_path / "out.jsonl").read_bytes() == b""
    assert (stats.n_in, stats.extra["requests"], stats.extra["units"]) == (0, 0, 0)


# ---------------------------------------------------------------------------------- failures


def test_transient_failures_are_retried_and_counted(server: FakeServer, tmp_path: Path) -> None:
    requests = make_requests(8)
    server.faults = {
        "p1": [500, 500],  # two server errors, then fine
        "p2": ["close", 503],  # connection dropped without an answer, then unavailable
        "p3": [2.0],  # slower than request_timeout_s once
        "p4": [429],  # rate limited with Retry-After: 0.3
    }
    params = client_params(server.url, request_timeout_s=0.5, backoff_max_s=0.5)
    started = time.monotonic()
    results = {r.id: r for r in collect(requests, params)}
    assert time.monotonic() - started >= 0.3  # the 429's Retry-After beat our 0.01 s backoff
    attempts = [results[r.id].attempts for r in requests]
    assert attempts == [1, 3, 3, 2, 2, 1, 1, 1]
    for request in requests:
        result, expected = results[request.id], expected_record(request)
        assert result.ok
        assert result.choices == list(
            zip(expected["texts"], expected["finish_reasons"], strict=True)
        )
    assert server.prompts_seen() == Counter(
        {"p1": 3, "p2": 3, "p3": 2, "p4": 2, "p0": 1, "p5": 1, "p6": 1, "p7": 1}
    )

    server.reset_log()  # the faults apply again
    output = tmp_path / "out.jsonl"
    stats = run_generation(lambda: requests, output, params, make_record, show_progress=False)
    assert (stats.extra["attempts"], stats.extra["retries"], stats.extra["errors"]) == (14, 6, 0)
    assert read_jsonl(tmp_path / "out.jsonl") == [expected_record(r) for r in requests]


def test_retries_run_out_stop_the_stage(server: FakeServer, tmp_path: Path) -> None:
    requests = make_requests(6)
    server.faults = {"p5": [500] * 10}
    params = client_params(server.url, max_retries=2, requests_per_unit=3, max_concurrency=1)
    output = tmp_path / "out.jsonl"
    with pytest.raises(GenerationError, match=r"'rec-005' \(index 25\).*failed 3 times.*HTTP 500"):
        run_generation(lambda: requests, output, params, make_record, show_progress=False)
    assert server.prompts_seen()["p5"] == 3
    assert not output.exists()
    parts = output.with_name("out.jsonl.parts")
    assert (parts / "00000000.stats.json").exists()  # the finished unit is kept for a rerun
    assert not (parts / "00000001.stats.json").exists()


def test_a_bad_request_is_recorded_and_the_rest_complete(
    server: FakeServer, tmp_path: Path
) -> None:
    requests = make_requests(9)
    server.faults = {"p4": [400]}
    params = client_params(server.url)
    output = tmp_path / "out.jsonl"
    stats = run_generation(lambda: requests, output, params, make_record, show_progress=False)

    assert server.prompts_seen()["p4"] == 1  # not retried
    assert read_jsonl(output) == [expected_record(r) for r in requests if r.prompt != "p4"]
    assert (stats.n_in, stats.n_out, dict(stats.drops)) == (9, 8, {"request_error": 1})
    assert (stats.extra["errors"], stats.extra["requests"], stats.extra["samples"]) == (1, 9, 8)
    stats.check_balance()

    failed = [r for r in collect(requests[4:5], params) if not r.ok]
    assert failed == []  # the fault was used up: the same request now succeeds
    server.faults = {"p4": [422]}
    server.reset_log()
    (result,) = collect(requests[4:5], params)
    assert result.error is not None and result.error.startswith("HTTP 422") and result.attempts == 1


def test_a_malformed_answer_is_recorded_not_retried(server: FakeServer) -> None:
    server.faults = {"p1": ["short"]}
    results = {r.id: r for r in collect(make_requests(3, n=2), client_params(server.url))}
    assert results["rec-001"].error == "malformed response: asked for 2 choices, got 1"
    assert results["rec-001"].attempts == 1 and server.prompts_seen()["p1"] == 1
    assert results["rec-000"].ok and results["rec-002"].ok


def test_endpoint_errors_stop_the_stage(server: FakeServer, tmp_path: Path) -> None:
    server.faults = {"p0": [404]}
    with pytest.raises(GenerationError, match="HTTP 404.*client.model"):
        collect(make_requests(1), client_params(server.url))
    with pytest.raises(GenerationError, match=r"serves \['fake'\], not 'other'"):
        wait_for_server(server.url, 2.0, model="other")
    assert wait_for_server(server.url, 2.0, model="fake") == ["fake"]


def test_a_server_that_never_starts_fails_in_bounded_time(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(ServerNotReadyError) as caught:
        wait_for_server(url, 1.0, poll_interval_s=0.1)
    assert 1.0 <= time.monotonic() - started < 3.0
    message = str(caught.value)
    assert (
        f"{url}/models" in message
        and "after waiting 1." in message
        and "within the 1 s timeout" in message
    )
    assert "Connection refused" in message

    # A socket that accepts connections but never answers must not stall the wait either.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/v1"
        started = time.monotonic()
        with pytest.raises(ServerNotReadyError, match="timed out"):
            wait_for_server(url, 1.0)
        assert time.monotonic() - started < 3.0

        # The same from the stage's entry point, before anything is sent.
        params = client_params(url, ready_timeout_s=0.5)
        with pytest.raises(ServerNotReadyError, match=url):
            run_generation(
                lambda: make_requests(2),
                tmp_path / "o.jsonl",
                params,
                make_record,
                show_progress=False,
            )


# ------------------------------------------------------------------------------ concurrency


def test_concurrency_refills_as_soon_as_one_finishes(server: FakeServer) -> None:
    requests = make_requests(9)
    server.latency = {"p0": 1.2, **{f"p{i}": 0.1 for i in range(1, 9)}}
    params = client_params(server.url, max_concurrency=2)
    started = time.monotonic()
    results = collect(requests, params)
    elapsed = time.monotonic() - started

    # Fixed batches of 2 would take 1.2 + 4 x 0.1 = 1.6 s; refilling: max(1.2, 8 x 0.1) = 1.2 s.
    assert elapsed < 1.45, elapsed
    assert [r.id for r in results][-1] == "rec-000"  # every fast one finished before the slow one
    slow_end = next(c.ended for c in server.calls if c.prompt == "p0")
    assert all(c.ended < slow_end for c in server.calls if c.prompt != "p0")
    assert server.max_in_flight == 2


def test_lookahead_bounds_how_far_past_a_slow_request_work_goes(server: FakeServer) -> None:
    requests = make_requests(8)
    server.latency = {"p0": 0.6}
    params = client_params(server.url, max_concurrency=3)
    results = collect(requests, params, lookahead=3)
    order = [r.id for r in results]
    # Only positions 1 and 2 may run beside position 0; the rest wait for it.
    assert order[:3] == ["rec-001", "rec-002", "rec-000"] or order[:3] == [
        "rec-002",
        "rec-001",
        "rec-000",
    ]
    slow = next(c for c in server.calls if c.prompt == "p0")
    assert sum(1 for c in server.calls if c.started < slow.ended - 0.05) == 3


# ---------------------------------------------------------------------------------- resuming


def parts_done(output: Path) -> set[int]:
    parts = output.with_name(output.name + ".parts")
    return {int(p.name.split(".")[0]) for p in parts.glob("*.stats.json")}


def prompts_of_units(requests: list[CompletionRequest], units: set[int], per_unit: int) -> set[str]:
    return {r.prompt for pos, r in enumerate(requests) if pos // per_unit in units}


def test_resume_after_cancel_sends_only_missing_requests(
    server: FakeServer, tmp_path: Path
) -> None:
    requests = make_requests(22)
    server.latency = {r.prompt: 0.03 for r in requests}
    params = client_params(server.url, max_concurrency=2, requests_per_unit=4)
    reference = tmp_path / "reference.jsonl"
    run_generation(lambda: requests, reference, params, make_record, show_progress=False)

    output = tmp_path / "out.jsonl"

    async def interrupted() -> None:
        task = asyncio.create_task(
            run_generation_async(lambda: requests, output, params, make_record, show_progress=False)
        )
        while 1 not in parts_done(output):
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    done = parts_done(output)
    assert not output.exists() and {0, 1} <= done and len(done) < 6

    server.reset_log()
    stats = run_generation(lambda: requests, output, params, make_record, show_progress=False)
    seen = server.prompts_seen()
    assert set(seen) == {r.prompt for r in requests} - prompts_of_units(requests, done, 4)
    assert set(seen.values()) == {1}
    assert output.read_bytes() == reference.read_bytes()
    assert (stats.n_in, stats.extra["requests"], stats.extra["units_resumed"]) == (
        22,
        22,
        len(done),
    )


def test_changed_requests_discard_stale_parts(server: FakeServer, tmp_path: Path) -> None:
    requests = make_requests(12)
    params = client_params(server.url, max_concurrency=1, requests_per_unit=4)
    server.faults = {"p9": [500] * 10}
    output = tmp_path / "out.jsonl"
    with pytest.raises(GenerationError):
        run_generation(lambda: requests, output, params, make_record, show_progress=False)
    assert parts_done(output) == {0, 1}

    changed = make_requests(12, prefix="q")
    server.reset_log()
    run_generation(lambda: changed, output, params, make_record, show_progress=False)
    assert set(server.prompts_seen()) == {r.prompt for r in changed}
    assert read_jsonl(output) == [expected_record(r) for r in changed]


def test_a_request_builder_that_changes_between_passes_is_caught(
    server: FakeServer, tmp_path: Path
) -> None:
    passes = iter(range(10))

    def drifting() -> list[CompletionRequest]:
        return make_requests(6, prefix=f"v{next(passes)}-")

    params = client_params(server.url, requests_per_unit=3)
    with pytest.raises(GenerationError, match="not deterministic"):
        run_generation(drifting, tmp_path / "out.jsonl", params, make_record, show_progress=False)
    assert parts_done(tmp_path / "out.jsonl") == set()

    backwards = list(reversed(make_requests(3)))
    with pytest.raises(ValueError, match="increasing index order"):
        run_generation(
            lambda: backwards, tmp_path / "b.jsonl", params, make_record, show_progress=False
        )


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_client import client_params, make_record, make_requests
from selfalign.generation.client import run_generation

run_generation(lambda: make_requests(30), {output!r}, client_params({url!r}, max_concurrency=3,
               requests_per_unit=5), make_record, show_progress=False)
"""


def test_resume_after_sigkill_is_byte_identical(server: FakeServer, tmp_path: Path) -> None:
    requests = make_requests(30)
    server.latency = {r.prompt: 0.05 for r in requests}
    params = client_params(server.url, max_concurrency=3, requests_per_unit=5)
    reference = tmp_path / "reference.jsonl"
    run_generation(lambda: requests, reference, params, make_record, show_progress=False)

    output = tmp_path / "out.jsonl"
    script = KILLED_RUN.format(tests=str(REPO / "tests"), output=str(output), url=server.url)
    env = {**os.environ, "SELFALIGN_NO_PROGRESS": "1"}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env)
    try:
        deadline = time.monotonic() + 30
        while len(parts_done(output)) < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert child.poll() is None, "the run finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    done = parts_done(output)
    assert 2 <= len(done) < 6 and not output.exists()

    server.reset_log()
    run_generation(lambda: requests, output, params, make_record, show_progress=False)
    seen = server.prompts_seen()
    assert set(seen) == {r.prompt for r in requests} - prompts_of_units(requests, done, 5)
    assert set(seen.values()) == {1}
    assert output.read_bytes() == reference.read_bytes()
    records = read_jsonl(output)
    assert len({r["id"] for r in records}) == len(records) == 30
