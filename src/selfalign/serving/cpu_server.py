"""Own server: `transformers serve` /v1/completions refuses n and list prompts, seeds global RNG.

An OpenAI *completions* server over `transformers`, for the tiny profile and CI (CPU, no GPU).
Every generating stage speaks only `/v1/completions`; on GPU vLLM answers, here this does,
so the stages cannot tell the difference. What it must guarantee, and how:

* Reproducibility: sample ``j`` of a request draws from its own ``torch.Generator`` seeded
  from ``(request seed, j)``, never from global RNG state, and every request is computed on its
  own (never batched with another request's rows), so the text depends only on the request and
  the server's configuration (model, dtype, threads, max batch: all in ``system_fingerprint``).
* Throughput without giving that up: ``--slots N`` (N > 1) runs N requests at once, each in
  one of N worker *processes* holding its own copy of the model (threads would serialize on
  the GIL: a small model's decode loop is mostly Python). A request still runs alone in its
  worker, so its text is the same whichever slot takes it and whatever runs beside it. A client
  that keeps every slot busy (refilling as requests finish) gets more out of it than one that
  waits for a whole batch; vLLM's continuous batching rewards the same thing.
* The same answer shapes and limits as vLLM: ``finish_reason`` "stop" for EOS or a stop
  string (cut out of the text), "length" for ``max_tokens``; an over-long prompt is a 400 with
  OpenAI error JSON, never a crash; options it cannot honour are refused, not ignored.

Run: ``python -m selfalign.serving.cpu_server --model DIR --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import multiprocessing
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..determinism import check_cpu_kernels

LOG = logging.getLogger("selfalign.serving.cpu_server")

FinishReason = Literal["stop", "length"]

#: The completions API default (OpenAI and vLLM), kept so a request means the same here.
DEFAULT_MAX_TOKENS = 16


class RequestError(Exception):
    """A request the server refuses; carries the HTTP status so it maps to OpenAI error JSON."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:  # raised in slot processes, re-raised here
        return (RequestError, (self.message, self.status, self.param))


@dataclass(frozen=True)
class SamplingParams:
    """What decides the sampled text besides the prompt; frozen so a request cannot drift."""

    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One generated continuation, with what the usage block and finish_reason need."""

    text: str
    finish_reason: FinishReason
    completion_tokens: int


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` of a request: a hash, so neighbouring requests never share streams.

    Plain arithmetic (``seed + index``) would give request seed 3408's first sample the same
    random stream as seed 3407's second, correlating the stages' per-record seeds.
    """
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop string in ``text``; the earliest, since stops may overlap."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def next_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> int:
    """Pick the next token from one row of logits with the row's own generator.

    Greedy at temperature 0 (no randomness consumed, so greedy text ignores the seed); else
    temperature scaling, nucleus filtering (keeping at least the most likely token), and one
    multinomial draw. The sort is stable so ties cannot reorder between runs.
    """
    if temperature == 0.0:
        return int(torch.argmax(logits))
    scaled = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, descending=False, stable=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1.0 - top_p
        drop[-1] = False
        scaled = scaled.scatter(0, order[drop], float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class Engine:
    """A causal LM and its tokenizer; ``generate`` may run in several threads at once.

    Each call builds its own KV cache and generators and only reads the weights, so concurrent
    calls share nothing mutable except the tokenizer, which a lock guards (the Rust tokenizer
    refuses concurrent borrows).
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, max_batch: int = 8, max_model_len: int | None = None
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        limit = getattr(model.config, "max_position_embeddings", None) or max_model_len
        if limit is None:
            raise ValueError("the model config has no max_position_embeddings: pass max_model_len")
        self.context_length = min(limit, max_model_len) if max_model_len else int(limit)
        self.eos_ids = self._eos_ids()
        self._abort = threading.Event()
        self._tokenizer_lock = threading.Lock()

    def abort(self) -> None:
        """Make generation in progress stop at its next token, so shutdown is not held up."""
        self._abort.set()

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        dtype: str = "float32",
        max_batch: int = 8,
        max_model_len: int | None = None,
    ) -> Engine:
        """Load model and tokenizer from a local directory (or a Hub name when online)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
        return cls(model, tokenizer, max_batch=max_batch, max_model_len=max_model_len)

    def _eos_ids(self) -> frozenset[int]:
        """EOS ids from both tokenizer and generation config, as vLLM stops on either."""
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(i) for i in configured)
        return frozenset(ids)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt, with the tokenizer's special tokens as vLLM adds them."""
        with self._tokenizer_lock:
            return list(self.tokenizer.encode(prompt))

    def budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """The max_tokens to use, or a 400 naming the numbers when the context cannot hold them.

        ``None`` means the rest of the context, as in vLLM.
        """
        if prompt_tokens == 0:
            raise RequestError("the prompt is empty: it encodes to zero tokens", param="prompt")
        if max_tokens is None:
            if prompt_tokens >= self.context_length:
                raise RequestError(
                    f"This model's maximum context length is {self.context_length} tokens. "
                    f"However, the prompt has {prompt_tokens} tokens, leaving none to generate.",
                    param="prompt",
                )
            return self.context_length - prompt_tokens
        if prompt_tokens + max_tokens > self.context_length:
            raise RequestError(
                f"This model's maximum context length is {self.context_length} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in "
                f"the prompt, {max_tokens} for the completion). Please reduce the length of the "
                "prompt or max_tokens.",
                param="prompt",
            )
        return max_tokens

    def generate(self, prompt_ids: Sequence[int], n: int, params: SamplingParams) -> list[Sample]:
        """``n`` samples of one prompt, in chunks of at most ``max_batch`` rows.

        Chunks depend only on ``n`` and ``max_batch``, so a request always runs the same shapes.
        """
        samples: list[Sample] = []
        with torch.inference_mode():
            for start in range(0, n, self.max_batch):
                indices = list(range(start, min(n, start + self.max_batch)))
                samples.extend(self._generate_rows(prompt_ids, indices, params))
        return samples

    def _generate_rows(
        self, prompt_ids: Sequence[int], indices: list[int], params: SamplingParams
    ) -> list[Sample]:
        """Decode one chunk: prefill the prompt once, copy its cache per row, step in lockstep.

        Finished rows leave the batch (and its KV cache) at once, so a row that hit a stop
        string costs nothing more; which rows finish when is itself deterministic.
        """
        generators = [torch.Generator().manual_seed(sample_seed(params.seed, i)) for i in indices]
        out = self.model(
            input_ids=torch.tensor([list(prompt_ids)]), use_cache=True, logits_to_keep=1
        )
        cache = out.past_key_values
        if len(indices) > 1:
            cache.batch_repeat_interleave(len(indices))
        logits = out.logits[:, -1, :].float().expand(len(indices), -1)
        tokens: list[list[int]] = [[] for _ in indices]
        results: list[Sample | None] = [None] * len(indices)
        active = list(range(len(indices)))
        while True:
            if self._abort.is_set():
                raise RequestError("the server is shutting down", status=503)
            keep: list[int] = []
            feed: list[int] = []
            for row, slot in enumerate(active):
                token = next_token(logits[row], params.temperature, params.top_p, generators[slot])
                tokens[slot].append(token)
                results[slot] = self._finished(tokens[slot], params)
                if results[slot] is None:
                    keep.append(row)
                    feed.append(token)
            if not keep:
                break
            if len(keep) < len(active):
                cache.batch_select_indices(torch.tensor(keep))
                active = [active[row] for row in keep]
            out = self.model(
                input_ids=torch.tensor(feed).unsqueeze(1), past_key_values=cache, use_cache=True
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
        return [sample for sample in results if sample is not None]

    def _finished(self, tokens: list[int], params: SamplingParams) -> Sample | None:
        """The sample if this token ended it (EOS, then stop strings, then length, as vLLM)."""
        if tokens[-1] in self.eos_ids:
            return Sample(self._decode(tokens[:-1]), "stop", len(tokens))
        if params.stop or len(tokens) >= params.max_tokens:
            text = self._decode(tokens)
            cut = find_stop(text, params.stop)
            if cut is not None:
                return Sample(text[:cut], "stop", len(tokens))
            if len(tokens) >= params.max_tokens:
                return Sample(text, "length", len(tokens))
        return None

    def _decode(self, tokens: list[int]) -> str:
        """Decode the whole continuation each time, so multi-token characters come out whole."""
        with self._tokenizer_lock:
            return str(self.tokenizer.decode(tokens, skip_special_tokens=True))


class CompletionRequest(BaseModel):
    """The legacy completions request; unknown fields are refused so no option is silently lost."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str | list[str]
    n: int = Field(1, ge=1, le=256)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, ge=1)
    user: str | None = None
    # Accepted by the OpenAI schema but not implemented: refused unless left at the default.
    stream: bool = False
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    def unsupported(self) -> str | None:
        """Name of the first option set that this server cannot honour, if any."""
        checks = {
            "stream": self.stream,
            "echo": self.echo,
            "logprobs": self.logprobs is not None,
            "best_of": self.best_of not in (None, self.n),
            "suffix": self.suffix is not None,
            "presence_penalty": self.presence_penalty != 0.0,
            "frequency_penalty": self.frequency_penalty != 0.0,
            "logit_bias": bool(self.logit_bias),
        }
        return next((name for name, used in checks.items() if used), None)

    def prompts(self) -> list[str]:
        """The prompt as a list, the shape the rest of the server works with."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> tuple[str, ...]:
        """Stop strings as a tuple; empty ones are an error since they would match at once."""
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if any(s == "" for s in stops):
            raise RequestError("stop strings must not be empty", param="stop")
        return stops


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    """OpenAI-style error JSON, which the `openai` client turns into a typed exception."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(status_code=status, content=body)


def fingerprint(model_dir: str | Path, *parts: object) -> str:
    """A short digest of everything that can change the text for a given request and seed."""
    import transformers

    config = Path(model_dir) / "config.json"
    digest = hashlib.sha256()
    digest.update(config.read_bytes() if config.is_file() else str(model_dir).encode())
    for part in (torch.__version__, transformers.__version__, *parts):
        digest.update(f"\0{part}".encode())
    return "fp_cpu_" + digest.hexdigest()[:12]


# ------------------------------------------------------------------------ slot worker processes

_SLOT_ENGINE: Engine | None = None


def _init_slot(
    model: str, dtype: str, max_batch: int, max_model_len: int | None, threads: int
) -> None:
    """Load this slot process's own copy of the model (runs once per worker process)."""
    global _SLOT_ENGINE
    from .launch import die_with_parent

    die_with_parent(signal.SIGKILL)  # a slot is useless without the server that feeds it
    check_cpu_kernels()
    torch.set_num_threads(threads)
    _SLOT_ENGINE = Engine.load(model, dtype=dtype, max_batch=max_batch, max_model_len=max_model_len)


def _slot_generate(jobs: list[tuple[list[int], SamplingParams]], n: int) -> list[list[Sample]]:
    """Generate every prompt of one request in this slot process."""
    if _SLOT_ENGINE is None:
        raise RuntimeError("slot process has no engine: _init_slot did not run")
    return [_SLOT_ENGINE.generate(ids, n, params) for ids, params in jobs]


def _slot_ready() -> bool:
    return _SLOT_ENGINE is not None


def start_slots(args: argparse.Namespace) -> ProcessPoolExecutor:
    """``args.slots`` worker processes, each with the model loaded before the server says ready.

    Spawned, not forked: forking a process that has already run torch can deadlock in OpenMP.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=args.slots,
        mp_context=context,
        initializer=_init_slot,
        initargs=(str(args.model), args.dtype, args.max_batch, args.max_model_len, args.threads),
    )
    # One call per slot makes the pool start every process now; each loads the model first.
    for ready in [pool.submit(_slot_ready) for _ in range(args.slots)]:
        ready.result()
    return pool


@dataclass
class ServerState:
    """What the endpoints share: one engine, its worker threads, and the identity they report."""

    engine: Engine
    served_model_name: str
    model_root: str
    default_seed: int
    system_fingerprint: str
    executor: ThreadPoolExecutor
    created: int
    #: With ``--slots`` > 1 the worker processes that generate; None: the executor's one thread.
    slots: ProcessPoolExecutor | None = None

    def run_request(self, request: CompletionRequest) -> tuple[list[list[Sample]], list[int]]:
        """Tokenize, check and generate every prompt of a request, on the worker thread.

        All prompts are checked before any is generated, so a bad one costs no compute.
        """
        stops = request.stops()
        encoded = [self.engine.encode(p) for p in request.prompts()]
        budgets = [self.engine.budget(len(ids), request.max_tokens) for ids in encoded]
        seed = self.default_seed if request.seed is None else request.seed
        jobs = [
            (ids, SamplingParams(budget, request.temperature, request.top_p, seed, stops))
            for ids, budget in zip(encoded, budgets, strict=True)
        ]
        if self.slots is not None:
            results = self.slots.submit(_slot_generate, jobs, request.n).result()
        else:
            results = [self.engine.generate(ids, request.n, params) for ids, params in jobs]
        return results, [len(ids) for ids in encoded]


def create_app(state: ServerState) -> FastAPI:
    """The FastAPI app: /health, /v1/models, /v1/completions, all errors as OpenAI JSON."""
    app = FastAPI(title="selfalign CPU completions server")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        )
        LOG.info("rejected (400): invalid request: %s", problems)
        return error_response(400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": state.served_model_name,
            "object": "model",
            "created": state.created,
            "owned_by": "selfalign",
            "root": state.model_root,
            "max_model_len": state.engine.context_length,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> JSONResponse:
        request_id = f"cmpl-{uuid.uuid4().hex}"
        if request.model != state.served_model_name:
            message = f"The model `{request.model}` does not exist."
            return error_response(404, message, param="model")
        option = request.unsupported()
        if option is not None:
            message = f"`{option}` is not supported by the CPU completions server"
            return error_response(400, message, param=option)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            results, prompt_lengths = await loop.run_in_executor(
                state.executor, state.run_request, request
            )
        except RequestError as exc:
            LOG.info("%s rejected (%s): %s", request_id, exc.status, exc.message)
            return error_response(exc.status, exc.message, exc.param)
        except Exception as exc:  # the server must survive any failed request
            LOG.exception("%s failed", request_id)
            return error_response(500, f"generation failed: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        choices = [
            {
                "index": p * request.n + j,
                "text": sample.text,
                "finish_reason": sample.finish_reason,
                "logprobs": None,
            }
            for p, samples in enumerate(results)
            for j, sample in enumerate(samples)
        ]
        prompt_tokens = sum(prompt_lengths)
        completion_tokens = sum(s.completion_tokens for samples in results for s in samples)
        LOG.info(
            "%s prompts=%d n=%d prompt_tokens=%d completion_tokens=%d seconds=%.3f tok/s=%.1f",
            request_id,
            len(results),
            request.n,
            prompt_tokens,
            completion_tokens,
            seconds,
            completion_tokens / seconds if seconds > 0 else 0.0,
        )
        body = {
            "id": request_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": state.served_model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": state.system_fingerprint,
        }
        return JSONResponse(body)

    return app


def build_state(args: argparse.Namespace) -> ServerState:
    """Load the model named on the command line and wrap it with ``--slots`` worker threads."""
    engine = Engine.load(
        args.model, dtype=args.dtype, max_batch=args.max_batch, max_model_len=args.max_model_len
    )
    threads = torch.get_num_threads()
    slots = start_slots(args) if args.slots > 1 else None
    return ServerState(
        engine=engine,
        served_model_name=args.served_model_name or args.model,
        model_root=str(args.model),
        default_seed=args.seed,
        system_fingerprint=fingerprint(args.model, args.dtype, threads, args.max_batch),
        # Not in the fingerprint: how many requests run at once does not change any text.
        # Threads that wait on the slot processes (or, with one slot, generate themselves).
        executor=ThreadPoolExecutor(max_workers=args.slots, thread_name_prefix="generate"),
        created=int(time.time()),
        slots=slots,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line, with vLLM's option names where the two overlap."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True, help="model directory (or Hub name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--served-model-name", default=None, help="name clients use (default: --model)"
    )
    parser.add_argument("--max-batch", type=int, default=8, help="rows decoded together (n > 1)")
    parser.add_argument(
        "--slots",
        type=int,
        default=1,
        help="requests generated at once (like vLLM's --max-num-seqs): above 1, each slot is a "
        "worker process with its own copy of the model; with --threads 1, up to one per core",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads; 1 by default because small models are overhead-bound and "
        "extra threads spin against the pipeline's other processes",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-model-len", type=int, default=None, help="cap on the context")
    parser.add_argument("--seed", type=int, default=0, help="seed for requests that give none")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    if args.threads < 1 or args.max_batch < 1 or args.slots < 1:
        parser.error("--threads, --slots and --max-batch must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Load, then serve until SIGTERM/SIGINT (uvicorn shuts down gracefully on either)."""
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    check_cpu_kernels()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its carriage returns garble the one-line-per-event log
    loaded = time.perf_counter()
    state = build_state(args)
    LOG.info(
        "serving %s from %s on http://%s:%d (context %d, threads %d, slots %d, max batch %d, %s) "
        "loaded in %.1f s",
        state.served_model_name,
        args.model,
        args.host,
        args.port,
        state.engine.context_length,
        torch.get_num_threads(),
        args.slots,
        args.max_batch,
        state.system_fingerprint,
        time.perf_counter() - loaded,
    )
    app = create_app(state)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,  # then abort generation: the stage is over anyway
        )
    finally:
        state.engine.abort()
        state.executor.shutdown(wait=False, cancel_futures=True)
        if state.slots is not None:
            state.slots.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    main()
