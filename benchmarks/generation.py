"""Benchmark the generation client's continuous refill against fixed concurrent batches.

    python benchmarks/generation.py [--server cpu|sim|both] [--requests 192] [--concurrency 2]
                                    [--slots 2] [--repeat 3] [--model DIR]

The same requests go, in the same process and against the same server, to:

* ours: :func:`selfalign.generation.client.run_generation` end to end (worker pool that
  refills as soon as any request finishes, resumable unit files, final JSONL), with
  ``max_concurrency`` C;
* baseline: what upstream did: chunks of C requests sent with ``asyncio.gather``, each chunk
  waiting for its slowest request before the next is sent. It uses the same ``openai`` client
  settings and the same per-request code (:func:`complete_one`), so only scheduling differs;
* sequential: one request at a time (C = 1), to show how much concurrency a server can use.

Requests: stdlib function sources (first 800 characters) as prompts; ``max_tokens`` drawn from
a seeded log-normal (median 32, clipped to 8..256), temperature 0.7, per-request seed
3407 + index, as the recipe seeds its requests. Completion tokens come from the servers'
``usage``; the rate is completion tokens per second of wall time. Runs rotate which side
goes first; each side reports its best and median of ``--repeat`` runs.

Servers:

* ``cpu``: the tiny profile's CPU server (``python -m selfalign.serving.cpu_server``, started
  through :class:`selfalign.serving.launch.ServerProcess`) on the tiny profile's architecture,
  built once by :func:`selfalign.tinymodel.build_tiny_model` (few training steps: speed, not
  quality, is measured) into ``benchmarks/out/`` unless ``--model`` names one. The server
  runs ``--slots`` requests at once (default 2, one worker process per core, ``--threads 1``),
  as the tiny profile runs it; C defaults to the slots, as upstream sized its batches to what
  the server runs at once. With ``--slots 1`` its log gives how long it was busy in each run,
  and so how much any scheduling could gain;
* ``sim``: an in-process server that answers every request after ``ttft + tokens x per-token``
  seconds, however many are in flight: what a continuous-batching server such as vLLM does
  while its batch has room. It isolates the scheduling effect from CPU contention.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import platform
import random
import re
import statistics
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from selfalign.generation.client import (
    ClientParams,
    CompletionRequest,
    CompletionResult,
    SamplingParams,
    complete_one,
    make_client,
    run_generation,
    wait_for_server,
)
from selfalign.records import read_jsonl, write_jsonl
from selfalign.runtime import StageStats
from selfalign.serving.launch import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
STDLIB_MODULES = ("textwrap", "heapq", "bisect", "fnmatch", "colorsys", "shlex", "string", "glob")

#: The CPU server's per-request log line: when it answered and how long the request took
#: from arrival (time queued for the worker thread included).
SERVED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\bcmpl-\S+ .*\bseconds=([0-9.]+)")


# --------------------------------------------------------------------------------- requests


def stdlib_functions() -> list[str]:
    """Real docstring-bearing functions: prompts (and the tiny model's corpus) from the stdlib."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for name in STDLIB_MODULES:
        source = (root / f"{name}.py").read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
                text = ast.get_source_segment(source, node)
                if text:
                    found.append(text)
    return found


def make_requests(count: int, seed: int) -> list[CompletionRequest]:
    """``count`` requests with long-tailed output lengths (median 32 tokens, 8..256)."""
    functions = stdlib_functions()
    rng = random.Random(seed)
    requests = []
    for index in range(count):
        max_tokens = int(min(256, max(8, rng.lognormvariate(math.log(32), 0.9))))
        requests.append(
            CompletionRequest(
                index=index,
                id=f"bench-{index:04d}",
                prompt=functions[index % len(functions)][:800],
                params=SamplingParams(max_tokens=max_tokens, temperature=0.7, seed=3407 + index),
            )
        )
    return requests


# ---------------------------------------------------------------------------------- servers


def tiny_model(model: Path | None, steps: int) -> Path:
    """The model directory to serve: ``model``, or the tiny profile's architecture built once."""
    if model is not None:
        return model
    from selfalign.tinymodel import TinyModelParams, build_tiny_model

    out_dir = OUT / f"tinymodel-{steps}steps"
    if not (out_dir / "config.json").exists():
        print(f"building the tiny model ({steps} steps) into {out_dir} ...", flush=True)
        corpus = OUT / "bench-corpus.jsonl"
        write_jsonl(
            corpus, ({"id": f"f{i}", "content": t} for i, t in enumerate(stdlib_functions()))
        )
        fewshot = REPO / "src" / "selfalign" / "data" / "fewshot-tiny.txt"
        params = TinyModelParams(steps=steps, warmup=min(20, steps // 2))
        build_tiny_model([corpus], [fewshot], out_dir, params, show_progress=False)
    return out_dir


@contextmanager
def cpu_server(model_dir: Path, log_path: Path, slots: int) -> Iterator[str]:
    """The CPU completions server on a free port: ``slots`` requests at once, 1 thread each."""
    log_path.unlink(missing_ok=True)
    with ServerProcess.cpu(
        model_dir,
        served_model_name="tiny",
        threads=1,
        slots=slots,
        ready_timeout_s=600,
        log_path=log_path,
    ) as server:
        yield server.api_base


def server_busy_s(log_path: Path | None, offset: int) -> float | None:
    """Seconds the CPU server's single worker spent on requests logged after ``offset``.

    The server runs one request at a time, first come first served, so a request's service
    began when it arrived or when the one before it ended, whichever was later. ``None``
    when there is no log or its lines do not parse (the server's format may change).
    """
    if log_path is None or not log_path.exists():
        return None
    with log_path.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    events = []
    for line in lines:
        match = SERVED.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            events.append((stamp, float(match.group(2))))
    if not events:
        return None
    busy, previous_end = 0.0, -math.inf
    for end, seconds in sorted(events):
        busy += end - max(end - seconds, previous_end)
        previous_end = end
    return busy


@contextmanager
def sim_server(ttft_s: float, per_token_s: float) -> Iterator[str]:
    """A continuous-batching stand-in: each request takes ``ttft + max_tokens x per_token``."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "tiny", "object": "model", "owned_by": "sim"}]}

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> dict[str, Any]:
        tokens = int(body["max_tokens"])
        await asyncio.sleep(ttft_s + tokens * per_token_s)
        text = f"seed {body.get('seed')}:" + " tok" * tokens
        choice = {"index": 0, "text": text, "finish_reason": "length", "logprobs": None}
        usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
        return {
            "id": "cmpl-sim",
            "object": "text_completion",
            "created": 0,
            "model": "tiny",
            "choices": [choice],
            "usage": usage,
        }

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_server(base_url, 30, model="tiny")
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)


# ------------------------------------------------------------------------------------ runs


@dataclass
class Run:
    label: str
    seconds: float
    completion_tokens: int
    texts: dict[str, str]
    busy_s: float | None = None

    @property
    def busy(self) -> str:
        if self.busy_s is None:
            return ""
        idle = max(0.0, self.seconds - self.busy_s)
        return f", server busy {self.busy_s / self.seconds:.0%} (idle {idle:.2f} s)"

    @property
    def rate(self) -> float:
        return self.completion_tokens / self.seconds


def to_record(
    request: CompletionRequest, result: CompletionResult
) -> tuple[list[dict[str, Any]], StageStats]:
    """A minimal stage parser: keep the text; a failed request would be a counted drop."""
    if result.error is not None:
        delta = StageStats(n_in=1)
        delta.drop("request_error")
        return [], delta
    record = {"id": request.id, "text": result.choices[0][0], "usage": result.usage}
    return [record], StageStats(n_in=1, n_out=1)


def ours(requests: list[CompletionRequest], params: ClientParams) -> Run:
    with tempfile.TemporaryDirectory(prefix="selfalign-bench-") as tmp:
        output = Path(tmp) / "out.jsonl"
        started = time.perf_counter()
        stats = run_generation(lambda: requests, output, params, to_record, show_progress=False)
        seconds = time.perf_counter() - started
        texts = {r["id"]: r["text"] for r in read_jsonl(output)}
    label = f"ours (refill, C={params.max_concurrency})"
    return Run(label, seconds, stats.extra["completion_tokens"], texts)


def fixed_batches(requests: list[CompletionRequest], params: ClientParams) -> Run:
    """Upstream's scheme: ``asyncio.gather`` over each chunk of C, one chunk after another."""

    async def run() -> list[CompletionResult]:
        results: list[CompletionResult] = []
        async with make_client(params) as api:
            step = params.max_concurrency
            for start in range(0, len(requests), step):
                chunk = requests[start : start + step]
                results += await asyncio.gather(*(complete_one(api, r, params) for r in chunk))
        return results

    started = time.perf_counter()
    results = asyncio.run(run())
    seconds = time.perf_counter() - started
    tokens = sum(r.usage.get("completion_tokens", 0) for r in results)
    texts = {r.id: r.choices[0][0] for r in results if r.ok}
    label = f"baseline (fixed batches, C={params.max_concurrency})"
    if params.max_concurrency == 1:
        label = "sequential (C=1)"
    return Run(label, seconds, tokens, texts)


def measure(
    base_url: str,
    requests: list[CompletionRequest],
    concurrency: int,
    repeat: int,
    log_path: Path | None = None,
) -> dict[str, list[Run]]:
    """Run ours, the baseline and sequential ``repeat`` times each, rotating which goes first,
    so that drift in the machine's load hits all three alike."""
    params = ClientParams(
        base_url=base_url,
        model="tiny",
        max_concurrency=concurrency,
        requests_per_unit=16,
        ready_timeout_s=60,
    )
    sequential = ClientParams(**{**vars(params), "max_concurrency": 1})
    fixed_batches(requests[:2], params)  # warm-up: connections, first-call allocations
    sides = ["ours", "baseline", "sequential"]
    order = [sides[(attempt + k) % 3] for attempt in range(repeat) for k in range(3)]
    runs: dict[str, list[Run]] = {side: [] for side in sides}
    for side in order:
        offset = log_path.stat().st_size if log_path is not None and log_path.exists() else 0
        if side == "ours":
            run = ours(requests, params)
        else:
            run = fixed_batches(requests, sequential if side == "sequential" else params)
        run.busy_s = server_busy_s(log_path, offset)
        runs[side].append(run)
        print(f"  {run.label}: {run.seconds:.2f} s, {run.rate:.1f} tok/s{run.busy}", flush=True)
    return runs


def report(name: str, runs: dict[str, list[Run]], requests: list[CompletionRequest]) -> None:
    """Best and median per side, and their ratios; checks every run got the same texts."""
    every = [run for found in runs.values() for run in found]
    same = all(run.texts == every[0].texts for run in every) and len(every[0].texts) == len(
        requests
    )
    print(f"\n{name}: {len(requests)} requests, {every[0].completion_tokens} completion tokens")
    best = {side: min(found, key=lambda r: r.seconds) for side, found in runs.items()}
    median = {side: statistics.median(r.seconds for r in found) for side, found in runs.items()}
    for side, run in best.items():
        print(
            f"  {run.label:34s} best {run.seconds:6.2f} s {run.rate:8.1f} tok/s{run.busy}; "
            f"median {median[side]:6.2f} s over {len(runs[side])}"
        )
    print(
        f"  ratio ours/baseline (tok/s): best {best['ours'].rate / best['baseline'].rate:.2f}, "
        f"median {median['baseline'] / median['ours']:.2f}"
    )
    print(f"  ratio ours/sequential (tok/s): {best['ours'].rate / best['sequential'].rate:.2f}")
    base = best["baseline"]
    if base.busy_s:
        # The server ran one request at a time and was busy ``busy_s`` of the baseline's wall
        # time: no client can finish the same work faster than that busy time.
        print(f"  bound on any client's gain over the baseline: {base.seconds / base.busy_s:.3f}x")
    print(f"  same texts in every run: {'yes' if same else 'NO'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--server", choices=["cpu", "sim", "both"], default="both")
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--concurrency", type=int, default=2, help="C; default = the server's slots")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (best and median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the max_tokens draw")
    parser.add_argument("--model", type=Path, default=None, help="model directory to serve")
    parser.add_argument(
        "--slots", type=int, default=2, help="cpu: requests the server runs at once (1 per core)"
    )
    parser.add_argument("--model-steps", type=int, default=20, help="training steps if built")
    parser.add_argument("--sim-ttft", type=float, default=0.02, help="sim: seconds per request")
    parser.add_argument("--sim-per-token", type=float, default=0.004, help="sim: s per token")
    args = parser.parse_args(argv)

    requests = make_requests(args.requests, args.seed)
    lengths = sorted(r.params.max_tokens for r in requests)
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(
        f"max_tokens: min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
        f"max {lengths[-1]}, sum {sum(lengths)}"
    )
    if args.server in ("sim", "both"):
        print(f"\nsim server (ttft {args.sim_ttft} s, {args.sim_per_token} s/token, unbounded)")
        with sim_server(args.sim_ttft, args.sim_per_token) as url:
            sim = measure(url, requests, args.concurrency, args.repeat)
        report("sim server", sim, requests)
    if args.server in ("cpu", "both"):
        model_dir = tiny_model(args.model, args.model_steps)
        summary = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        print(
            f"\ncpu server, model {model_dir} (hidden {summary['hidden_size']}, "
            f"{summary['num_hidden_layers']} layers, vocab {summary['vocab_size']})"
        )
        log_path = OUT / "cpu-server.log"
        print(f"server slots: {args.slots} (requests generated at once, one thread each)")
        with cpu_server(model_dir, log_path, args.slots) as url:
            busy_log = log_path if args.slots == 1 else None
            cpu = measure(url, requests, args.concurrency, args.repeat, busy_log)
        report("cpu server", cpu, requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
