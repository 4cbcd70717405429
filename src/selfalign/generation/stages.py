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

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ..chain import SAMPLE_DROP_PREFIX
from ..config import check_choice, check_params
from ..fetch import fetch_pinned
from ..records import JsonObj, RecordError, count_lines, iter_jsonl, sha256_file
from ..runtime import StageStats, drop_record, interleave_drops, shard_bounds
from ..serving import ModelSpec, ServingParams, ServingSettings, serve
from .client import (
    ClientParams,
    CompletionRequest,
    CompletionResult,
    SamplingParams,
    run_generation,
)
from .judge import (
    JUDGE_DUMMY_CODE,
    JUDGE_MAX_PROMPT_TOKENS,
    DocstringError,
    judge_prompt,
    parse_judge,
)
from .prompts import (
    Fewshot,
    GenerationParams,
    ModeParams,
    ParseError,
    PromptRequest,
    concepts_prompt,
    instruction_prompt,
    language_of,
    load_fewshot,
    load_tiny_fewshot,
    parse_concepts,
    parse_instruction,
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
        check_params(cls, data, "generation.fewshot")  # types, choices, the sha256's form: the schema's
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
    def server(self) -> ServingSettings:
        """The model, server and client part: what :func:`selfalign.serving.serve` needs."""
        return ServingSettings(self.model, self.serving, self.client)

    @property
    def batch_invariant(self) -> bool:
        return self.server.batch_invariant

    def client_params(self, base_url: str) -> ClientParams:
        return self.server.client_params(base_url)


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
            iter_jsonl(self.input_path, {"id": str, name: kind}, unique="id")
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
            except DocstringError as exc:
                self.unprompted.n_in += 1
                self.unprompted.drop("no_docstring", id=str(record["id"]), detail={"index": index, "error": str(exc)})
            except PromptTooLong as exc:
                self.unprompted.n_in += 1
                self.unprompted.drop("prompt_too_long", id=str(record["id"]), detail={"index": index, "error": str(exc)})

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
            stats.drop("request_failed", id=request.id, detail={"index": request.index, "error": result.error})
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
            out, stats = self._responses(record, result, stats, request.index)
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
        record_id = str(record["id"])
        try:
            if self.stage == "judge":
                verdict = parse_judge(text)
                extra: dict[str, Any] = {"answer": text, "yes": verdict.yes, "no": verdict.no}
                if prompt.index in self.dummy_indices:
                    extra["dummy_prompt"] = True  # over-long: the dummy's verdict, as the release
                if not verdict.keep:
                    stats.drop(
                        "judge_tie" if verdict.tie else "judge_no",
                        id=record_id,
                        detail={"index": prompt.index, "completion": text, "yes": verdict.yes, "no": verdict.no},
                    )
                    return None
                return {**record, "_provenance": extra}
            if self.stage == "concepts":
                concepts = parse_concepts(text, finish_reason=finish_reason, allow_empty=False)
                return {**record, "concepts": concepts}
            instruction = parse_instruction(text, finish_reason=finish_reason, allow_empty=False)
            prop = prompt.property.to_json() if prompt.property is not None else None
            return {**record, "instruction": instruction, "property": prop}
        except ParseError as exc:
            stats.drop(f"parse_{exc.reason}", id=record_id, detail=_parse_detail(prompt.index, finish_reason, text))
            return None

    def _responses(
        self, record: JsonObj, result: CompletionResult, stats: StageStats, index: int
    ) -> tuple[JsonObj | None, StageStats]:
        responses = []
        sample_drops: Counter[str] = Counter()
        failed: list[JsonObj] = []
        for sample, (text, finish_reason) in enumerate(result.choices):
            try:
                response = parse_response(text, finish_reason=finish_reason, allow_empty=False)
            except ParseError as exc:
                sample_drops[f"parse_{exc.reason}"] += 1
                # one drop record per dropped sample too (reason sample:<why>): the funnel's
                # sample row counts them (stats.sample_drops), not the record drops
                failed.append(drop_record(f"{record['id']}/{sample}", f"{SAMPLE_DROP_PREFIX}parse_{exc.reason}",
                                          _parse_detail(index, finish_reason, text)))
                continue
            responses.append({"sample": sample, "response": response})
        stats.extra = {"samples_kept": len(responses), "sample_drops": dict(sample_drops)}
        stats.dropped.extend(failed)
        if not responses:
            stats.drop("no_response", id=str(record["id"]), detail={"index": index, "samples": len(result.choices)})
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
            fingerprint_value=fingerprint_value,
            desc=f"{stage} {shard:04d}",
            show_progress=show_progress,
            drops=True,
        )

    prompted = hi - lo - run.unprompted.n_in
    if base_url is not None:
        stats = generate(base_url)
    elif prompted == 0:
        stats = generate("http://127.0.0.1:1")  # nothing to send: writes the empty output
    else:
        with serve(settings.server, model_dir=model_dir, log_path=server_log) as url:
            stats = generate(url)
    stats.merge(run.unprompted)
    if run.unprompted.dropped:
        # records no prompt was built for, among the requests' drops in input order
        interleave_drops(output, run.unprompted.dropped, key=lambda r: r["detail"]["index"])
        stats.dropped = []
    stats.dropped_written = True
    stats.extra["records_beyond_limit"] = (total - n) if shard == 0 else 0
    stats.extra["batch_invariant"] = settings.batch_invariant
    stats.extra["fewshot_sha256"] = run.fewshot.sha256 if run.fewshot is not None else None
    if stage == "judge":
        stats.extra["judge_dummy_prompts"] = len(run.dummy_indices)
    stats.check_balance()
    return stats


def _parse_detail(index: int, finish_reason: str | None, text: str) -> JsonObj:
    """What a parse drop's record says: where, why the model stopped, and how its text ended."""
    return {"index": index, "finish_reason": finish_reason, "text_tail": text}
