"""Curation: execution-filtered samples -> sanitized -> cleaned -> the SFT dataset.

The release (upstream tag ``starcoder2-instruct`` = commit 0b19dbc, its README's "Data
sanitization and selection") ran three commands on the execution filter's output; each is one
stage and one artifact here, and ``config.yaml`` reproduces each exactly (checked against the
release's own scripts on ``tests/data/release/``):

1. ``sanitized.jsonl`` (``RAW=1 sanitize_data.py``): the response-format checks. A response
   must hold each of ``[Reasoning]``, ``[Implementation]``, ``[Explanation]``, ``[Tests]``
   exactly once, in that order; at least one ```` ```python ```` block in the implementation;
   exactly one python block (and two fences) in the tests, cut after its closing fence and
   before any line starting with ``/``; the tests must contain ``assert`` and not only
   ``def``/``class``/``import``/``from`` lines. Kept responses are rewritten in the raw format:
   the four sections, tags kept, joined by blank lines.
2. ``cleaned.jsonl`` (``clean_data.py --diversify_func_names``): ``random.seed(0);
   random.shuffle`` of the records, then a record is kept only if neither its whitespace-free
   instruction nor its whitespace-free response is in ``seen_keys``, and (with
   ``diversify_func_names``) the names of the functions defined in the response's first code
   block (any language; ``FunctionDef``/``AsyncFunctionDef`` in visit order, joined by a space)
   are not in that same set either; a first block that does not parse drops the record.
   Because the order is shuffled first, "the first passing response of each instruction" is a
   seeded random choice of one response per instruction.
3. ``sft.jsonl`` (``SMART=1 sanitize_data.py``): the same format checks, then the tags are
   dropped and: the tests are removed unless the instruction mentions "test"; the explanation
   and the reasoning are each removed with probability 0.5; responses with an incomplete
   marker (``todo``, ``fixme``, ``your code here``, ...) are dropped; with probability 0.5 one
   to five of the test assertions are appended to the instruction ("Your code should pass the
   following assertion(s):"); whole-line ``#`` comments are removed from every fenced block
   (``utils.remove_comments_from_code_blocks``: docstrings, inline comments and formatting
   stay). The release draws all of this from one ``random.seed(0)`` stream in file order (the
   explanation draw, the reasoning draw, the number and choice of assertions, the 0.5 coin,
   each only for records that reach it), so a record's fate depends on the records before it.

Later upstream code (the ``enhance`` branch's ``sanitize_data.py``, 14f4294 and after) and our
corrections change these steps; each is a switch here, off in ``config.yaml`` and on in an opt-in
overlay, ``recipes/enhance.yaml`` (the first and third) or ``recipes/corrected.yaml``
(the second and fourth; README, "Deviations from the release"):

- ``curation.clean.shuffle: numpy`` with ``seed: 6666`` (``datasets.Dataset.shuffle``'s order),
  ``max_instruction_words: 200``, ``func_names: sets`` (lower-cased, underscore-free
  frozensets of function names and of class names, each set must be new);
- ``curation.sft.rng: per_record``: each record's draws from an RNG seeded by ``(seed, id)``,
  so a record's fate does not depend on order or sharding;
- ``curation.sft.remove_comments: ast``: comments and docstrings removed by ``ast.unparse``
  (a block that does not parse then drops the record, ``code_block_syntax_error``);
- ``curation.sft.decontaminate: true``: records holding a HumanEval/MBPP string are dropped
  (the release did not check the SFT records; ``false`` lists them in ``decontamination.json``
  only).

Where the release crashed, we drop and count: a record with no code block under
``diversify_func_names`` (``no_code_block``; the release raised IndexError) and a first block
with a NUL byte (``code_syntax_error``; the release raised ValueError).

Each stage reads its whole input and writes its output atomically, so a killed run leaves
nothing behind and reruns from the start; they take seconds for the paper's ~500k samples.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chain import STAGES
from .config import check_params
from .mix import SELF, MixSource, load_source
from .pins import Pin
from .records import (
    JsonObj,
    RecordError,
    atomic_writer,
    count_lines,
    dumps,
    iter_jsonl,
    iter_jsonl_offsets,
)
from .runtime import StageStats, drop_record, progress_bar

log = logging.getLogger(__name__)

TAGS = ("[Reasoning]", "[Implementation]", "[Explanation]", "[Tests]")

#: Upstream's markers of an unfinished response (case-insensitive substrings).
INCOMPLETE_MARKERS = (
    "todo",
    "fixme",
    "write your code here",
    "your code here",
    "your code goes here",
    "notimplemented",
)

#: The fields an SFT record carries besides instruction and response: where it came from.
PROVENANCE_FIELDS = ("source_id", "sample", "seed_id", "concepts_id", "instruction_id")


# ------------------------------------------------------------------------------- code blocks


def codeblock_spans(text: str, tag: str | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` of each fenced block's content, optionally only blocks tagged ``tag``.

    Upstream's ``find_codeblock_indices``: a fence is any ```` ``` ````; the rest of its line is
    the tag; with a tag the content starts on the next line, without one right after the fence;
    the content ends at the next fence. An unclosed fence ends the search.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    while (fence := text.find("```", pos)) != -1:
        tag_start = fence + 3
        line_end = text.find("\n", tag_start)
        if line_end == -1:
            line_end = tag_start
        found_tag = text[tag_start:line_end].strip()
        start = line_end + 1 if found_tag else tag_start
        end = text.find("```", start)
        if end == -1:
            break
        if tag is None or found_tag.lower() == tag.lower():
            spans.append((start, end))
        pos = end + 3
    return spans


def code_blocks(text: str, tag: str | None = None) -> list[str]:
    """The stripped contents of the fenced blocks (upstream's ``find_code_blocks``)."""
    return [text[start:end].strip() for start, end in codeblock_spans(text, tag)]


def strip_comments_and_docstrings(code: str) -> str:
    """``code`` re-printed by ``ast.unparse`` without comments and def/class docstrings.

    Raises SyntaxError when ``code`` does not parse.
    """
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            # An emptied body would not parse back: upstream left it empty; keep `pass` instead.
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def strip_comments_in_blocks(text: str) -> str:
    """Every ```` ```python ```` block of ``text`` through :func:`strip_comments_and_docstrings`,
    keeping the newline before its closing fence. Raises SyntaxError for a block that does not
    parse."""
    out: list[str] = []
    pos = 0
    for start, end in codeblock_spans(text, "python"):
        out.append(text[pos:start])
        out.append(strip_comments_and_docstrings(text[start:end]) + "\n")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def remove_comment_lines(text: str) -> str:
    """The release's ``remove_comments_from_code_blocks`` (``utils.py`` at 0b19dbc).

    In every fenced block (any language), a line whose first non-blank character is ``#`` is
    removed, and so is a blank line (other than the block's first) that comes right before one.
    Docstrings, inline comments and everything outside the blocks are kept as they are.
    """
    out: list[str] = []
    pos = 0
    for start, end in codeblock_spans(text):
        out.append(text[pos:start])
        lines = text[start:end].splitlines(keepends=True)
        i = 0
        while i < len(lines):
            if i != 0 and i + 1 < len(lines) and not lines[i].strip() and lines[i + 1].lstrip().startswith("#"):
                i += 2
                continue
            if lines[i].lstrip().startswith("#"):
                i += 1
                continue
            out.append(lines[i])
            i += 1
        pos = end
    out.append(text[pos:])
    return "".join(out)


def joined_function_names(code: str) -> str:
    """The release's ``extract_and_concat_function_names``: every function's name, in the order
    ``ast.NodeVisitor`` visits them (depth first, source order), joined by one space.

    Raises SyntaxError (or ValueError for a NUL byte) when ``code`` does not parse.
    """
    names: list[str] = []
    stack: list[ast.AST] = [ast.parse(code)]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return " ".join(names)


def definition_names(code: str) -> tuple[frozenset[str], frozenset[str]]:
    """(function names, class names) defined anywhere in ``code``, lower-cased, ``_`` removed.

    The ``enhance`` branch's variant (``func_names: sets``); raises SyntaxError.
    """
    functions: set[str] = set()
    classes: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.add(node.name.replace("_", "").lower())
        elif isinstance(node, ast.ClassDef):
            classes.add(node.name.replace("_", "").lower())
    return frozenset(functions), frozenset(classes)


# ---------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Sections:
    """A response cut into upstream's four sections (each stripped)."""

    reasoning: str
    implementation: str
    explanation: str
    tests: str
    tests_block: str

    def raw(self) -> str:
        parts = (self.reasoning, self.implementation, self.explanation, self.tests)
        return "\n\n".join(f"{tag}\n{part}" for tag, part in zip(TAGS, parts, strict=True))


class FormatError(ValueError):
    """Why a response fails the format checks; ``reason`` is the sidecar's drop key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def split_sections(response: str) -> Sections:
    """Upstream's format checks; raises :class:`FormatError` naming the first that fails."""
    if any(response.count(tag) != 1 for tag in TAGS):
        raise FormatError("format:tag_count")
    r, i, e, t = (response.index(tag) for tag in TAGS)
    if not r < i < e < t:
        raise FormatError("format:tag_order")
    reasoning = response[r + len(TAGS[0]) : i].strip()
    implementation = response[i + len(TAGS[1]) : e].strip()
    explanation = response[e + len(TAGS[2]) : t].strip()
    if not code_blocks(implementation, "python"):
        raise FormatError("format:no_implementation_code")
    tests = response[t + len(TAGS[3]) :].strip()
    tests_blocks = code_blocks(tests, "python")
    if len(tests_blocks) != 1 or tests.count("```") != 2:
        raise FormatError("format:tests_not_one_block")
    tests = tests[: tests.rindex("```") + 3]
    lines = tests.splitlines(keepends=True)
    cut = next((n for n, line in enumerate(lines) if line.startswith("/")), None)
    if cut is not None:
        tests = "".join(lines[:cut]).strip()
    if "assert" not in tests:
        raise FormatError("format:tests_no_assert")
    if all(
        line.startswith(("def", "class", "import", "from"))
        for line in tests_blocks[0].splitlines()
        if line and line[0].isalpha()
    ):
        raise FormatError("format:tests_only_definitions")
    return Sections(reasoning, implementation, explanation, tests, tests_blocks[0])


# ------------------------------------------------------------------------------------ params


@dataclass(frozen=True)
class CleanParams:
    """``cleaned.jsonl``: the release's ``clean_data.py --diversify_func_names`` by default."""

    shuffle: str = "python"
    """``python``: ``random.seed(seed); random.shuffle`` (release); ``numpy``:
    ``numpy.random.default_rng(seed).permutation``, as ``datasets.Dataset.shuffle`` (enhance)."""
    seed: int = 0
    max_instruction_words: int | None = None
    """Skip longer instructions (enhance: 200); ``None``: no cap (release)."""
    diversify_func_names: bool = True
    func_names: str = "release"
    """``release``: the joined function names share ``seen_keys`` with the text keys;
    ``sets``: normalised function-name and class-name sets, each must be new (enhance)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleanParams:
        check_params(cls, data, "curation.clean")  # types, bounds, choices: the schema's
        return cls(**dict(data))


@dataclass(frozen=True)
class SmartParams:
    """``sft.jsonl``: the release's ``SMART=1 sanitize_data.py`` by default."""

    seed: int = 0
    rng: str = "global"
    """``global``: one ``random.Random(seed)`` consumed in file order (release);
    ``per_record``: an RNG per record seeded by ``(seed, id)``."""
    p_drop_explanation: float = 0.5
    p_drop_reasoning: float = 0.5
    p_assertion_in_instruction: float = 0.5
    remove_comments: str = "release"
    """``release``: whole-line ``#`` comments out of every fenced block; ``ast``: comments and
    docstrings out of python blocks by ``ast.unparse``; ``off``: nothing removed."""
    decontaminate: bool = False
    """Drop records that contain a benchmark string (False: only list them, as the release
    did not check here)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmartParams:
        check_params(cls, data, "curation.sft")  # types, bounds, choices: the schema's
        return cls(**dict(data))


# ---------------------------------------------------------------------------------- helpers


#: Record ids curation accepts: ours are strings; the published sets' (and their JSONL exports)
#: are integers.
ID_TYPES: tuple[type, ...] = (str, int)


def _records(
    path: Path, bar_desc: str, show_progress: bool, stats: StageStats | None = None
) -> Iterator[tuple[int, JsonObj]]:
    """Records with an instruction and a response. With ``stats`` (the first curation stage), a
    record without an ``id`` -- the release's own files have none -- gets its line number as
    one (``line000000001``), counted in ``stats.extra``; without, an ``id`` is required."""
    bar = progress_bar(desc=bar_desc, total=count_lines(path), unit="rec", enabled=show_progress)
    required: dict[str, type | tuple[type, ...]] = {"instruction": str, "response": str}
    if stats is None:
        required["id"] = ID_TYPES
    try:
        for line, record in iter_jsonl(path, required, unique="id"):
            if "id" not in record and stats is not None:
                record = {"id": f"line{line:09d}", **record}
                stats.extra["ids_from_line_numbers"] = stats.extra.get("ids_from_line_numbers", 0) + 1
            elif isinstance(record["id"], bool) or not isinstance(record["id"], ID_TYPES):
                raise RecordError(path, line, f"must be a string or an integer, got {type(record['id']).__name__}", "id")
            yield line, record
            bar.update(1)
    finally:
        bar.close()


def _hash(text: str) -> bytes:
    """A ``seen_keys`` entry: the string hashed, to keep memory flat on 500k records."""
    # surrogatepass: a lone surrogate (valid JSON, no UTF-8 form) hashes too, distinct strings
    # to distinct bytes as the release's set of strings kept them; other text: its UTF-8
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _key(text: str) -> bytes:
    """The release's exact-match key (``mk_key``: all whitespace removed), hashed."""
    return _hash("".join(text.split()))


# ----------------------------------------------------------------------------------- stages


def run_sanitize(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    show_progress: bool = True,
) -> StageStats:
    """Stage 1: keep well-formed responses, rewritten in the raw four-section format."""
    path = Path(input_path)
    stats = StageStats()
    with atomic_writer(output) as out:
        for _, record in _records(path, "sanitize", show_progress, stats):
            stats.n_in += 1
            try:
                sections = split_sections(record["response"])
            except FormatError as exc:
                stats.drop(exc.reason, id=str(record["id"]), detail=_format_detail(record["response"]))
                continue
            out.write(dumps({**record, "response": sections.raw()}) + "\n")
            stats.n_out += 1
    stats.check_balance()
    return stats


def _format_detail(response: str) -> JsonObj:
    """A format drop's detail: how often each section tag occurs, and the response's head."""
    return {"tags": {tag: response.count(tag) for tag in TAGS}, "response_head": response}


@dataclass
class _CleanEntry:
    id: str
    line: int
    offset: int
    words: int
    key_i: bytes
    key_r: bytes
    first_block: str | None


def _scan_for_clean(path: Path, show_progress: bool) -> list[_CleanEntry]:
    entries: list[_CleanEntry] = []
    required: dict[str, type | tuple[type, ...]] = {"id": ID_TYPES, "instruction": str, "response": str}
    bar = progress_bar(desc="clean: read", total=count_lines(path), unit="rec", enabled=show_progress)
    for line_no, offset, record in iter_jsonl_offsets(path, required, unique="id"):
        blocks = code_blocks(record["response"])
        entries.append(
            _CleanEntry(
                id=str(record["id"]),
                line=line_no,
                offset=offset,
                words=len(record["instruction"].split()),
                key_i=_key(record["instruction"]),
                key_r=_key(record["response"]),
                first_block=blocks[0] if blocks else None,
            )
        )
        bar.update(1)
    bar.close()
    return entries


def shuffled_order(n: int, seed: int, kind: str = "numpy") -> list[int]:
    """The order a seeded shuffle puts ``n`` rows in.

    ``python``: the release's ``random.seed(seed); random.shuffle(rows)`` (the permutation
    depends on ``n`` and the seed only); ``numpy``: ``datasets.Dataset.shuffle(seed=seed)``.
    """
    if kind == "python":
        order = list(range(n))
        random.Random(seed).shuffle(order)
        return order
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def run_clean(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    params: CleanParams,
    *,
    show_progress: bool = True,
) -> StageStats:
    """Stage 2: seeded shuffle, long-instruction skip, exact dedup, function-name diversity.

    Output is in the shuffled order, as upstream (the order the SFT data is written in).
    """
    path = Path(input_path)
    entries = _scan_for_clean(path, show_progress)
    stats = StageStats(n_in=len(entries))
    # each key -> the id of the record kept with it, so a drop names what it duplicated
    seen_keys: dict[bytes, str] = {}
    seen_names: dict[frozenset[str], str] = {}
    kept: list[_CleanEntry] = []
    dropped: dict[int, JsonObj] = {}  # input position -> drop record (written in input order)

    def drop(index: int, position: int, reason: str, **detail: Any) -> None:
        stats.drop(reason)
        dropped[index] = drop_record(entries[index].id, reason, {"shuffled_position": position, **detail})

    for position, index in enumerate(shuffled_order(len(entries), params.seed, params.shuffle)):
        entry = entries[index]
        if params.max_instruction_words is not None and entry.words > params.max_instruction_words:
            drop(index, position, "instruction_too_long", words=entry.words, limit=params.max_instruction_words)
            continue
        if entry.key_i in seen_keys:
            drop(index, position, "duplicate_instruction", duplicate_of=seen_keys[entry.key_i])
            continue
        if entry.key_r in seen_keys:
            drop(index, position, "duplicate_response", duplicate_of=seen_keys[entry.key_r])
            continue
        if params.diversify_func_names:
            if entry.first_block is None:
                # the release indexed [0] of an empty list here and crashed
                drop(index, position, "no_code_block")
                continue
            try:
                if params.func_names == "release":
                    names_key = _hash(joined_function_names(entry.first_block))
                else:
                    functions, classes = definition_names(entry.first_block)
            except (SyntaxError, ValueError) as exc:
                drop(index, position, "code_syntax_error", error=f"{type(exc).__name__}: {exc}")
                continue
            if params.func_names == "release":
                if names_key in seen_keys:
                    drop(index, position, "duplicate_function_names", duplicate_of=seen_keys[names_key])
                    continue
                seen_keys[names_key] = entry.id
            else:
                clash = functions if functions and functions in seen_names else None
                clash = clash or (classes if classes and classes in seen_names else None)
                if clash is not None:
                    drop(index, position, "duplicate_function_names", duplicate_of=seen_names[clash], names=sorted(clash))
                    continue
                seen_names.setdefault(functions, entry.id)
                seen_names.setdefault(classes, entry.id)
        kept.append(entry)
        seen_keys.setdefault(entry.key_i, entry.id)
        seen_keys.setdefault(entry.key_r, entry.id)
    stats.dropped = [dropped[i] for i in sorted(dropped)]
    with open(path, "rb") as source, atomic_writer(output) as out:
        for entry in kept:
            source.seek(entry.offset)
            out.write(dumps(json.loads(source.readline())) + "\n")
    stats.n_out = len(kept)
    stats.extra = {"shuffle": params.shuffle, "shuffle_seed": params.seed}
    stats.check_balance()
    return stats


def record_rng(seed: int, record_id: str) -> random.Random:
    """The RNG of one record: depends on the seed and the record's id only."""
    return random.Random(f"{seed}\0{record_id}")


@dataclass(frozen=True)
class SmartResult:
    instruction: str
    response: str
    removed: tuple[str, ...]
    assertion_added: bool


def smart_rewrite(instruction: str, response: str, rng: random.Random, params: SmartParams) -> SmartResult:
    """The release's SMART mode on one record (raises :class:`FormatError` or SyntaxError).

    The RNG is drawn in the release's order: explanation, reasoning (before the incomplete
    check, so a dropped incomplete record still consumes them), then (for all-assert tests) the
    number of assertions and which, then the augmentation coin when the earlier conditions hold.
    Sections are removed by value, as the release's ``contents.remove`` did (tests, explanation,
    reasoning), so two equal sections lose the first one.
    """
    sections = split_sections(response)
    remove_tests = "test" not in instruction.lower()
    remove_explanation = rng.random() < params.p_drop_explanation
    remove_reasoning = rng.random() < params.p_drop_reasoning
    if any(marker in response.lower() for marker in INCOMPLETE_MARKERS):
        raise FormatError("incomplete")
    contents = [sections.reasoning, sections.implementation, sections.explanation, sections.tests]
    removed: list[str] = []
    for name, flag, value in (
        ("tests", remove_tests, sections.tests),
        ("explanation", remove_explanation, sections.explanation),
        ("reasoning", remove_reasoning, sections.reasoning),
    ):
        if flag:
            contents.remove(value)
            removed.append(name)
    text = "\n\n".join(contents)

    lines = sections.tests_block.splitlines()
    if all(line.startswith("assert") for line in lines):
        chosen = rng.sample(lines, k=min(rng.choice([1, 2, 3, 4, 5]), len(lines)))
        assertion = "\n".join(chosen)
        term = "assertion" + ("s" if len(chosen) > 1 else "")
    else:
        assertion = sections.tests_block
        term = "test case"
    lowered = instruction.lower()
    augment = (
        params.p_assertion_in_instruction > 0
        and "assert" in assertion
        and len(assertion.splitlines()) <= 5
        and rng.random() < params.p_assertion_in_instruction
        and "assert" not in instruction
        and "for example" not in lowered
        and "test" not in lowered
    )
    if augment:
        instruction = (
            f"{instruction}\n\nYour code should pass the following {term}:\n"
            f"```python\n{assertion.strip()}\n```"
        )
    if params.remove_comments == "release":
        text = remove_comment_lines(text)
    elif params.remove_comments == "ast":
        text = strip_comments_in_blocks(text)
    return SmartResult(instruction, text, tuple(removed), augment)


@dataclass
class Contamination:
    """Which benchmark strings the final records contain."""

    index: Any  # benchdata.ContaminationIndex
    description: JsonObj
    hits: list[JsonObj] = field(default_factory=list)

    def check(self, record_id: str, instruction: str, response: str) -> str | None:
        for part, text in (("instruction", instruction), ("response", response)):
            key = self.index.first_key(text)
            if key is not None:
                self.hits.append({"id": record_id, "field": part, "benchmark": key})
                return key
        return None


def load_contamination(decontamination: Mapping[str, Any]) -> Contamination:
    from .benchdata import ContaminationIndex, DecontamParams, load_decontamination

    loaded = load_decontamination(DecontamParams.from_dict(dict(decontamination)))
    return Contamination(ContaminationIndex(loaded.strings), loaded.describe())


def sft_record(record: JsonObj, instruction: str, response: str) -> JsonObj:
    made: JsonObj = {"id": record["id"], "instruction": instruction, "response": response}
    for name in PROVENANCE_FIELDS:
        if name in record:
            made[name] = record[name]
    return made


def run_sft(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    params: SmartParams,
    *,
    contamination: Contamination | None = None,
    mix: Sequence[MixSource] = (),
    pins: Mapping[str, Pin] | None = None,
    show_progress: bool = True,
) -> StageStats:
    """Stage 3: SMART rewrite, decontamination, and the final records (in input order); then
    each external source's chosen records (``mix``, :mod:`selfalign.mix`), decontaminated the
    same way, in source order."""
    path = Path(input_path)
    stats = StageStats()
    removed_counts: dict[str, int] = {"reasoning": 0, "explanation": 0, "tests": 0}
    augmented = checked = 0
    shared_rng = random.Random(params.seed)  # the release's one random.seed(0) stream
    with atomic_writer(output) as out:
        for _, record in _records(path, "sft", show_progress):
            stats.n_in += 1
            rng = shared_rng if params.rng == "global" else record_rng(params.seed, str(record["id"]))
            record_id = str(record["id"])
            try:
                result = smart_rewrite(record["instruction"], record["response"], rng, params)
            except FormatError as exc:
                stats.drop(exc.reason, id=record_id, detail=_format_detail(record["response"]))
                continue
            except (SyntaxError, ValueError) as exc:
                stats.drop("code_block_syntax_error", id=record_id, detail={"error": f"{type(exc).__name__}: {exc}"})
                continue
            if contamination is not None:
                checked += 1
                hit = contamination.check(record_id, result.instruction, result.response)
                if hit is not None and params.decontaminate:
                    stats.drop(f"contaminated:{hit}", id=record_id, detail=contamination.hits[-1])
                    continue
            for name in result.removed:
                removed_counts[name] += 1
            augmented += result.assertion_added
            out.write(dumps(sft_record(record, result.instruction, result.response)) + "\n")
            stats.n_out += 1
        sources: dict[str, dict[str, int]] = {SELF: {"in": stats.n_in, "out": stats.n_out}} if mix else {}
        for source in mix:
            chosen, rows = load_source(source, pins)
            entry = sources[source.name] = {"rows": rows, "in": len(chosen), "out": 0, "contaminated": 0}
            for made in chosen:
                stats.n_in += 1
                if contamination is not None:
                    checked += 1
                    hit = contamination.check(made.id, made.instruction, made.response)
                    if hit is not None:
                        entry["contaminated"] += 1
                        if params.decontaminate:
                            stats.drop(f"contaminated:{hit}", id=made.id, detail=contamination.hits[-1])
                            continue
                out.write(dumps({"id": made.id, "instruction": made.instruction, "response": made.response,
                                 "source": made.source}) + "\n")
                entry["out"] += 1
                stats.n_out += 1
    if sources:
        # per source; the funnel's chain check counts "added" as records from outside the chain
        stats.extra["sources"] = sources
        stats.extra["added"] = sum(e["in"] for k, e in sources.items() if k != SELF)
    stats.extra |= {
        "rng": params.rng,
        "sections_removed": removed_counts,
        "assertions_in_instruction": augmented,
        "decontamination_checked": checked,
    }
    stats.check_balance()
    return stats


def write_parquet(jsonl: str | os.PathLike[str], output: str | os.PathLike[str]) -> int:
    """The SFT JSONL as Parquet (same rows, same order); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [record for _, record in iter_jsonl(Path(jsonl))]
    columns = ["id", "instruction", "response", *PROVENANCE_FIELDS, "source"]  # source: mixed-in records
    present = [c for c in columns if any(c in r for r in rows)] or ["id", "instruction", "response"]
    # typed explicitly, so an empty SFT set still gives a file with the columns
    schema = pa.schema([(c, pa.int64() if c == "sample" else pa.string()) for c in present])
    table = pa.Table.from_pylist([{c: r.get(c) for c in present} for r in rows], schema=schema)
    with atomic_writer(output, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")
    return len(rows)


_CARD_STAGES = tuple((s.artifact, s.card) for s in STAGES if s.card is not None)


def dataset_card(results_dir: Path, run_name: str, sft_meta: Mapping[str, Any], recipe: str | None = None) -> str:
    """The README.md beside ``sft.jsonl``: what the data is and the funnel that made it."""
    rows = []
    for rel, what in _CARD_STAGES:
        meta_path = results_dir / f"{rel}.meta.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        counts = meta.get("counts", {})
        drops = meta.get("drops", {})
        top = ", ".join(f"{k} {v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])[:4])
        rows.append(
            f"| `{rel}` | {what} | {counts.get('in', '')} | {counts.get('out', '')} | {top} |"
        )
    removed = sft_meta.get("sections_removed", {})
    return "\n".join(
        [
            "---",
            "license: other",
            "task_categories: [text-generation]",
            "language: [en, code]",
            "tags: [code, self-alignment, selfalign]",
            "configs:",
            "- config_name: default",
            "  data_files: sft.parquet",
            "---",
            "",
            f"# selfalign SFT data, run `{run_name}`",
            "",
            *([f"Recipe: {recipe}.", ""] if recipe else []),
            "Instruction-response pairs made by the StarCoder2-Instruct self-alignment recipe",
            "(selfalign): a base model wrote concepts, instructions, responses and their own",
            "tests from seed functions; responses whose tests pass in a gVisor sandbox were kept,",
            "sanitized, deduplicated and rewritten as upstream's v0.1 did. Files: `sft.jsonl`",
            "and `sft.parquet` (the same rows), fields `id`, `instruction`, `response` and the",
            "provenance ids (`source_id` = the instruction record, `sample` = which of its",
            "responses). Each artifact's `.meta.json` sidecar holds its sha256, counts, drops",
            "by reason and the config that made it.",
            "",
            "## Funnel",
            "",
            "| artifact | what | in | out | largest drops |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Counts of `executed.jsonl` and later are of response samples; earlier ones of records.",
            "",
            "## Rewrites in the final step",
            "",
            f"- reasoning removed: {removed.get('reasoning', 0)}, explanation removed:"
            f" {removed.get('explanation', 0)}, tests removed: {removed.get('tests', 0)}",
            f"- test assertions appended to the instruction: {sft_meta.get('assertions_in_instruction', 0)}",
            "- contamination against HumanEval and MBPP: see `decontamination.json`",
            "",
            *_card_sources(sft_meta.get("sources") or {}),
        ]
    )


def _card_sources(sources: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The card's per-source table, where external sets were mixed in (curation.mix)."""
    if not sources:
        return []
    total = sum(e["out"] for e in sources.values()) or 1
    rows = []
    for name, e in sources.items():
        rows.append(f"| `{name}` | {e.get('rows', e['in']) if name != SELF else ''} | {e['in']} | {e['out']} | "
                    f"{e.get('contaminated', '')} | {100 * e['out'] / total:.1f}% |")
    return [
        "## Sources",
        "",
        "`self`: the records this recipe generated; the others were mixed in by `curation.mix`",
        "(their records carry `source` and ids `<source>:<row>`).",
        "",
        "| source | rows | chosen | in sft.jsonl | benchmark matches | share |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]

