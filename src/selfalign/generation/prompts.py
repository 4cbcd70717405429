"""Prompts and completion parsers for S->C, C->I, I->R and the seed-quality judge.

The text a base model sees decides the data it writes, so this module rebuilds upstream's
prompts character for character. The upstream sources read are, in
``bigcode-project/starcoder2-self-align``:

* ``src/star_align/self_ossinstruct.py`` at the release, tag ``starcoder2-instruct`` = commit
  0b19dbc (the same prompt code as 52ae3557, which still had an in-process vLLM path the release
  removed) -- C->I draws the single category "code generation (function implementation)" and a
  difficulty from easy/medium/hard, reads 16 examples with a ``[Solution]`` section and writes
  properties in the order category, language, concepts, difficulty, as the few-shot file at
  that commit does (later commits, e.g. 1d85858, ship a 21-example file);
* ``README.md`` at 0b19dbc (the release README) for the flags of the released run;
* ``seed_gathering/filter_dataset.py`` (commits 68eb699f / 228d37b0, same logic) for the judge,
  and ``seed_gathering/requirements.txt`` (vllm==0.4.1) for what ran around it.

How upstream builds an S->C / C->I / I->R prompt for the record at global index ``i``::

    random.seed(3407 + i)
    C->I only:  category = random.choice([<one category>]); difficulty = random.choice([3])
    shots = random.sample(pool, k)       # pool: all 16, or for I->R the 10 with a [Solution]
    prompt = system + "\\n\\n" + "\\n\\n".join("## Example n\\n" + shot) + "\\n\\n"
             + "## Example k+1\\n" + query;  prompt = prompt.rstrip()

We make the same calls in the same order on a private ``random.Random(3407 + i)``, which is
what the module-level functions are bound to, so the prompt is a pure function of (few-shot
file, record, index) and equals upstream's on the same Python. Note that ``choice`` over the
one-element category list still consumes one 32-bit draw: leaving it out would shift every
later draw.

Deviations from upstream, each on purpose:

1. No global random state anywhere (see above); the result is identical.
2. The judge's few-shot order. Upstream shuffles one module-level list *in place* once per
   prompt, so a record's order depends on how many prompts were built before it. We shuffle
   the canonical list with ``random.Random(42 + index)`` per record, so a shard gives the same
   prompts alone or inside a full run. :class:`UpstreamJudgeOrder` replays upstream's
   sequence when an audit needs it; see its docstring for what that needs and why it starts
   from seed 0, not 42.
3. Malformed few-shot files raise :class:`FewshotFormatError` naming the example and the
   problem, where upstream asserted, crashed on tuple unpacking, or silently mis-assigned
   fields (e.g. system prompts in another order). Every well-formed file parses identically.
   Likewise the judge raises :class:`DocstringError` for code without a docstring (upstream:
   an assert).
4. Completion parsers raise :class:`ParseError` for outputs upstream dropped (a finish reason
   other than ``stop``/``eos_token``), so callers can count them; optional stricter checks
   (``allow_empty=False``) are off by default because upstream kept empty outputs.
5. The judge's stop is sent as the list ``["\\n"]`` (upstream: the string ``"\\n"``, which
   vLLM turns into the same list).
6. The backend seed is ``3407 + index`` per request, as the release sent it to its vLLM
   server (0b19dbc has only the server path; the earlier in-process engine of 52ae3557 gave
   every prompt of a batch ``3407 + <first index of the batch>``). Sampled tokens are not
   reproducible across GPUs/vLLM versions anyway; a per-request seed at least makes them
   independent of batching.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from ..config import check_params

Mode = Literal["S->C", "C->I", "I->R"]
RequestKind = Literal["S->C", "C->I", "I->R", "judge"]

#: Order of the system prompts in a few-shot file (upstream unpacks them positionally).
SYSTEM_ORDER: tuple[Mode, ...] = ("I->R", "C->I", "S->C")
#: The number of examples upstream asserts the few-shot file holds.
NUM_EXAMPLES = 16
#: sha256 of upstream's ``self-ossinstruct-fewshot.txt`` (prompts/ at 0b19dbc; 64,957 bytes).
UPSTREAM_FEWSHOT_SHA256 = "828e833f7c90d12e8163d889c0245ffb45ef4937d36abf1f66ddac566ac30a5b"

#: ``Args.seed`` upstream ("keep unchanged for reproducibility"); request i uses 3407 + i.
GENERATION_SEED = 3407
#: ``random.seed(42)`` at the top of filter_dataset.py; our per-record judge shuffle base.
JUDGE_SEED = 42
#: C->I draws from these with ``random.choice``, category first (0b19dbc).
INSTRUCTION_CATEGORIES: tuple[str, ...] = ("code generation (function implementation)",)
INSTRUCTION_DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
#: Upstream maps a record's ``data_dir`` through this and falls back to Python.
LANGUAGES: Mapping[str, str] = {
    "cpp": "C++",
    "java": "Java",
    "php": "PHP",
    "python": "Python",
    "rust": "Rust",
    "typescript": "TypeScript",
}
#: Finish reasons whose completions upstream parsed; anything else (``length``) was dropped.
FINISHED = frozenset({"stop", "eos_token"})


class FewshotFormatError(ValueError):
    """A few-shot file that does not have upstream's layout; says which example and why."""

    def __init__(self, message: str, example: int | None = None):
        self.example = example
        where = "few-shot file" if example is None else f"few-shot example {example}"
        super().__init__(f"{where}: {message}")


class ParseError(ValueError):
    """A completion that upstream would not have kept; ``reason`` is a short countable key."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


# --------------------------------------------------------------------------- generation params


@dataclass(frozen=True)
class ModeParams:
    """Sampling parameters of one kind of request; per-request seed is ``seed + index``."""

    temperature: float
    max_tokens: int
    n: int
    stop: tuple[str, ...]
    num_fewshots: int
    seed: int


_MODE_KEYS: Mapping[RequestKind, str] = {
    "S->C": "concepts",
    "C->I": "instructions",
    "I->R": "responses",
    "judge": "judge",
}


@dataclass(frozen=True)
class GenerationParams:
    """All sampling parameters of the released run, one place for config.yaml to override.

    Sources: ``Args`` defaults in self_ossinstruct.py (temperature 0.7, max_output_tokens 1536,
    seed 3407, num_fewshots 8, stop ["## Example"]) and the release README's commands (S->C and
    C->I: --num_fewshots 8 --num_sample_per_request 1; I->R: --num_fewshots 1
    --num_sample_per_request 10 --temperature 0.7); the judge from filter_dataset.py
    (temperature 0, stop newline, 5 tokens).
    """

    concepts: ModeParams = ModeParams(0.7, 1536, 1, ("## Example",), 8, GENERATION_SEED)
    instructions: ModeParams = ModeParams(0.7, 1536, 1, ("## Example",), 8, GENERATION_SEED)
    responses: ModeParams = ModeParams(0.7, 1536, 10, ("## Example",), 1, GENERATION_SEED)
    # The judge always shows all 7 of its shots; num_fewshots is recorded, not a knob.
    judge: ModeParams = ModeParams(0.0, 5, 1, ("\n",), 7, JUDGE_SEED)

    def for_kind(self, kind: RequestKind) -> ModeParams:
        return cast(ModeParams, getattr(self, _MODE_KEYS[kind]))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in _MODE_KEYS.values():
            params = getattr(self, name)
            out[name] = {f.name: getattr(params, f.name) for f in fields(ModeParams)}
            out[name]["stop"] = list(params.stop)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GenerationParams:
        """Defaults overridden by a (partial) mapping, e.g. ``{"responses": {"n": 4}}``.

        Unknown keys and wrong types raise ValueError with the dotted key, so a typo in
        config.yaml cannot silently fall back to a default.
        """
        base = cls()
        if not data:
            return base
        unknown = sorted(set(data) - set(_MODE_KEYS.values()))
        if unknown:
            raise ValueError(f"unknown generation section(s): {', '.join(unknown)}")
        changes: dict[str, ModeParams] = {}
        for name, override in data.items():
            if not isinstance(override, Mapping):
                raise ValueError(f"generation.{name} must be a mapping")
            current: ModeParams = getattr(base, name)
            changes[name] = _override(current, name, override)
        return replace(base, **changes)


def _override(current: ModeParams, name: str, override: Mapping[str, Any]) -> ModeParams:
    # each value's type and bounds: the config schema's sampling (generation.<kind>)
    check_params(ModeParams, override, f"generation.{name}")
    values: dict[str, Any] = dict(override)
    if "stop" in values:
        stop = values["stop"]
        values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    if "temperature" in values:
        values["temperature"] = float(values["temperature"])
    return replace(current, **values)


# --------------------------------------------------------------------------- few-shot file


@dataclass(frozen=True)
class Property:
    """The controls of a C->I task; ``text()`` is the ``### Property`` block upstream writes."""

    category: str
    language: str
    concepts: tuple[str, ...]
    difficulty: str

    def concepts_text(self) -> str:
        return ", ".join(self.concepts)

    def text(self) -> str:
        return "\n".join(
            (
                f"category: {self.category}",
                f"language: {self.language}",
                f"concepts: {self.concepts_text()}",
                f"difficulty: {self.difficulty}",
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "language": self.language,
            "concepts": list(self.concepts),
            "difficulty": self.difficulty,
        }


def _query(mode: Mode, value: str) -> str:
    """The header a shot or the final query opens with; the model continues after it."""
    if mode == "S->C":
        return f"### Snippet\n{value}\n\n### Concepts\n"
    if mode == "C->I":
        return f"### Property\n{value}\n\n### Instruction\n"
    if mode == "I->R":
        return f"### Instruction\n{value}\n\n### Response\n"
    raise ValueError(f"unknown mode {mode!r}")


@dataclass(frozen=True)
class Example:
    """One ``### Example N`` of the few-shot file (``number`` is its N, from 1)."""

    number: int
    snippet: str
    property: Property
    instruction: str
    solution: str | None
    response: str

    def shot(self, mode: Mode) -> str:
        """The example as a solved shot of ``mode``: query header plus the expected answer."""
        if mode == "S->C":
            return _query(mode, self.snippet) + self.property.concepts_text()
        if mode == "C->I":
            return _query(mode, self.property.text()) + self.instruction
        return _query(mode, self.instruction) + self.response


@dataclass(frozen=True)
class PromptRequest:
    """A prompt ready to send, with what produced it (for the artifact's provenance)."""

    kind: RequestKind
    index: int
    seed: int
    prompt: str
    #: The shots used, as 0-based positions in the few-shot file (judge: in its 7-shot list).
    shots: tuple[int, ...]
    #: C->I only: the sampled property that the prompt asks an instruction for.
    property: Property | None = None

    def completion_request(self, params: ModeParams, model: str) -> dict[str, Any]:
        """The OpenAI completions body upstream sent for this prompt (same keys and values)."""
        return {
            "model": model,
            "prompt": self.prompt,
            "max_tokens": params.max_tokens,
            "n": params.n,
            "temperature": params.temperature,
            "seed": self.seed,
            "stop": list(params.stop),
        }


@dataclass(frozen=True)
class Fewshot:
    """A parsed few-shot file: three system prompts and the examples, in file order."""

    sys_i_r: str
    sys_c_i: str
    sys_s_c: str
    examples: tuple[Example, ...]
    #: sha256 of the text that was parsed, for sidecars.
    sha256: str = field(default="", compare=False)

    def system_prompt(self, mode: Mode) -> str:
        return {"I->R": self.sys_i_r, "C->I": self.sys_c_i, "S->C": self.sys_s_c}[mode]

    def pool(self, mode: Mode) -> list[Example]:
        """Examples a shot may be drawn from: I->R needs a written solution, as upstream."""
        if mode == "I->R":
            return [ex for ex in self.examples if ex.solution is not None]
        return list(self.examples)

    def prompt(
        self,
        mode: Mode,
        index: int,
        base_seed: int = GENERATION_SEED,
        num_fewshots: int | None = None,
        **kwargs: Any,
    ) -> PromptRequest:
        """The prompt for the record at global ``index``; kwargs by mode:

        ``index`` is the record's 0-based position in the stage's whole input file (upstream:
        ``--seed_code_start_index`` plus its position in the run), never a shard-local one.

        ``S->C``: ``snippet``; ``C->I``: ``concepts`` (list of str), optional ``language``
        (default Python); ``I->R``: ``instruction``. The random calls are upstream's, in order,
        on ``random.Random(base_seed + index)``.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"index must be a non-negative int, got {index!r}")
        value, language, concepts = _query_value(mode, kwargs)
        if num_fewshots is None:
            num_fewshots = GenerationParams().for_kind(mode).num_fewshots
        seed = base_seed + index
        rng = random.Random(seed)
        prop: Property | None = None
        if mode == "C->I":
            category = rng.choice(INSTRUCTION_CATEGORIES)
            difficulty = rng.choice(INSTRUCTION_DIFFICULTIES)
            prop = Property(category, language, concepts, difficulty)
            value = prop.text()
        pool = self.pool(mode)
        if not 0 < num_fewshots <= len(pool):
            raise ValueError(f"num_fewshots={num_fewshots} must be in 1..{len(pool)} for {mode}")
        chosen = rng.sample(pool, k=num_fewshots)
        parts = [self.system_prompt(mode)]
        parts.extend(f"## Example {n}\n{ex.shot(mode)}" for n, ex in enumerate(chosen, start=1))
        parts.append(f"## Example {num_fewshots + 1}\n" + _query(mode, value))
        return PromptRequest(
            kind=mode,
            index=index,
            seed=seed,
            prompt="\n\n".join(parts).rstrip(),
            shots=tuple(ex.number - 1 for ex in chosen),
            property=prop,
        )


def _query_value(mode: Mode, kwargs: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """Check a mode's keyword arguments; returns (query value, language, concepts)."""
    allowed = {"S->C": {"snippet"}, "C->I": {"concepts", "language"}, "I->R": {"instruction"}}
    if mode not in allowed:
        raise ValueError(f"unknown mode {mode!r}; expected one of S->C, C->I, I->R")
    unknown = sorted(set(kwargs) - allowed[mode])
    if unknown:
        raise TypeError(f"{mode} prompt got unexpected argument(s): {', '.join(unknown)}")
    if mode == "C->I":
        concepts = kwargs.get("concepts")
        if isinstance(concepts, str) or not isinstance(concepts, Sequence):
            raise TypeError("C->I prompt needs concepts= as a list of strings")
        if not all(isinstance(c, str) for c in concepts):
            raise TypeError("C->I prompt needs concepts= as a list of strings")
        language = kwargs.get("language", "Python")
        if not isinstance(language, str):
            raise TypeError("language must be a string")
        return "", language, tuple(concepts)
    (key,) = allowed[mode]
    value = kwargs.get(key)
    if not isinstance(value, str):
        raise TypeError(f"{mode} prompt needs {key}= as a string")
    return value, "", ()


_EXAMPLE_HEADER = re.compile(r"### Example (\d+)")
_SYSTEM_HEADER = re.compile(r"### System: ([^\n]*)")
_SECTIONS = ("[Code]\n", "[Property]\n", "[Instruction]\n", "[Solution]\n", "[Response]\n")
_PROPERTY_KEYS = ("category", "language", "concepts", "difficulty")


def parse_fewshot(text: str, expected_examples: int | None = NUM_EXAMPLES) -> Fewshot:
    """Parse a few-shot file in upstream's layout, refusing anything upstream would misread.

    Field values are exactly what upstream's ``get_ossinstruct_fewshots`` extracts: the whole
    text stripped, split at ``### Example <n>``, each example stripped and cut at the section
    markers; snippet right-stripped only (its indentation is kept), instruction/solution/
    response stripped, an empty solution is None, property values taken after the first colon.
    """
    content = text.strip()
    headers = list(_EXAMPLE_HEADER.finditer(content))
    if not headers:
        raise FewshotFormatError("no '### Example <n>' header")
    systems = _parse_systems(content[: headers[0].start()].strip())
    numbers = [int(m.group(1)) for m in headers]
    if expected_examples is not None and len(headers) != expected_examples:
        raise FewshotFormatError(f"expected {expected_examples} examples, found {len(headers)}")
    examples = []
    for pos, match in enumerate(headers):
        number = numbers[pos]
        if number != pos + 1:
            raise FewshotFormatError(
                f"examples must be numbered 1, 2, ... in order; header {pos + 1} says {number}",
                example=pos + 1,
            )
        end = headers[pos + 1].start() if pos + 1 < len(headers) else len(content)
        examples.append(_parse_example(number, content[match.end() : end].strip()))
    return Fewshot(
        sys_i_r=systems[0],
        sys_c_i=systems[1],
        sys_s_c=systems[2],
        examples=tuple(examples),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _parse_systems(header: str) -> tuple[str, str, str]:
    found = list(_SYSTEM_HEADER.finditer(header))
    names = tuple(m.group(1).strip() for m in found)
    if names != SYSTEM_ORDER:
        wanted = ", ".join(f"'### System: {m}'" for m in SYSTEM_ORDER)
        raise FewshotFormatError(f"expected system prompts {wanted} in that order, found {names}")
    if header[: found[0].start()].strip():
        raise FewshotFormatError("text before '### System: I->R'")
    bodies = []
    for pos, match in enumerate(found):
        end = found[pos + 1].start() if pos + 1 < len(found) else len(header)
        body = header[match.end() : end].strip()
        if not body:
            raise FewshotFormatError(f"system prompt {names[pos]} is empty")
        bodies.append(body)
    return bodies[0], bodies[1], bodies[2]


def _parse_example(number: int, body: str) -> Example:
    def fail(message: str) -> FewshotFormatError:
        return FewshotFormatError(message, example=number)

    starts = []
    for marker in _SECTIONS:
        count = body.count(marker)
        if count != 1:
            label = marker.strip()
            raise fail(f"needs exactly one '{label}' line, found {count}")
        starts.append(body.index(marker))
    if starts != sorted(starts):
        raise fail("sections must come in the order " + ", ".join(m.strip() for m in _SECTIONS))
    if starts[0] != 0:
        raise fail("text between the '### Example' header and '[Code]'")
    bounds = [*starts, len(body)]
    raw = [body[bounds[i] + len(_SECTIONS[i]) : bounds[i + 1]] for i in range(len(_SECTIONS))]
    snippet = raw[0].rstrip()
    instruction, solution, response = raw[2].strip(), raw[3].strip(), raw[4].strip()
    for name, value in (("[Code]", snippet.strip()), ("[Instruction]", instruction)):
        if not value:
            raise fail(f"{name} is empty")
    if not response:
        raise fail("[Response] is empty")
    return Example(
        number=number,
        snippet=snippet,
        property=_parse_property(raw[1], fail),
        instruction=instruction,
        solution=solution or None,
        response=response,
    )


def _parse_property(block: str, fail: Callable[[str], FewshotFormatError]) -> Property:
    lines = block.strip().split("\n")
    if len(lines) != len(_PROPERTY_KEYS):
        raise fail(f"[Property] needs 4 lines ({', '.join(_PROPERTY_KEYS)}), found {len(lines)}")
    values = []
    for key, line in zip(_PROPERTY_KEYS, lines, strict=True):
        name, colon, value = line.partition(":")
        if not colon or name.strip() != key:
            raise fail(f"[Property] line {line!r} should read '{key}: ...'")
        values.append(value.strip())
    category, language, concepts, difficulty = values
    return Property(category, language, tuple(c.strip() for c in concepts.split(",")), difficulty)


def load_fewshot(path: str | Path, expected_examples: int | None = NUM_EXAMPLES) -> Fewshot:
    """Read a few-shot file as upstream did (text mode: universal newlines) and parse it."""
    return parse_fewshot(Path(path).read_text(encoding="utf-8"), expected_examples)


def tiny_fewshot_text() -> str:
    """The project's own 16 examples (stdlib-only functions) used by the tiny profile."""
    ref = resources.files("selfalign").joinpath("data", "fewshot-tiny.txt")
    return ref.read_text(encoding="utf-8")


def load_tiny_fewshot() -> Fewshot:
    return parse_fewshot(tiny_fewshot_text())


# --------------------------------------------------------------------------- stage builders


def concepts_prompt(
    fewshot: Fewshot,
    seed_code: str,
    index: int,
    *,
    base_seed: int = GENERATION_SEED,
    num_fewshots: int = 8,
) -> PromptRequest:
    """S->C: ask for the concepts of the seed function at global ``index``."""
    return fewshot.prompt("S->C", index, base_seed, num_fewshots, snippet=seed_code)


def instruction_prompt(
    fewshot: Fewshot,
    concepts: Sequence[str],
    index: int,
    *,
    language: str = "Python",
    base_seed: int = GENERATION_SEED,
    num_fewshots: int = 8,
) -> PromptRequest:
    """C->I: sample a property (category, difficulty) around ``concepts`` and ask for a task."""
    return fewshot.prompt(
        "C->I", index, base_seed, num_fewshots, concepts=list(concepts), language=language
    )


def response_prompt(
    fewshot: Fewshot,
    instruction: str,
    index: int,
    *,
    base_seed: int = GENERATION_SEED,
    num_fewshots: int = 1,
) -> PromptRequest:
    """I->R: ask for a response with self-written tests to ``instruction``."""
    return fewshot.prompt("I->R", index, base_seed, num_fewshots, instruction=instruction)


def language_of(record: Mapping[str, Any]) -> str:
    """Upstream's language for C->I: the record's ``data_dir`` mapped, else Python."""
    return LANGUAGES.get(str(record.get("data_dir", "")), "Python")


# --------------------------------------------------------------------------- completion parsers


def _finished(text: str | None, finish_reason: str | None, allow_empty: bool) -> str:
    if text is None:
        raise ParseError("missing", "completion has no text")
    if finish_reason is not None and finish_reason not in FINISHED:
        raise ParseError(
            "unfinished", f"finish_reason {finish_reason!r}: upstream keeps only stop/eos_token"
        )
    stripped = text.strip()
    if not stripped and not allow_empty:
        raise ParseError("empty", "completion is empty")
    return stripped


def parse_concepts(
    text: str | None, *, finish_reason: str | None = None, allow_empty: bool = True
) -> list[str]:
    """S->C output: comma-separated concepts, each stripped (upstream keeps empty items)."""
    stripped = _finished(text, finish_reason, allow_empty)
    # Splitting the stripped text gives the same items as upstream's split of the raw text:
    # only the first and last item can differ, and those are stripped anyway.
    concepts = [c.strip() for c in stripped.split(",")]
    if not allow_empty and not all(concepts):
        raise ParseError("empty", f"empty concept in {stripped!r}")
    return concepts


def parse_instruction(
    text: str | None, *, finish_reason: str | None = None, allow_empty: bool = True
) -> str:
    """C->I output: the instruction, stripped."""
    return _finished(text, finish_reason, allow_empty)


def parse_response(
    text: str | None, *, finish_reason: str | None = None, allow_empty: bool = True
) -> str:
    """I->R output: the response, stripped (its structure is checked later, by sanitize)."""
    return _finished(text, finish_reason, allow_empty)


def parse_completion(
    mode: Mode, text: str | None, *, finish_reason: str | None = None, allow_empty: bool = True
) -> dict[str, Any]:
    """Upstream's ``parse_generated_content``: the field a mode adds to its record."""
    if mode == "S->C":
        return {
            "concepts": parse_concepts(text, finish_reason=finish_reason, allow_empty=allow_empty)
        }
    if mode not in ("C->I", "I->R"):
        raise ValueError(f"unknown mode {mode!r}")
    key = "instruction" if mode == "C->I" else "response"
    return {key: _finished(text, finish_reason, allow_empty)}
