"""The model-driven stages: the LLM judge, S->C, C->I and I->R, one shard at a time.

Each stage reads the previous artifact, builds one completion request per record with the
upstream prompt for that record's *global* index (its 0-based line in the stage's input, so a
record gets the same prompt, few-shot draw and seed whatever the sharding), sends them through
:func:`selfalign.generation.client.run_generation` (refilling pool, retries, resumable units in
index order) and turns each answer into an output record or a counted drop:

=============  =====================  ===================  =====================================
stage          input field            adds                 drops (counted, by reason)
=============  =====================  ===================  =====================================
judge          ``content``            ``judge``            ``judge_no``, ``judge_tie``
concepts       ``content``            ``concepts``         ``parse_<reason>``
instructions   ``concepts``           ``instruction``,     ``parse_<reason>``
                                      ``property``
responses      ``instruction``        ``responses`` (one   ``no_response`` (every sample failed
                                      per parsed sample)   to parse; per-sample reasons in stats)
=============  =====================  ===================  =====================================

Every stage also drops ``request_failed`` (the server refused the request, e.g. a prompt longer
than its context) and the judge ``no_docstring``. Records keep their ``id`` and every field they
came with; ``generation.<stage>`` records the index, seed and few-shot examples that made them.

The server is either started by the job (vLLM or the CPU server, stopped when the job ends) or
an endpoint the user names; see :class:`ServingParams`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from ..benchdata import fetch_pinned
from ..config import check_choice, reject_unknown
from ..records import JsonObj, RecordError, count_lines, fingerprint, iter_jsonl, sha256_file
from ..serving.launch import ServerProcess, free_port, vllm_command
from ..stage import StageStats, shard_bounds
from .client import (
    ClientParams,
    CompletionRequest,
    CompletionResult,
    SamplingParams,
    run_generation,
)
from .prompts import (
    JUDGE_DUMMY_CODE,
    JUDGE_MAX_PROMPT_TOKENS,
    DocstringError,
    Fewshot,
    GenerationParams,
    ModeParams,
    ParseError,
    PromptRequest,
    concepts_prompt,
    instruction_prompt,
    judge_prompt,
    language_of,
    load_fewshot,
    load_tiny_fewshot,
    parse_concepts,
    parse_instruction,
    parse_judge,
    parse_response,
    response_prompt,
)

log = logging.getLogger(__name__)

#: Bump when how records are built from completions changes: stale resumable parts are dropped.
STAGES_VERSION = 1

StageName = Literal["judge", "concepts", "instructions", "responses"]
STAGE_NAMES: tuple[StageName, ...] = ("judge", "concepts", "instructions", "responses")

#: Which field of its input record each stage prompts with, and that field's type.
INPUT_FIELDS: Mapping[StageName, tuple[str, type]] = {
    "judge": ("content", str),
    "concepts": ("content", str),
    "instructions": ("concepts", list),
    "responses": ("instruction", str),
}


class StageError(RuntimeError):
    """A stage that cannot run as configured (the message says which setting)."""


# -------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class FewshotSource:
    """Where the S->C / C->I / I->R few-shot file comes from.

    ``upstream``: the upstream file, byte for byte, by pinned URL and sha256 (looked up in
    ``mirrors`` and ``cache_dir`` first); ``tiny``: the project's own 16 examples shipped in the
    package; ``file``: a local file of your own in the same layout (``path``).
    """

    source: Literal["upstream", "tiny", "file"] = "upstream"
    url: str | None = None
    sha256: str | None = None
    path: str | None = None
    mirrors: tuple[str, ...] = ()
    cache_dir: str = "~/.cache/selfalign/prompts"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FewshotSource:
        reject_unknown(cls, data, "generation.fewshot")
        values = dict(data)
        values["mirrors"] = tuple(values.get("mirrors") or ())
        made = cls(**values)
        if made.source == "upstream" and not (made.url and made.sha256):
            raise ValueError("generation.fewshot: source upstream needs url and sha256")
        if made.source == "file" and not made.path:
            raise ValueError("generation.fewshot: source file needs path")
        if made.source not in ("upstream", "tiny", "file"):
            raise ValueError(
                f"generation.fewshot.source must be upstream, tiny or file, got {made.source!r}"
            )
        return made

    def load(self) -> Fewshot:
        if self.source == "tiny":
            return load_tiny_fewshot()
        if self.source == "file":
            return load_fewshot(Path(cast(str, self.path)).expanduser())
        path = fetch_pinned(
            cast(str, self.url),
            cast(str, self.sha256),
            mirrors=[Path(m).expanduser() for m in self.mirrors],
            cache_dir=Path(self.cache_dir).expanduser(),
        )
        return load_fewshot(path)


@dataclass(frozen=True)
class VllmParams:
    """How a job launches vLLM: ``launcher`` goes in front of ``vllm serve`` (e.g. ``apptainer
    exec --nv docker://vllm/vllm-openai@sha256:...``), ``args`` after it."""

    launcher: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    batch_invariant: bool = True  # VLLM_BATCH_INVARIANT=1 for the server

    def server_env(self) -> dict[str, str]:
        return {"VLLM_BATCH_INVARIANT": "1"} if self.batch_invariant else {}


@dataclass(frozen=True)
class CpuServerParams:
    """The CPU server's settings; ``slots`` requests run at once (one process each)."""

    threads: int = 1
    slots: int = 1
    max_batch: int = 8
    dtype: str = "float32"


@dataclass(frozen=True)
class ServingParams:
    """Which server answers a generation job.

    ``backend``: ``vllm`` (the job starts ``vllm serve <model> --revision <rev>``), ``cpu``
    (the job starts :mod:`selfalign.serving.cpu_server` on the model directory) or ``endpoint``
    (a running OpenAI-compatible server at ``endpoint``; the job only waits for it).
    """

    backend: Literal["vllm", "cpu", "endpoint"]
    served_model_name: str
    endpoint: str | None = None
    ready_timeout_s: float = 1800.0
    vllm: VllmParams = field(default_factory=VllmParams)
    cpu: CpuServerParams = field(default_factory=CpuServerParams)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingParams:
        reject_unknown(cls, data, "serving")
        values = dict(data)
        vllm = dict(values.pop("vllm", None) or {})
        reject_unknown(VllmParams, vllm, "serving.vllm")
        cpu = dict(values.pop("cpu", None) or {})
        reject_unknown(CpuServerParams, cpu, "serving.cpu")
        made = cls(
            **values,
            vllm=VllmParams(tuple(vllm.get("launcher") or ()), tuple(vllm.get("args") or ()),
                            bool(vllm.get("batch_invariant", True))),
            cpu=CpuServerParams(**cpu),
        )
        if made.backend not in ("vllm", "cpu", "endpoint"):
            raise ValueError(f"serving.backend must be vllm, cpu or endpoint, got {made.backend!r}")
        if made.backend == "endpoint" and not made.endpoint:
            raise ValueError("serving.backend endpoint needs serving.endpoint (the server's URL)")
        return made


@dataclass(frozen=True)
class ModelSpec:
    """The base model: a Hub name at a pinned revision, or a local directory."""

    name: str
    revision: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        values = {k: v for k, v in data.items() if k in ("name", "revision")}
        return cls(**values)


JUDGE_OVERLONG = ("dummy", "drop", "server")


class PromptTooLong(ValueError):
    """A judge prompt over the release's token limit, under ``judge_overlong: drop``."""


TokenCounter = Callable[[str], int]


def load_token_counter(name_or_dir: str | os.PathLike[str], revision: str | None) -> TokenCounter:
    """``len(tokenizer.encode(text))`` with the base model's tokenizer, as filter_dataset.py
    counted (vLLM's ``get_tokenizer()``, the Hugging Face tokenizer, special tokens included)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(name_or_dir), revision=revision)
    return lambda text: len(tokenizer.encode(text))


@dataclass(frozen=True)
class StageSettings:
    """Everything a generation job needs: model, server, client, prompts and sampling."""

    model: ModelSpec
    serving: ServingParams
    client: Mapping[str, Any]
    fewshot: FewshotSource
    sampling: GenerationParams
    limit: int | None = None
    judge_overlong: str = "dummy"
    """A judge prompt over ``JUDGE_MAX_PROMPT_TOKENS`` base-model tokens: ``dummy`` judges the
    release's dummy function instead and gives the record that verdict (filter_dataset.py at
    0b19dbc); ``drop`` drops the record (``prompt_too_long``); ``server`` sends it and lets the
    server refuse (``request_failed``), counting no tokens."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageSettings:
        """From ``{"model", "serving", "client", "generation"}`` sections of the config."""
        for key in ("model", "serving", "client", "generation"):
            if key not in data:
                raise ValueError(f"generation settings need the {key!r} section")
        generation = dict(data["generation"])
        sampling = {
            k: generation[k]
            for k in ("judge", "concepts", "instructions", "responses")
            if k in generation
        }
        overlong = generation.get("judge_overlong", "dummy")
        check_choice("generation.judge_overlong", overlong, JUDGE_OVERLONG)
        limit = generation.get("limit")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"generation.limit must be null or an integer >= 0, got {limit!r}")
        return cls(
            model=ModelSpec.from_dict(data["model"]),
            serving=ServingParams.from_dict(data["serving"]),
            client=dict(data["client"]),
            fewshot=FewshotSource.from_dict(generation.get("fewshot") or {"source": "tiny"}),
            sampling=GenerationParams.from_dict(sampling),
            limit=limit,
            judge_overlong=overlong,
        )

    @property
    def batch_invariant(self) -> bool:
        """Whether the server answered batch-invariant (vLLM's mode; the CPU server always is:
        it decodes each request's rows alone)."""
        return self.serving.backend != "vllm" or self.serving.vllm.batch_invariant

    def client_params(self, base_url: str) -> ClientParams:
        return ClientParams.from_dict(
            {**self.client, "base_url": base_url, "model": self.serving.served_model_name}
        )


# -------------------------------------------------------------------------------- the server


#: vLLM's batch-invariant kernels need this NVIDIA compute capability or higher (its docs).
BATCH_INVARIANT_MIN_CC = (8, 0)


def require_batch_invariant_gpu() -> None:
    """Stop before starting vLLM where ``nvidia-smi`` reports a GPU too old for its
    batch-invariant mode; where there is no ``nvidia-smi`` (a container launcher, a fake in
    tests) vLLM itself decides."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return
    try:
        caps = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return
    for line in caps:
        name, _, cap = line.rpartition(",")
        try:
            major, minor = (int(x) for x in cap.strip().split("."))
        except ValueError:
            continue
        if (major, minor) < BATCH_INVARIANT_MIN_CC:
            raise StageError(
                f"serving.vllm.batch_invariant: {name.strip()} has compute capability {major}.{minor}; vLLM's "
                f"batch-invariant mode needs >= {BATCH_INVARIANT_MIN_CC[0]}.{BATCH_INVARIANT_MIN_CC[1]}. "
                "Set serving.vllm.batch_invariant: false (outputs then depend on what is batched together)."
            )


@contextlib.contextmanager
def serve(
    settings: StageSettings, *, model_dir: str | Path | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """The server for a job, ready, as its ``http://host:port``; stopped when the block ends.

    ``model_dir`` (the tiny profile's built model) stands in for ``model.name`` on the CPU
    server. An ``endpoint`` is only waited for and left running.
    """
    serving = settings.serving
    options: dict[str, Any] = {"ready_timeout_s": serving.ready_timeout_s}
    if log_path is not None:
        options["log_path"] = log_path
    if serving.backend == "endpoint":
        server = ServerProcess(None, cast(str, serving.endpoint), **options)
    elif serving.backend == "cpu":
        cpu = serving.cpu
        server = ServerProcess.cpu(
            model_dir or settings.model.name,
            served_model_name=serving.served_model_name,
            threads=cpu.threads,
            max_batch=cpu.max_batch,
            slots=cpu.slots,
            extra_args=["--dtype", cpu.dtype],
            **options,
        )
    else:
        port = free_port()
        command = [
            *serving.vllm.launcher,
            *vllm_command(
                str(model_dir or settings.model.name),
                None if model_dir else settings.model.revision,
                port,
                serving.vllm.args,
                served_model_name=serving.served_model_name,
            ),
        ]
        if serving.vllm.batch_invariant:
            require_batch_invariant_gpu()
        server = ServerProcess(command, f"http://127.0.0.1:{port}", env=serving.vllm.server_env(), **options)
    with server:
        log.info("server ready at %s (%s)", server.base_url, server.describe)
        yield server.base_url


# -------------------------------------------------------------------------------- the stages


@dataclass
class _Pending:
    record: JsonObj
    prompt: PromptRequest


class _StageRun:
    """One shard of one stage: request building, record building, and their shared state."""

    def __init__(
        self,
        stage: StageName,
        input_path: Path,
        settings: StageSettings,
        lo: int,
        hi: int,
        token_counter: TokenCounter | None = None,
    ) -> None:
        self.stage = stage
        self.input_path = input_path
        self.settings = settings
        self.lo, self.hi = lo, hi
        self.mode_params: ModeParams = settings.sampling.for_kind(
            "judge"
            if stage == "judge"
            else {"concepts": "S->C", "instructions": "C->I", "responses": "I->R"}[stage]  # type: ignore[arg-type]
        )
        self.fewshot: Fewshot | None = None if stage == "judge" else settings.fewshot.load()
        self.pending: dict[int, _Pending] = {}
        self.unprompted = StageStats()
        self.token_counter = token_counter
        self.dummy_indices: set[int] = set()
        if token_counter is not None:
            # filter_dataset.py: tokens of the dummy prompt minus those of the dummy code
            dummy = judge_prompt(JUDGE_DUMMY_CODE, 0).prompt
            self.fewshot_tokens = token_counter(dummy) - token_counter(JUDGE_DUMMY_CODE)

    # ---- requests

    def _records(self) -> Iterator[tuple[int, int, JsonObj]]:
        """``(global index, line, record)`` of this shard, checked for the field it needs."""
        name, kind = INPUT_FIELDS[self.stage]
        for index, (line, record) in enumerate(
            iter_jsonl(self.input_path, {"id": str, name: kind})
        ):
            if index >= self.hi:
                return
            if index < self.lo:
                continue
            if self.stage == "instructions" and not all(isinstance(c, str) for c in record[name]):
                raise RecordError(
                    self.input_path, line, "field 'concepts' must be a list of strings"
                )
            yield index, line, record

    def _prompt(self, index: int, record: JsonObj) -> PromptRequest:
        p = self.mode_params
        if self.stage == "judge":
            code = record["content"]
            if self.token_counter is not None:
                tokens = self.token_counter(code) + self.fewshot_tokens
                if tokens > JUDGE_MAX_PROMPT_TOKENS:
                    if self.settings.judge_overlong == "drop":
                        raise PromptTooLong(f"{tokens} tokens")
                    self.dummy_indices.add(index)
                    code = JUDGE_DUMMY_CODE
            return judge_prompt(code, index, base_seed=p.seed)
        fewshot = cast(Fewshot, self.fewshot)
        if self.stage == "concepts":
            return concepts_prompt(
                fewshot, record["content"], index, base_seed=p.seed, num_fewshots=p.num_fewshots
            )
        if self.stage == "instructions":
            return instruction_prompt(
                fewshot,
                record["concepts"],
                index,
                language=language_of(record),
                base_seed=p.seed,
                num_fewshots=p.num_fewshots,
            )
        return response_prompt(
            fewshot, record["instruction"], index, base_seed=p.seed, num_fewshots=p.num_fewshots
        )

    def count_unpromptable(self) -> None:
        """First pass: records no prompt can be built for are counted drops (judge: no docstring)."""
        for index, _line, record in self._records():
            try:
                self._prompt(index, record)
            except DocstringError:
                self.unprompted.n_in += 1
                self.unprompted.drop("no_docstring")
            except PromptTooLong:
                self.unprompted.n_in += 1
                self.unprompted.drop("prompt_too_long")

    def requests(self) -> Iterator[CompletionRequest]:
        p = self.mode_params
        for index, _line, record in self._records():
            try:
                prompt = self._prompt(index, record)
            except (DocstringError, PromptTooLong):
                continue
            self.pending[index] = _Pending(record, prompt)
            yield CompletionRequest(
                index=index,
                id=str(record["id"]),
                prompt=prompt.prompt,
                params=SamplingParams(
                    max_tokens=p.max_tokens,
                    temperature=p.temperature,
                    n=p.n,
                    seed=prompt.seed,
                    stop=p.stop,
                ),
            )

    # ---- records

    def make_record(
        self, request: CompletionRequest, result: CompletionResult
    ) -> tuple[list[JsonObj], StageStats]:
        pending = self.pending.pop(request.index)
        stats = StageStats(n_in=1)
        if not result.ok:
            log.warning(
                "%s: request for %s (index %d) failed: %s",
                self.stage,
                request.id,
                request.index,
                result.error,
            )
            stats.drop("request_failed")
            return [], stats
        provenance: dict[str, Any] = {
            "index": request.index,
            "seed": pending.prompt.seed,
            "fewshot": list(pending.prompt.shots),
        }
        record = dict(pending.record)
        generation = dict(record.get("generation") or {})
        out: JsonObj | None
        if self.stage == "responses":
            out, stats = self._responses(record, result, stats)
        else:
            text, finish_reason = result.choices[0]
            out = self._single(record, text, finish_reason, stats, provenance, pending.prompt)
        if out is None:
            return [], stats
        generation[self.stage] = {**provenance, **out.pop("_provenance", {})}
        out["generation"] = generation
        stats.n_out = 1
        return [out], stats

    def _single(
        self,
        record: JsonObj,
        text: str,
        finish_reason: str | None,
        stats: StageStats,
        provenance: dict[str, Any],
        prompt: PromptRequest,
    ) -> JsonObj | None:
        try:
            if self.stage == "judge":
                verdict = parse_judge(text)
                extra: dict[str, Any] = {"answer": text, "yes": verdict.yes, "no": verdict.no}
                if prompt.index in self.dummy_indices:
                    extra["dummy_prompt"] = True  # over-long: the dummy's verdict, as the release
                if not verdict.keep:
                    stats.drop("judge_tie" if verdict.tie else "judge_no")
                    return None
                return {**record, "_provenance": extra}
            if self.stage == "concepts":
                concepts = parse_concepts(text, finish_reason=finish_reason, allow_empty=False)
                return {**record, "concepts": concepts}
            instruction = parse_instruction(text, finish_reason=finish_reason, allow_empty=False)
            prop = prompt.property.to_json() if prompt.property is not None else None
            return {**record, "instruction": instruction, "property": prop}
        except ParseError as exc:
            stats.drop(f"parse_{exc.reason}")
            return None

    def _responses(
        self, record: JsonObj, result: CompletionResult, stats: StageStats
    ) -> tuple[JsonObj | None, StageStats]:
        responses = []
        sample_drops: Counter[str] = Counter()
        for sample, (text, finish_reason) in enumerate(result.choices):
            try:
                response = parse_response(text, finish_reason=finish_reason, allow_empty=False)
            except ParseError as exc:
                sample_drops[f"parse_{exc.reason}"] += 1
                continue
            responses.append({"sample": sample, "response": response})
        stats.extra = {"samples_kept": len(responses), "sample_drops": dict(sample_drops)}
        if not responses:
            stats.drop("no_response")
            return None, stats
        return {**record, "responses": responses}, stats


def run_stage(
    stage: StageName,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: StageSettings,
    *,
    shard: int = 0,
    num_shards: int = 1,
    model_dir: str | Path | None = None,
    server_log: Path | None = None,
    show_progress: bool = True,
    base_url: str | None = None,
    token_counter: TokenCounter | None = None,
) -> StageStats:
    """Run one shard of ``stage`` and write its records; returns counts for the sidecar.

    The server comes from ``settings.serving`` unless ``base_url`` names one already running
    (tests, or a caller that serves several stages). A shard with nothing to do starts no
    server. ``generation.limit`` (the tiny profile's) keeps the judge to the first ``limit``
    seeds; later stages take everything the stage before them produced.
    """
    if stage not in STAGE_NAMES:
        raise StageError(
            f"unknown generation stage {stage!r}; expected one of {', '.join(STAGE_NAMES)}"
        )
    input_path = Path(input_path)
    total = count_lines(input_path)
    limit = settings.limit if stage == "judge" else None
    n = total if limit is None else min(total, limit)
    lo, hi = shard_bounds(n, shard, num_shards)
    if stage == "judge" and settings.judge_overlong != "server" and token_counter is None and hi > lo:
        token_counter = load_token_counter(model_dir or settings.model.name, None if model_dir else settings.model.revision)
    run = _StageRun(stage, input_path, settings, lo, hi, token_counter if stage == "judge" else None)
    run.count_unpromptable()
    p = run.mode_params
    fingerprint_value = {
        "stage": stage,
        "version": STAGES_VERSION,
        "input_sha256": sha256_file(input_path),
        "shard": [shard, num_shards, lo, hi],
        "sampling": {
            k: getattr(p, k)
            for k in ("temperature", "max_tokens", "n", "stop", "num_fewshots", "seed")
        },
        "fewshot": run.fewshot.sha256 if run.fewshot is not None else None,
        "model": [settings.model.name, settings.model.revision],
        "judge_overlong": settings.judge_overlong if stage == "judge" else None,
    }

    def generate(url: str) -> StageStats:
        return run_generation(
            run.requests,
            output,
            settings.client_params(url),
            run.make_record,
            fingerprint_value=fingerprint(fingerprint_value),
            desc=f"{stage} {shard:04d}",
            show_progress=show_progress,
        )

    prompted = hi - lo - run.unprompted.n_in
    if base_url is not None:
        stats = generate(base_url)
    elif prompted == 0:
        stats = generate("http://127.0.0.1:1")  # nothing to send: writes the empty output
    else:
        with serve(settings, model_dir=model_dir, log_path=server_log) as url:
            stats = generate(url)
    stats.merge(run.unprompted)
    stats.extra["records_beyond_limit"] = (total - n) if shard == 0 else 0
    stats.extra["batch_invariant"] = settings.batch_invariant
    stats.extra["fewshot_sha256"] = run.fewshot.sha256 if run.fewshot is not None else None
    if stage == "judge":
        stats.extra["judge_dummy_prompts"] = len(run.dummy_indices)
    stats.check_balance()
    return stats


def judge_shots_text() -> str:
    """The judge's seven solved issues, for the tiny model to learn the judge's format from."""
    from .prompts import _SOLVED

    return "".join(_SOLVED)
