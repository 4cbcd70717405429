"""Generated input at every stage boundary (Hypothesis, a fixed seed, bounded examples).

The property, for each reader and each cheap record stage: whatever a file holds (any JSON
value, any Unicode including lone surrogates and NUL, byte garbage, a cut-off line, a repeated
record), the outcome is "processed", "a named drop" or "a named error" (a RecordError or
ConfigError naming the file and line), never another exception; and for a per-record stage, a
record's output does not depend on the other records of the shard. The number of examples per
stage is EXAMPLES (the closing note of the bad-input issue states them).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfalign.curation import CleanParams, run_clean, run_sanitize
from selfalign.execution import sample_task, samples_of
from selfalign.generation.judge import parse_judge
from selfalign.generation.prompts import (
    ParseError,
    concepts_prompt,
    instruction_prompt,
    load_tiny_fewshot,
    parse_concepts,
    parse_instruction,
    parse_response,
    response_prompt,
)
from selfalign.importer import ImportSpec, import_records
from selfalign.records import RecordError, dumps, iter_jsonl, parse_jsonl_line, read_jsonl
from selfalign.seeds.dedup import shingles
from selfalign.seeds.filter import FilterParams, run_filter
from selfalign.seeds.quality import _ImportFixer, has_return_value

EXAMPLES = {"reader": 300, "roundtrip": 200, "parsers": 300, "execution": 300, "sanitize": 60,
            "clean": 40, "filter": 40, "import": 40, "quality": 300, "imports": 12, "shingles": 300,
            "prompts": 150}

#: Any character, lone surrogates (Cs) and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(ANY_TEXT, JSON, max_size=5)

FENCE = "```"
RESPONSE = st.builds(
    lambda pre, code, tests: f"{pre}\n[Implementation]\n{FENCE}python\n{code}\n{FENCE}\n\n[Explanation]\nx\n\n"
                             f"[Tests]\n{FENCE}python\n{tests}\n{FENCE}",
    ANY_TEXT, ANY_TEXT, ANY_TEXT,
)


def _settings(name: str) -> Any:
    return settings(max_examples=EXAMPLES[name], derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _named(error: BaseException, path: Path) -> bool:
    """A named error: it says the file and the line (``<path>:<line>:``)."""
    text = str(error)
    return isinstance(error, RecordError) and text.startswith(f"{path}:") and text[len(str(path)) + 1].isdigit()


# --------------------------------------------------------------------------- the reader


@_settings("reader")
@given(line=st.binary(max_size=60) | OBJECTS.map(lambda o: dumps(o).encode("utf-8", "surrogatepass")),
       newline=st.booleans())
def test_any_bytes_are_a_record_or_a_named_error(line: bytes, newline: bool) -> None:
    raw = line.replace(b"\n", b" ") + (b"\n" if newline else b"")
    try:
        record = parse_jsonl_line("f.jsonl", 7, raw, {"id": str})
    except RecordError as exc:
        assert str(exc).startswith("f.jsonl:7:")
    else:
        assert isinstance(record, dict) and isinstance(record["id"], str)


@_settings("roundtrip")
@given(record=OBJECTS)
def test_every_record_python_holds_is_written_and_read_back_the_same(record: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(dumps(record) + "\n", encoding="utf-8")  # dumps: always encodable
    assert [r for _, r in iter_jsonl(path)] == [json.loads(json.dumps(record))]


@_settings("parsers")
@given(text=st.none() | ANY_TEXT, finish=st.sampled_from([None, "stop", "length", "eos_token"]))
def test_completion_parsers_parse_or_name_why_not(text: str | None, finish: str | None) -> None:
    for parse in (parse_concepts, parse_instruction, parse_response):
        try:
            parse(text, finish_reason=finish)
        except ParseError as exc:
            assert exc.reason
    try:
        parse_judge(text)
    except ParseError as exc:
        assert exc.reason == "missing" and text is None


# --------------------------------------------------------------------------- execution


@_settings("execution")
@given(record=OBJECTS | st.fixed_dictionaries({"id": ANY_TEXT, "responses": st.lists(
    st.fixed_dictionaries({"response": RESPONSE | ANY_TEXT}), max_size=3)}), cap=st.none() | st.integers(1, 200))
def test_execution_takes_any_record_apart_or_names_what_is_wrong(record: dict[str, Any], cap: int | None) -> None:
    path = Path("in.jsonl")
    try:
        samples = samples_of(record, path, 3)
    except RecordError as exc:
        assert _named(exc, path) and exc.field in ("responses", "parsing_result", "response")
        return
    for sample, response in samples:
        task = sample_task(record, sample, response, cap)
        assert task.code or task.skip in ("no_code", "nul_byte", "too_long")
        if task.code:
            ast.parse(task.code)  # only code that parses is ever run
        dumps({"response_tail": response})  # its drop record can be written


# --------------------------------------------------------------------------- record stages


def _file(tmp_path: Path, records: list[dict[str, Any]], garbage: bytes | None, cut: bool, twice: bool) -> Path:
    lines = [dumps(r).encode() + b"\n" for r in records]
    if twice and lines:
        lines.append(lines[0])
    if garbage is not None:
        lines.insert(len(lines) // 2, garbage.replace(b"\n", b" ") + b"\n")
    if cut and lines:
        lines[-1] = lines[-1][: max(1, len(lines[-1]) // 2)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(lines))
    return path


PERTURBATION = {"garbage": st.none() | st.binary(min_size=1, max_size=30), "cut": st.booleans(),
                "twice": st.booleans()}
SAMPLES = st.lists(st.fixed_dictionaries({"instruction": ANY_TEXT, "response": RESPONSE | ANY_TEXT}),
                   min_size=1, max_size=6)


def _with_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": f"r{i}/0", **r} for i, r in enumerate(records)]


@_settings("sanitize")
@given(samples=SAMPLES, **PERTURBATION)
def test_sanitize_keeps_drops_or_names_and_one_record_never_changes_another(
    samples: list[dict[str, Any]], garbage: bytes | None, cut: bool, twice: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_path = tmp_path_factory.mktemp("sanitize")
    records = _with_ids(samples)
    path = _file(tmp_path, records, garbage, cut, twice)
    try:
        stats = run_sanitize(path, tmp_path / "out.jsonl", show_progress=False)
    except RecordError as exc:
        assert _named(exc, path)
        return
    stats.check_balance()
    kept = read_jsonl(tmp_path / "out.jsonl")
    assert len(kept) + len(stats.dropped) == stats.n_in  # every drop named by a drop record
    for record in records:  # each alone gives what it gave among the others
        alone = tmp_path / "alone.jsonl"
        alone.write_text(dumps(record) + "\n", encoding="utf-8")
        run_sanitize(alone, tmp_path / "alone-out.jsonl", show_progress=False)
        assert [r for r in read_jsonl(tmp_path / "alone-out.jsonl")] == [r for r in kept if r["id"] == record["id"]]


@_settings("clean")
@given(samples=SAMPLES, **PERTURBATION)
def test_clean_keeps_drops_or_names(samples: list[dict[str, Any]], garbage: bytes | None, cut: bool, twice: bool,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp_path = tmp_path_factory.mktemp("clean")
    path = _file(tmp_path, _with_ids(samples), garbage, cut, twice)
    try:
        stats = run_clean(path, tmp_path / "out.jsonl", CleanParams(), show_progress=False)
    except RecordError as exc:
        assert _named(exc, path)
        return
    stats.check_balance()


FUNCTIONS = st.lists(st.fixed_dictionaries({"content": st.builds(
    lambda name, body: f"def {name}(x):\n    {body}\n    return x\n", st.from_regex(r"[a-z_]{1,8}", fullmatch=True), ANY_TEXT)
    | ANY_TEXT}), min_size=1, max_size=6)


@_settings("filter")
@given(functions=FUNCTIONS, **PERTURBATION)
def test_the_seed_filter_keeps_drops_or_names_and_one_record_never_changes_another(
    functions: list[dict[str, Any]], garbage: bytes | None, cut: bool, twice: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp_path = tmp_path_factory.mktemp("filter")
    records = [{"id": f"f{i}", **f} for i, f in enumerate(functions)]
    path = _file(tmp_path, records, garbage, cut, twice)
    params = FilterParams.from_dict({"decontamination": {"humaneval": "none", "mbpp": "none"}})
    try:
        stats = run_filter(path, tmp_path / "out.jsonl", params, show_progress=False)
    except RecordError as exc:
        assert _named(exc, path)
        return
    stats.check_balance()
    kept = read_jsonl(tmp_path / "out.jsonl")
    for record in records:
        alone = tmp_path / "alone.jsonl"
        alone.write_text(dumps(record) + "\n", encoding="utf-8")
        run_filter(alone, tmp_path / "alone-out.jsonl", params, show_progress=False)
        assert read_jsonl(tmp_path / "alone-out.jsonl") == [r for r in kept if r["id"] == record["id"]]


@_settings("import")
@given(rows=st.lists(OBJECTS | st.fixed_dictionaries({"id": ANY_TEXT, "content": ANY_TEXT}), min_size=1, max_size=6),
       **PERTURBATION)
def test_an_import_takes_rows_or_names_the_bad_one(rows: list[dict[str, Any]], garbage: bytes | None, cut: bool,
                                                   twice: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp_path = tmp_path_factory.mktemp("import")
    path = _file(tmp_path, rows, garbage, cut, twice)
    spec = ImportSpec.from_dict({"stage": "filtered", "jsonl": str(path)})
    try:
        stats = import_records(spec, tmp_path / "out.jsonl", show_progress=False)
    except RecordError as exc:
        assert _named(exc, path)
        return
    assert stats.n_out == len(read_jsonl(tmp_path / "out.jsonl"))


# --------------------------------------------------------------------------- per-record functions
# The functions a stage applies to one record's text, on any text: seed quality's return-value
# rule and import inference, dedup's shingles, and the generation prompts built from a record.

CODE = ANY_TEXT | st.builds(lambda a, b: f"def f(x):\n    {a}\n    return {b}\n", ANY_TEXT, ANY_TEXT)


@_settings("quality")
@given(code=CODE)
def test_the_return_value_rule_judges_any_text(code: str) -> None:
    assert isinstance(has_return_value(code), bool)


@pytest.fixture(scope="module")
def import_fixer() -> Any:
    with _ImportFixer(1, 5.0) as fixer:
        yield fixer


@_settings("imports")
@given(codes=st.lists(CODE, min_size=1, max_size=6))
def test_import_inference_gives_code_or_a_named_failure_for_any_text(codes: list[str], import_fixer: Any) -> None:
    results = import_fixer.fix_many(codes)
    assert len(results) == len(codes)
    for code, (fixed, reason) in zip(codes, results, strict=True):
        assert isinstance(fixed, str)
        if reason is not None:  # a failure keeps the code and says why
            assert fixed == code and reason.split(":")[0] in ("timeout", "hard_timeout", "error")


@_settings("shingles")
@given(text=ANY_TEXT, ngram=st.integers(1, 7))
def test_dedup_shingles_any_text(text: str, ngram: int) -> None:
    got = shingles(text, ngram)
    assert got and all(isinstance(s, bytes) for s in got)


@_settings("prompts")
@given(text=ANY_TEXT, concepts=st.lists(ANY_TEXT, max_size=4), index=st.integers(0, 2**31))
def test_generation_prompts_carry_any_record_text(text: str, concepts: list[str], index: int) -> None:
    fewshot = load_tiny_fewshot()
    assert text in concepts_prompt(fewshot, text, index).prompt
    assert text in response_prompt(fewshot, text, index).prompt
    asked = instruction_prompt(fewshot, concepts, index)
    assert all(c in asked.prompt for c in concepts) and asked.property is not None
