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
#: Upstream did not judge code whose prompt would exceed this many StarCoder2 tokens: it sent
#: the dummy prompt in its place, and because the final filter tested the *record* for
#: "def dummy()", such a record inherited the dummy prompt's verdict. For the judge stage.
JUDGE_MAX_PROMPT_TOKENS = 16380
#: filter_dataset.py's ``dummy``: the code judged in place of an over-long function.
JUDGE_DUMMY_CODE = 'def dummy(): \n    """\n    """\n pass'


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


# --------------------------------------------------------------------------- the judge


@dataclass(frozen=True)
class JudgeShot:
    """One solved judge example: a function, the Yes/No answer and the written rationale."""

    code: str
    answer: Literal["Yes", "No"]
    rationale: str


# The seven judge examples of filter_dataset.py, in its source order (Apache-2.0, data that
# must stay byte-identical: the model's verdicts depend on it).
JUDGE_SHOTS: tuple[JudgeShot, ...] = (
    JudgeShot(
        code='''def simple_scan_network():
    """
    Do a simple network scan, which only works if your network configuration
    is 192.168.1.x
    """
    base_ip = "192.168.1."
    addresses = ['127.0.0.1']

    for index in range(1, 255):
        addresses.extend([base_ip + str(index)])

    return addresses''',
        answer="No",
        rationale=(
            "The simple_scan_network function you have provided seems to generate addresses "
            "that then would be used for a network scan, but does not actually perform it, "
            "unlike the function claims."
        ),
    ),
    JudgeShot(
        code='''import pandas


def coerce_integer(df):
    """
    Loop through the columns of a df, if it is numeric,
    convert it to integer and fill nans with zeros.
    This is somewhat heavy-handed in an attempt to force
    Esri to recognize sparse columns as integers.
    """
    # Numeric columns to not coerce to integer
    EXCEPT = ["latitude", "longitude", "zipCode"]

    def numeric_column_to_int(series):
        return (
            series.fillna(0).astype(int)
            if pandas.api.types.is_numeric_dtype(series) and series.name not in EXCEPT
            else series
        )

    return df.transform(numeric_column_to_int, axis=0)''',
        answer="Yes",
        rationale=(
            "The docstring does seem to match the implementation! The function loops through "
            "the columns of a df and coerces it as explained."
        ),
    ),
    JudgeShot(
        code='''def __trans_df_into_dict(data):
    """Converte DataFrame to dictionary.

    Args:
        data (pandas.DataFrame): DataFrame.

    Returns:
        dict: Name dictionary.
    """
    data["en_name"] = data["en_name"].str.upper()
    data["en_name_f"] = data["en_name"].str.split(" ", expand=True)[0]
    data["en_name_l"] = data["en_name"].str.split(" ", expand=True)[1]
    data["jp_name_f"] = data["jp_name"].str.split("・", expand=True)[0]
    data["jp_name_l"] = data["jp_name"].str.split("・", expand=True)[1]
    fullname_dict = dict(zip(data["en_name"], data["jp_name"]))
    fname_dict = dict(zip(data["en_name_f"], data["jp_name_f"]))
    lname_dict = dict(zip(data["en_name_l"], data["jp_name_l"]))
    return fullname_dict, fname_dict, lname_dict''',
        answer="No",
        rationale=(
            "The function__trans_df_into_dict  does indeed convert a dataframe into a "
            "dictionary, however, it converts various columns that were not described in the "
            "docstring.\nFor instance, nowhere in the docstring it mentions handling japanese "
            "characters or the name of the column."
        ),
    ),
    JudgeShot(
        code='''def inchesToMeters(inches):
    """Convert inches to meters."""
    return inches * 0.0254''',
        answer="Yes",
        rationale=(
            "inchesToMeters is a very simple function, the doccstring explains concisely its "
            "purpose, which is of converting inches to meters."
        ),
    ),
    JudgeShot(
        code='''def square_crop(im, target_size=None):
  """ Crop image to `target_size`. If that's None the image is squared
  to the smallest size
  """

  w = im.size[0]
  h = im.size[1]

  target_size = target_size if target_size else min(w, h)

  dx = (w - target_size) / 2
  dy = (h - target_size) / 2

  return im.crop((dx, dy, dx + target_size, dy + target_size))''',
        answer="Yes",
        rationale=(
            "Following the standard description for docstrings for functions and methods, the "
            "square_crop function description tells exactly what the function does."
        ),
    ),
    JudgeShot(
        code='''def _setup_motifs_files(args):
    """convenience fn, make sure setup is same across
    multiplicity/orientation/spacing workflows
    """
    motifs_files = {}
    motifs_files["early"] = "{}/{}/ggr.scanmotifs.h5".format(
        args.inputs["inference"][args.cluster]["scanmotifs_dir"],
        args.inputs["inference"][args.cluster]["scanmotifs_early_dir"])
    motifs_files["mid"] = "{}/{}/ggr.scanmotifs.h5".format(
        args.inputs["inference"][args.cluster]["scanmotifs_dir"],
        args.inputs["inference"][args.cluster]["scanmotifs_mid_dir"])
    motifs_files["late"] = "{}/{}/ggr.scanmotifs.h5".format(
        args.inputs["inference"][args.cluster]["scanmotifs_dir"],
        args.inputs["inference"][args.cluster]["scanmotifs_late_dir"])

    return motifs_files''',
        answer="No",
        rationale=(
            "The docstring for _setup_motifs_files just says this is a convenience function. "
            "There is definitely not enough information to re-implement this function from "
            "the docstring alone."
        ),
    ),
    JudgeShot(
        code='''def trip(u, v):
    """
    Returns the scalar triple product of vectors u and v and z axis.
    The convention is z dot (u cross v). Dotting with the z axis simplifies
    it to the z component of the u cross v
    The product is:
        positive if v is to the left of u, that is,
          the shortest right hand rotation from u to v is ccw
        negative if v is to the right of u, that is,
          the shortest right hand rotation from u to v is cw
        zero if v is colinear with u
    Essentially trip is the z component of the cross product of u x v
    """
    return (u[0] * v[1] - u[1] * v[0])''',
        answer="Yes",
        rationale=(
            "The docstring for the trip function is very detailed and describes the function's "
            "purpose and the mathematical formula used to calculate the scalar triple product."
        ),
    ),
)

_ISSUE = (
    "<issue_start>username_0: I have a function in Python and I'd like someone to check my "
    "description of this function.\n"
    "I'm doing this so that I can write a good docstring for this function.\n\n"
    "Here is the code for the function:\n```py\n{code}\n```\n\n"
    "Here is my description of this program:\n```\n{doc}\n```\n\n"
    "Do not attempt to execute the function or to judge its correctness.\n"
    'Answer with "Yes" or "No" depending on if my description has enough information alone '
    "to re-implement the function.\n"
    'Also, answer with "No" if the description does not match the function.'
)
_REPLY = "<issue_comment>username_1: Sure, no problem. I will be able to help.\nMy answer is:"


class DocstringError(ValueError):
    """Code without a pair of triple double quotes, which the judge prompt needs."""


def _unindent(text: str) -> str:
    """Remove the common leading whitespace of the non-blank lines (upstream's ``unindent``)."""
    lines = text.splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(line[cut:] if len(line) >= cut else line for line in lines)


def extract_docstring(code: str) -> tuple[str, str]:
    """Split ``code`` into (docstring, code without it) exactly as ``py_extract_docstring``.

    The first ``\"\"\"`` opens; the closing one is searched from one character after the
    opening quotes; the docstring is unindented and stripped; the code keeps everything else,
    including the whitespace around the removed literal.
    """
    opening = code.find('"""')
    if opening == -1:
        raise DocstringError('no """ docstring in the code')
    start = opening + 3
    rest = code[start + 1 :].find('"""')
    if rest == -1:
        raise DocstringError('unterminated """ docstring in the code')
    end = rest + start + 1
    return _unindent(code[start:end]).strip(), code[: start - 3] + code[end + 3 :]


def _issue(code: str) -> str:
    doc, body = extract_docstring(code)
    return _ISSUE.format(code=body, doc=doc)


def _solved_issue(shot: JudgeShot) -> str:
    return f"{_issue(shot.code)}{_REPLY} {shot.answer}\n\n{shot.rationale}\n\nUpvotes: 200"


_SOLVED = tuple(_solved_issue(shot) for shot in JUDGE_SHOTS)


def judge_shots_text() -> str:
    """The judge's seven solved issues, for the tiny model to learn the judge's format from."""
    return "".join(_SOLVED)


def judge_order(index: int, base_seed: int = JUDGE_SEED) -> tuple[int, ...]:
    """The shot order of record ``index``: the canonical list shuffled by Random(seed+index)."""
    order = list(range(len(JUDGE_SHOTS)))
    random.Random(base_seed + index).shuffle(order)
    return tuple(order)


class UpstreamJudgeOrder:
    """Replays filter_dataset.py's single, in-place, cumulative shuffle of the judge shots.

    Upstream calls ``random.shuffle(FEW_SHOTS)`` once per ``prompt_fmt``: first for the dummy
    prompt that measures the few-shot length, then once for every record in dataset order
    *except* records skipped for exceeding 16,380 tokens (they reuse the dummy prompt). The
    ``random.seed(42)`` at import does not survive: ``LLM(...)`` of vllm 0.4.1 (the version in
    seed_gathering/requirements.txt) runs ``set_random_seed(seed=0)`` in its in-process driver
    worker, in ``init_device`` and again at the end of ``_warm_up_model``, before the first
    ``prompt_fmt``. Hence ``rng_seed=0`` and ``leading_shuffles=1`` by default; pass
    ``rng_seed=42`` to replay the script as if run without vLLM's reseeding.

    ``order(ordinal)`` takes the record's position among the records upstream actually
    shuffled for (0 = first judged record), so an exact replay needs upstream's dataset order
    and the StarCoder2 token counts. Replaying is cheap (a few microseconds per shuffle) and
    this object remembers where it is, so increasing ordinals cost O(1) each; going back
    restarts from the seed.
    """

    def __init__(self, rng_seed: int = 0, leading_shuffles: int = 1):
        if leading_shuffles < 0:
            raise ValueError("leading_shuffles must be >= 0")
        self.rng_seed = rng_seed
        self.leading_shuffles = leading_shuffles
        self._restart()

    def _restart(self) -> None:
        self._rng = random.Random(self.rng_seed)
        self._order = list(range(len(JUDGE_SHOTS)))
        self._shuffles = 0

    def order(self, ordinal: int) -> tuple[int, ...]:
        if ordinal < 0:
            raise ValueError("ordinal must be >= 0")
        target = self.leading_shuffles + ordinal + 1
        if target < self._shuffles:
            self._restart()
        while self._shuffles < target:
            self._rng.shuffle(self._order)
            self._shuffles += 1
        return tuple(self._order)


def judge_prompt(
    code: str,
    index: int,
    *,
    base_seed: int = JUDGE_SEED,
    upstream_order: UpstreamJudgeOrder | None = None,
) -> PromptRequest:
    """The judge prompt for the seed function at ``index``: 7 solved issues, then this one.

    With ``upstream_order``, ``index`` is upstream's shuffle ordinal (see
    :class:`UpstreamJudgeOrder`) and the order is replayed instead of drawn per record.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    if upstream_order is None:
        order, seed = judge_order(index, base_seed), base_seed + index
    else:
        order, seed = upstream_order.order(index), upstream_order.rng_seed
    query = f"{_issue(code)}\nUpvotes: 100{_REPLY}"
    prompt = "".join(_SOLVED[i] for i in order) + query
    return PromptRequest(kind="judge", index=index, seed=seed, prompt=prompt, shots=order)


@dataclass(frozen=True)
class JudgeVerdict:
    """Counts of "yes"/"no" substrings in the lower-cased answer; ``keep`` iff yes > no."""

    yes: int
    no: int

    @property
    def keep(self) -> bool:
        return self.yes > self.no

    @property
    def tie(self) -> bool:
        """Ties (including an empty answer) count as No upstream; callers may count them."""
        return self.yes == self.no


def parse_judge(text: str | None) -> JudgeVerdict:
    """Upstream's verdict: substring counts, so "not"/"none" count as no, as they did there."""
    if text is None:
        raise ParseError("missing", "judge completion has no text")
    lowered = text.lower()
    return JudgeVerdict(yes=lowered.count("yes"), no=lowered.count("no"))
