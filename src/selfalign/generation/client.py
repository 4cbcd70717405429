"""The one client every generating stage uses to talk to an OpenAI *completions* endpoint.

Generation speaks only ``/v1/completions`` (vLLM on a GPU, the CPU server in the tiny profile,
or any endpoint the user names), through the ``openai`` package. Upstream sent fixed chunks of
requests with ``asyncio.gather`` and waited for the slowest of each chunk; with long-tailed
output lengths most of the server's batch slots then sit idle. Here a fixed pool of workers
pulls requests one at a time, so a new request starts as soon as any one finishes.

What the stages need from it, and how it is provided:

* Retries that we control and count: the ``openai`` client's own retries are off
  (``max_retries=0``); connection errors, timeouts, 408, 429 and 5xx are retried here with
  exponential backoff whose jitter is derived from the request id and attempt number, so two
  runs behave alike and jitter can never reach a request (the sampling seed is the request's).
* Failures that cannot be fixed by retrying are told apart: a 4xx about one request (a prompt
  too long, a bad parameter) is recorded in that request's result and counted, and the stage
  goes on; a 401/403/404 says the endpoint, credentials or model name are wrong for *every*
  request, so it stops the stage instead of recording the whole run as failures; retries that
  run out also stop it (the server is gone), and a rerun resumes.
* Output in index order and resumable: :func:`run_generation` writes results through
  :func:`selfalign.runtime.drive` units of ``requests_per_unit`` requests; a unit
  is written as soon as its last request is done, so after a kill a rerun sends only the
  requests of unfinished units and the final file is the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai

from ..config import check_params
from ..records import JsonObj, dumps
from ..runtime import StageStats, UnitPlan, UnitRun, drive, drive_async
from ..serving.launch import LOOPBACK_HOSTS, ServerError, api_base, wait_ready

log = logging.getLogger(__name__)

#: Bump when the unit layout or how results become unit files changes: stale parts are dropped.
CLIENT_VERSION = 1

#: Statuses worth another try: the server is busy, restarting or timed out.
TRANSIENT_STATUSES = frozenset({408, 429})

#: Statuses that describe the endpoint rather than the request: recording them per request
#: would turn a typo in the model name into a "finished" stage of nothing but failures.
FATAL_STATUSES = frozenset({401, 403, 404})

#: Keys of ``StageStats.extra`` that :func:`run_generation` owns.
RESERVED_EXTRA = frozenset(
    {
        "requests",
        "samples",
        "attempts",
        "retries",
        "errors",
        "finish_reasons",
        "prompt_tokens",
        "completion_tokens",
        "units",
        "units_resumed",
    }
)


class GenerationError(RuntimeError):
    """The stage cannot go on: the server is unreachable or misconfigured, or retries ran out."""


class ServerNotReadyError(GenerationError):
    """No OpenAI-compatible server answered at the URL within the allowed time."""


# ---------------------------------------------------------------------------------- parameters


@dataclass
class ClientParams:
    """Which endpoint and model, and how hard to push it; apart from ``model``, nothing here
    changes the output file (so it can be tuned between a kill and the rerun, except
    ``requests_per_unit``, which lays out the unit files).

    ``base_url`` is the server's URL, with or without the ``/v1`` that the ``openai`` package
    wants (it is normalized to end in ``/v1``, as :mod:`selfalign.serving.launch` does).
    ``requests_per_unit`` is the resumable unit: what a kill can cost at most, and (with
    ``max_concurrency``) how far ahead of the oldest unfinished request new requests may
    start, which bounds the results held in memory.
    """

    base_url: str
    model: str
    api_key: str = "none"
    max_concurrency: int = 64
    request_timeout_s: float = 600.0
    max_retries: int = 8
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ready_timeout_s: float = 900.0
    requests_per_unit: int = 256

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"client.base_url must be an http(s) URL, got {self.base_url!r}")
        self.base_url = api_base(self.base_url)
        if not self.model:
            raise ValueError("client.model must name the served model")
        # each value's type and bounds: the config schema's client section (from_dict)
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(
                f"client.backoff_initial_s must be in [0, backoff_max_s={self.backoff_max_s}], "
                f"got {self.backoff_initial_s}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientParams:
        """Build from a config mapping; an unknown key is an error, not a silently ignored typo."""
        check_params(cls, data, "client")
        return cls(**data)

    @property
    def lookahead(self) -> int:
        """How many requests past the oldest unfinished one may be started or held.

        One unit plus a few rounds of the pool: enough that the pool stays full while a unit's
        slowest request finishes, few enough that one stuck request cannot make the results
        waiting behind it (to be written in order) grow without bound.
        """
        return self.requests_per_unit + 4 * self.max_concurrency


@dataclass(frozen=True)
class SamplingParams:
    """The per-request sampling settings sent with a completion; they decide the text."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: Sequence[str] = ()

    def __post_init__(self) -> None:
        # Accept a list from callers and configs, but store a tuple: frozen means hashable.
        if isinstance(self.stop, str):
            raise ValueError(f"stop must be a list of strings, got the string {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")

    def to_json(self) -> JsonObj:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class CompletionRequest:
    """One completion to ask for. ``index`` is the record's global index (it orders the output
    and, by convention, derives the seed); ``id`` is the stable id of the record it is for."""

    index: int
    id: str
    prompt: str
    params: SamplingParams

    def to_json(self) -> JsonObj:
        return {
            "index": self.index,
            "id": self.id,
            "prompt": self.prompt,
            "params": self.params.to_json(),
        }


@dataclass
class CompletionResult:
    """What came back for one request.

    ``choices`` holds ``(text, finish_reason)`` in choice order. ``error`` is ``None`` unless
    the request failed permanently (a 4xx about the request, or a malformed answer); the
    caller's ``make_record`` decides what a failed request becomes (usually a counted drop).
    """

    index: int
    id: str
    choices: list[tuple[str, str | None]]
    usage: dict[str, int]
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# ------------------------------------------------------------------------------------- retries


def backoff_delay(params: ClientParams, request_id: str, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry) of a request.

    Exponential, capped at ``backoff_max_s``, with "equal jitter" (between half and all of the
    step) so that requests which failed together do not come back together. The jitter is a
    hash of the request id and retry number rather than a random draw: reruns wait alike, and
    no random state is consumed that anything else could depend on.
    """
    step = min(params.backoff_max_s, params.backoff_initial_s * 2.0 ** min(retry - 1, 60))
    digest = hashlib.sha256(f"{request_id}\0{retry}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2.0**64
    return step * (0.5 + 0.5 * fraction)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """The server's ``Retry-After`` in seconds, when it gave one as a number."""
    value = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare from inference servers, our backoff covers it
        return None


def _describe(exc: openai.APIError) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return (
            f"connection error ({type(cause).__name__}: {cause})" if cause else "connection error"
        )
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _is_transient(exc: openai.APIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in TRANSIENT_STATUSES or exc.status_code >= 500
    return False


def make_client(params: ClientParams) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` with its own retries off, so every attempt is ours to count.

    For a loopback server the environment's proxy settings are ignored (as the readiness
    probe in :mod:`selfalign.serving.launch` does): a CI runner's ``HTTP_PROXY`` must not
    route ``127.0.0.1`` through a proxy that cannot reach it.
    """
    host = urlsplit(params.base_url).hostname or ""
    local = host in LOOPBACK_HOSTS
    return openai.AsyncOpenAI(
        base_url=params.base_url,
        api_key=params.api_key,
        timeout=params.request_timeout_s,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False) if local else None,
    )


def _result_from(request: CompletionRequest, response: Any, attempts: int) -> CompletionResult:
    """Turn a response into a result, recording (not raising) an answer of the wrong shape."""
    raw_choices = getattr(response, "choices", None)
    if not isinstance(raw_choices, list) or not all(
        isinstance(getattr(c, "text", None), str) for c in raw_choices
    ):
        return CompletionResult(
            request.index, request.id, [], {}, attempts, "malformed response: no list of texts"
        )
    ordered = sorted(raw_choices, key=lambda c: getattr(c, "index", 0) or 0)
    choices = [(c.text, getattr(c, "finish_reason", None)) for c in ordered]
    usage_obj = getattr(response, "usage", None)
    usage = {
        key: int(getattr(usage_obj, key))
        for key in ("prompt_tokens", "completion_tokens")
        if isinstance(getattr(usage_obj, key, None), int)
    }
    error = None
    if len(choices) != request.params.n:
        error = f"malformed response: asked for {request.params.n} choices, got {len(choices)}"
    return CompletionResult(request.index, request.id, choices, usage, attempts, error)


async def complete_one(
    client: openai.AsyncOpenAI, request: CompletionRequest, params: ClientParams
) -> CompletionResult:
    """Send one request, retrying transient failures; raises :class:`GenerationError` when the
    endpoint is misconfigured or the retries run out."""
    sampling = request.params
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await client.completions.create(
                model=params.model,
                prompt=request.prompt,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                n=sampling.n,
                seed=sampling.seed if sampling.seed is not None else openai.omit,
                stop=list(sampling.stop) if sampling.stop else openai.omit,
            )
        except openai.APIError as exc:
            why = _describe(exc)
            where = f"request {request.id!r} (index {request.index}) to {params.base_url}"
            if isinstance(exc, openai.APIStatusError) and exc.status_code in FATAL_STATUSES:
                raise GenerationError(
                    f"{where}: {why}; check client.base_url, client.api_key and client.model "
                    f"({params.model!r})"
                ) from exc
            if not _is_transient(exc):
                return CompletionResult(request.index, request.id, [], {}, attempt, why)
            if attempt > params.max_retries:
                raise GenerationError(
                    f"{where} failed {attempt} times, giving up (client.max_retries="
                    f"{params.max_retries}); last error: {why}. Finished units are kept: "
                    f"rerun to resume."
                ) from exc
            delay = backoff_delay(params, request.id, attempt)
            if isinstance(exc, openai.APIStatusError):
                hinted = _retry_after(exc)
                if hinted is not None:
                    delay = max(delay, min(hinted, params.backoff_max_s))
            log.debug("%s: %s; retry %d in %.2f s", where, why, attempt, delay)
            await asyncio.sleep(delay)
            continue
        return _result_from(request, response, attempt)


# --------------------------------------------------------------------------- concurrent driver


async def _run_all(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines concurrently; the first exception cancels the rest and is re-raised.

    (``asyncio.TaskGroup`` does this from Python 3.11; the package supports 3.10.)
    """
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error


async def complete_all(
    requests: Iterable[CompletionRequest],
    params: ClientParams,
    on_result: Callable[[CompletionResult], None],
    *,
    lookahead: int | None = None,
    client: openai.AsyncOpenAI | None = None,
) -> int:
    """Complete every request with at most ``params.max_concurrency`` in flight; returns how many.

    ``max_concurrency`` workers each take the next request as soon as their last one is done,
    so the endpoint always has that many requests (never waiting for the slowest of a batch).
    Requests are drawn lazily, so ``requests`` may be a generator over millions. Results go to
    ``on_result`` as they finish, in any order. ``lookahead`` (default: unbounded) holds back
    a request while it is that many positions past the oldest unfinished one, which bounds
    how many finished results an in-order consumer must buffer behind a slow request.
    A :class:`GenerationError`, an exception from ``requests`` or from ``on_result`` cancels
    the requests in flight and propagates.
    """
    window = math.inf if lookahead is None else lookahead
    if window < 1:
        raise ValueError(f"lookahead must be at least 1, got {lookahead}")
    iterator = iter(requests)
    gate = asyncio.Condition()
    next_position = 0
    oldest_unfinished = 0
    finished_ahead: set[int] = set()  # finished positions past oldest_unfinished
    exhausted = False
    completed = 0

    def may_start() -> bool:
        return exhausted or next_position < oldest_unfinished + window

    async def worker(api: openai.AsyncOpenAI) -> None:
        nonlocal next_position, oldest_unfinished, exhausted, completed
        while True:
            async with gate:
                await gate.wait_for(may_start)
                if exhausted:
                    return
                request = next(iterator, None)
                if request is None:
                    exhausted = True
                    gate.notify_all()
                    return
                position = next_position
                next_position += 1
            result = await complete_one(api, request, params)
            on_result(result)
            completed += 1
            async with gate:
                finished_ahead.add(position)
                while oldest_unfinished in finished_ahead:
                    finished_ahead.remove(oldest_unfinished)
                    oldest_unfinished += 1
                gate.notify_all()

    owned = client is None
    api = make_client(params) if client is None else client
    try:
        await _run_all([worker(api) for _ in range(params.max_concurrency)])
    finally:
        if owned:
            await api.close()
    return completed


# ----------------------------------------------------------------------------- server waiting


def wait_for_server(
    base_url: str,
    timeout_s: float,
    *,
    api_key: str = "none",
    model: str | None = None,
    poll_interval_s: float = 0.5,
) -> list[str]:
    """Block until ``{base_url}/models`` answers; return the served model ids.

    The polling is :func:`selfalign.serving.launch.wait_ready`'s (one readiness rule for the
    whole project). It is bounded, each probe included, so a server that accepts connections
    but never answers cannot stall a stage; and it blocks the calling thread, so Ctrl-C stops
    it at once. When ``model`` is given and not served, fail at once: every completion would
    be a 404.
    """
    url = api_base(base_url) + "/models"
    started = time.monotonic()
    try:
        wait_ready(base_url, timeout_s, interval_s=poll_interval_s, api_key=api_key)
    except ServerError as exc:
        waited = time.monotonic() - started
        raise ServerNotReadyError(
            f"no OpenAI-compatible server answered at {url} after waiting {waited:.1f} s: {exc}"
        ) from exc
    local = (urlsplit(url).hostname or "") in LOOPBACK_HOSTS
    remaining = max(1.0, timeout_s - (time.monotonic() - started))
    with openai.OpenAI(
        base_url=api_base(base_url),
        api_key=api_key,
        max_retries=0,
        timeout=remaining,
        http_client=openai.DefaultHttpxClient(trust_env=False) if local else None,
    ) as client:
        try:
            served = [entry.id for entry in client.models.list().data]
        except openai.APIError as exc:
            raise ServerNotReadyError(f"{url} answered once, then: {_describe(exc)}") from exc
    if model is not None and model not in served:
        raise GenerationError(f"the server at {url} serves {served}, not {model!r}")
    return served


async def wait_for_server_async(
    base_url: str,
    timeout_s: float,
    *,
    api_key: str = "none",
    model: str | None = None,
    poll_interval_s: float = 0.5,
) -> list[str]:
    """:func:`wait_for_server` in a worker thread, for callers inside an event loop.

    A cancelled wait leaves its thread polling until ``timeout_s`` ends (threads cannot be
    interrupted), and ``asyncio.run`` waits for it on exit: scripts should call the blocking
    :func:`wait_for_server` before entering the loop, as :func:`run_generation` does.
    """
    return await asyncio.to_thread(
        wait_for_server,
        base_url,
        timeout_s,
        api_key=api_key,
        model=model,
        poll_interval_s=poll_interval_s,
    )


# ------------------------------------------------------------------------ resumable generation

#: ``make_record(request, result) -> (records, delta)``: turns one result into output records
#: and counts (``n_in``/``n_out``/``drops``, numeric ``extra``) that are summed over the stage.
MakeRecord = Callable[[CompletionRequest, CompletionResult], tuple[list[JsonObj], StageStats]]


def one_record_per_request(build: Callable[[CompletionRequest, CompletionResult], JsonObj]) -> MakeRecord:
    """A :data:`MakeRecord` for the evaluation stages, which keep one record per request whatever
    its outcome: a record with an ``error`` (a request the server refused) is warned about and
    counted as ``failed_requests``, never dropped (its task is scored as a failure)."""

    def make_record(request: CompletionRequest, result: CompletionResult) -> tuple[list[JsonObj], StageStats]:
        stats = StageStats(n_in=1, n_out=1)
        record = build(request, result)
        if "error" in record:
            log.warning("%s: request failed: %s", request.id, record["error"])
            stats.extra["failed_requests"] = 1
        return [record], stats

    return make_record


def _request_digest(request: CompletionRequest) -> bytes:
    return hashlib.sha256(dumps(request.to_json()).encode("utf-8")).digest()


@dataclass
class _Plan:
    """What a first pass over the requests learns: their number and a digest per unit."""

    total: int = 0
    unit_digests: list[str] = field(default_factory=list)


def _plan(requests: Iterable[CompletionRequest], per_unit: int) -> _Plan:
    """Count the requests, check their order, and hash each unit's worth of them.

    The hashes tie the resumable parts to the exact prompts and sampling settings, so parts
    from a run with other inputs are discarded rather than mixed in; the second pass checks
    them again, so a prompt builder that is not deterministic fails loudly instead of
    silently producing a file no uninterrupted run would.
    """
    plan = _Plan()
    digest = hashlib.sha256()
    previous: int | None = None
    for request in requests:
        if previous is not None and request.index <= previous:
            raise ValueError(
                f"requests must come in increasing index order: {request.index} after {previous}"
            )
        previous = request.index
        digest.update(_request_digest(request))
        plan.total += 1
        if plan.total % per_unit == 0:
            plan.unit_digests.append(digest.hexdigest())
            digest = hashlib.sha256()
    if plan.total % per_unit:
        plan.unit_digests.append(digest.hexdigest())
    return plan


def _add_numbers(into: dict[str, Any], delta: Mapping[str, Any], where: str) -> None:
    """Sum numeric values (and nested mappings of them) of ``delta`` into ``into``."""
    for key, value in delta.items():
        if isinstance(value, Mapping):
            _add_numbers(into.setdefault(key, {}), value, f"{where}.{key}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
        else:
            raise TypeError(f"{where}.{key}: only numbers (or mappings of them) can be summed")


#: The per-request counts every unit's stats carry (and the stage's, zero when there is nothing).
_REQUEST_COUNTS = (
    "requests",
    "samples",
    "attempts",
    "retries",
    "errors",
    "prompt_tokens",
    "completion_tokens",
)


class _UnitWriter:
    """Collects results by unit and writes each unit, in request order, once it is complete."""

    def __init__(
        self,
        run: UnitRun,
        plan: _Plan,
        per_unit: int,
        make_record: MakeRecord,
        on_progress: Callable[[CompletionResult], None],
    ) -> None:
        self.run = run
        self.plan = plan
        self.per_unit = per_unit
        self.make_record = make_record
        self.on_progress = on_progress
        self.inflight: dict[int, tuple[int, CompletionRequest]] = {}
        self.buffers: dict[int, dict[int, tuple[CompletionRequest, CompletionResult]]] = {}

    def unit_size(self, unit: int) -> int:
        return min(self.per_unit, self.plan.total - unit * self.per_unit)

    def feed(
        self, requests: Iterable[CompletionRequest], done: set[int]
    ) -> Iterator[CompletionRequest]:
        """The requests of the units not yet done, each registered before it is sent."""
        digest = hashlib.sha256()
        count = 0
        for position, request in enumerate(requests):
            count += 1
            unit, offset = divmod(position, self.per_unit)
            if unit >= len(self.plan.unit_digests):
                raise GenerationError("the requests changed between passes: there are more now")
            digest.update(_request_digest(request))
            if offset == self.unit_size(unit) - 1:
                if digest.hexdigest() != self.plan.unit_digests[unit]:
                    raise GenerationError(
                        f"the requests of unit {unit} changed between two passes over them "
                        f"(at index {request.index}): the request builder is not deterministic"
                    )
                digest = hashlib.sha256()
            if unit in done:
                continue
            self.inflight[request.index] = (position, request)
            yield request
        if count != self.plan.total:
            raise GenerationError(
                f"the requests changed between passes: {self.plan.total} then {count}"
            )

    def add(self, result: CompletionResult) -> None:
        position, request = self.inflight.pop(result.index)
        unit = position // self.per_unit
        buffer = self.buffers.setdefault(unit, {})
        buffer[position] = (request, result)
        self.on_progress(result)
        if len(buffer) == self.unit_size(unit):
            del self.buffers[unit]
            records, stats = self._unit_result(buffer)
            self.run.write(unit, records, stats)

    def _unit_result(
        self, buffer: dict[int, tuple[CompletionRequest, CompletionResult]]
    ) -> tuple[list[JsonObj], StageStats]:
        records: list[JsonObj] = []
        stats = StageStats()
        extra: dict[str, Any] = {}
        finish_reasons: Counter[str] = Counter()
        counts = Counter[str]()
        for position in sorted(buffer):
            request, result = buffer[position]
            produced, delta = self.make_record(request, result)
            records.extend(produced)
            stats.merge(delta)
            clash = RESERVED_EXTRA.intersection(delta.extra)
            if clash:
                raise ValueError(f"make_record used reserved stats key(s): {sorted(clash)}")
            _add_numbers(extra, delta.extra, "extra")
            counts["requests"] += 1
            counts["attempts"] += result.attempts
            counts["retries"] += result.attempts - 1
            counts["errors"] += result.error is not None
            counts["samples"] += 0 if result.error else len(result.choices)
            counts["prompt_tokens"] += result.usage.get("prompt_tokens", 0)
            counts["completion_tokens"] += result.usage.get("completion_tokens", 0)
            if result.error is None:
                finish_reasons.update(str(reason) for _, reason in result.choices)
        stats.extra = {**extra, **counts, "finish_reasons": dict(sorted(finish_reasons.items()))}
        return records, stats


@dataclass
class _Generation:
    """Generation as a :class:`selfalign.runtime.UnitStage`: a unit is ``requests_per_unit``
    requests; the requests of the units left are sent through :func:`complete_all` and each unit
    is written, in request order, once its last request is answered."""

    requests: Callable[[], Iterable[CompletionRequest]]
    params: ClientParams
    make_record: MakeRecord
    fingerprint_value: Any
    desc: str
    drops: bool
    asynchronous: bool = False
    requests_plan: _Plan = field(default_factory=_Plan, init=False)

    def plan(self) -> UnitPlan:
        per_unit = self.params.requests_per_unit
        self.requests_plan = plan = _plan(self.requests(), per_unit)
        return UnitPlan(
            stage="generation.client",
            version=CLIENT_VERSION,
            key={
                "model": self.params.model,
                "unit_digests": hashlib.sha256("".join(plan.unit_digests).encode()).hexdigest(),
                "caller": self.fingerprint_value,
            },
            total=plan.total,
            per_unit=per_unit,
            drops=self.drops,
            balances=False,  # a request gives several samples; the caller's counts balance
            desc=self.desc,
            item="req",
        )

    def process(self, run: UnitRun) -> Awaitable[None] | None:
        params = self.params
        if self.asynchronous:
            return self._process_async(run)
        wait_for_server(params.base_url, params.ready_timeout_s, api_key=params.api_key, model=params.model)
        asyncio.run(self._generate(run))
        return None

    async def _process_async(self, run: UnitRun) -> None:
        params = self.params
        await wait_for_server_async(params.base_url, params.ready_timeout_s, api_key=params.api_key,
                                    model=params.model)
        await self._generate(run)

    async def _generate(self, run: UnitRun) -> None:
        """Send the requests of the units not done yet, writing each unit once it is complete."""
        seen = Counter[str]()

        def on_progress(result: CompletionResult) -> None:
            seen["retries"] += result.attempts - 1
            seen["errors"] += result.error is not None
            run.advance(1)
            if seen["retries"] or seen["errors"]:
                run.bar.set_postfix(seen, refresh=False)

        writer = _UnitWriter(run, self.requests_plan, self.params.requests_per_unit, self.make_record, on_progress)
        await complete_all(writer.feed(self.requests(), set(run.done)), self.params, writer.add,
                           lookahead=self.params.lookahead)

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        """The units' counts added up, with the request counts and units (resumed)."""
        stats = StageStats()
        extra: dict[str, Any] = dict.fromkeys(_REQUEST_COUNTS, 0)
        for summary in units:
            unit = StageStats.from_json(summary)
            stats.merge(unit)
            _add_numbers(extra, unit.extra, "extra")
        extra["finish_reasons"] = dict(sorted(extra.get("finish_reasons", {}).items()))
        extra["units"] = run.plan.n_units
        extra["units_resumed"] = len(run.done)
        stats.extra = extra
        return stats


def run_generation(
    requests: Callable[[], Iterable[CompletionRequest]],
    output: str | os.PathLike[str],
    params: ClientParams,
    make_record: MakeRecord,
    *,
    fingerprint_value: Any = None,
    desc: str = "generate",
    show_progress: bool = True,
    drops: bool = False,
) -> StageStats:
    """Generate for every request and write ``make_record``'s records to ``output`` in order.

    ``requests`` is called twice (a counting/hashing pass, then the sending pass) and must give
    the same requests each time, in increasing ``index`` order. ``fingerprint_value`` is what
    else decides the records (the caller's parameters, input hashes, code version): with the
    requests' hashes and the model name it keys the resumable parts, so a rerun after a kill
    keeps finished units only if nothing that shaped them changed. The server is waited for
    (``ready_timeout_s``) only when some unit is left to do. Returns the summed counts, with
    ``extra`` holding requests, samples, attempts, retries, errors (permanent, per request),
    finish_reasons, token usage, units (done before this run: units_resumed) and the caller's
    own numeric extras. With ``drops``, the drop records ``make_record`` keeps are written to
    the output's drop file (:func:`selfalign.chain.dropped_path`).
    """
    stage = _Generation(requests, params, make_record, fingerprint_value, desc, drops)
    return drive(stage, output, show_progress=show_progress)


async def run_generation_async(
    requests: Callable[[], Iterable[CompletionRequest]],
    output: str | os.PathLike[str],
    params: ClientParams,
    make_record: MakeRecord,
    *,
    fingerprint_value: Any = None,
    desc: str = "generate",
    show_progress: bool = True,
    drops: bool = False,
) -> StageStats:
    """:func:`run_generation` for callers inside an event loop (see
    :func:`wait_for_server_async` for the one difference on cancellation)."""
    stage = _Generation(requests, params, make_record, fingerprint_value, desc, drops, asynchronous=True)
    return await drive_async(stage, output, show_progress=show_progress)
