"""Prompts of S->C, C->I, I->R and the judge, checked against an independent re-implementation
of upstream's algorithm (global ``random`` module, seeded the upstream way), plus hard-coded
anchors, parsers, few-shot file errors, and the project's own tiny few-shot file, whose code
blocks are run."""

from __future__ import annotations

import ast
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from selfalign.generation import prompts
from selfalign.generation.judge import (
    JUDGE_SHOTS,
    DocstringError,
    UpstreamJudgeOrder,
    extract_docstring,
    judge_order,
    judge_prompt,
    parse_judge,
)
from selfalign.generation.prompts import (
    UPSTREAM_FEWSHOT_SHA256,
    Fewshot,
    FewshotFormatError,
    GenerationParams,
    ParseError,
    concepts_prompt,
    instruction_prompt,
    load_fewshot,
    load_tiny_fewshot,
    parse_completion,
    parse_concepts,
    parse_fewshot,
    parse_instruction,
    parse_response,
    response_prompt,
    tiny_fewshot_text,
)


def _shared_data() -> Path:
    env = os.environ.get("SELFALIGN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


UPSTREAM_FILE = _shared_data() / "upstream" / "self-ossinstruct-fewshot.txt"

SNIPPET = (
    "    values = {k: v for k, v in pairs}  \n"
    "def lookup(values, key):\n"
    '    """Return values[key] or None."""\n'
    "    return values.get(key)\n\n"
)
CONCEPTS = ["dictionary comprehension", "key lookup with a default", "{braces} in text"]
INSTRUCTION = "Write a Python function `add(a, b)` that returns the sum of `a` and `b`.  \n"
INDICES = [0, 1, 2, 17, 1234, 249_999]


@pytest.fixture(scope="module")
def upstream_text() -> str:
    if not UPSTREAM_FILE.is_file():
        pytest.fail(
            f"{UPSTREAM_FILE} is missing: set SELFALIGN_SHARED_DATA to the shared data folder"
        )
    return UPSTREAM_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def upstream(upstream_text: str) -> Fewshot:
    return parse_fewshot(upstream_text)


# --------------------------------------------------------------------------------------------
# An independent reading of upstream's self_ossinstruct.py (52ae3557): the same regex splits,
# the global random module, the same call order. Deliberately not sharing code with the module.


@contextmanager
def _global_random() -> Iterator[None]:
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def _upstream_fewshot(text: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    content = text.strip()
    splits = re.split(r"### Example \d+", content)
    header = splits[0].strip()
    _, i_r, c_i, s_c = (
        s.strip() for s in re.split(r"### System: I->R|### System: C->I|### System: S->C", header)
    )
    examples = []
    for chunk in splits[1:]:
        pattern = r"\[Code\]\n|\[Property\]\n|\[Instruction\]\n|\[Solution\]\n|\[Response\]\n"
        _, snippet, prop, instruction, solution, response = re.split(pattern, chunk.strip())
        lines = prop.strip().split("\n")
        assert len(lines) == 4
        category, language, concepts, difficulty = (ln[ln.index(":") + 1 :].strip() for ln in lines)
        examples.append(
            {
                "snippet": snippet.rstrip(),
                "category": category,
                "language": language,
                "concepts": [c.strip() for c in concepts.split(",")],
                "difficulty": difficulty,
                "instruction": instruction.strip(),
                "solution": None if solution.strip() == "" else solution.strip(),
                "response": response.strip(),
            }
        )
    assert len(examples) == 16
    return {"I->R": i_r, "C->I": c_i, "S->C": s_c}, examples


TEMPLATES = {
    "I->R": "### Instruction\n{instruction}\n\n### Response\n",
    "S->C": "### Snippet\n{snippet}\n\n### Concepts\n",
    "C->I": "### Property\n{property}\n\n### Instruction\n",
}


def _property_text(category: str, language: str, concepts: list[str], difficulty: str) -> str:
    return "\n".join(
        [
            "category: " + category,
            "language: " + language,
            "concepts: " + ", ".join(concepts),
            "difficulty: " + difficulty,
        ]
    )


def _upstream_shot(example: dict[str, Any], mode: str) -> str:
    if mode == "I->R":
        return TEMPLATES[mode].format(instruction=example["instruction"]) + example["response"]
    if mode == "S->C":
        return TEMPLATES[mode].format(snippet=example["snippet"]) + ", ".join(example["concepts"])
    prop = _property_text(
        example["category"], example["language"], example["concepts"], example["difficulty"]
    )
    return TEMPLATES[mode].format(property=prop) + example["instruction"]


def _upstream_prompt(text: str, mode: str, index: int, k: int, record: dict[str, Any]) -> str:
    systems, examples = _upstream_fewshot(text)
    with _global_random():
        random.seed(3407 + index)
        if mode == "I->R":
            fmt = {"instruction": record["instruction"]}
        elif mode == "S->C":
            fmt = {"snippet": record["seed"]}
        else:
            category = random.choice(["code generation (function implementation)"])
            difficulty = random.choice(["easy", "medium", "hard"])
            fmt = {"property": _property_text(category, "Python", record["concepts"], difficulty)}
        valid = [e for e in examples if e["solution"] is not None] if mode == "I->R" else examples
        chosen = random.sample(valid, k=k)
    body = "\n\n".join(
        f"## Example {i + 1}\n{_upstream_shot(e, mode)}" for i, e in enumerate(chosen)
    )
    prefix = f"## Example {len(chosen) + 1}\n" + TEMPLATES[mode].format(**fmt)
    return f"{systems[mode]}\n\n{body}\n\n{prefix}".rstrip()


# --------------------------------------------------------------------------------------------
# Golden prompts: S->C, C->I, I->R.


def test_upstream_file_is_the_pinned_one(upstream_text: str, upstream: Fewshot) -> None:
    assert upstream.sha256 == UPSTREAM_FEWSHOT_SHA256
    assert len(upstream.examples) == 16
    assert [ex.number - 1 for ex in upstream.pool("I->R")] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert upstream.examples[0].snippet.startswith("    value = int(round((value - prev) * 1e5))")
    assert upstream.examples[0].property.concepts == (
        "5-bit chunk encoding with bitwise shifts",
        "ASCII value manipulation",
        "continuation bit signaling",
    )
    assert upstream.examples[7].property.difficulty == "very hard"
    assert upstream.sys_s_c.startswith("Extract key programming concepts")


def test_parse_matches_upstream_reading(upstream_text: str, upstream: Fewshot) -> None:
    systems, examples = _upstream_fewshot(upstream_text)
    assert (upstream.sys_i_r, upstream.sys_c_i, upstream.sys_s_c) == (
        systems["I->R"],
        systems["C->I"],
        systems["S->C"],
    )
    for ours, theirs in zip(upstream.examples, examples, strict=True):
        assert ours.snippet == theirs["snippet"]
        assert ours.instruction == theirs["instruction"]
        assert ours.solution == theirs["solution"]
        assert ours.response == theirs["response"]
        assert list(ours.property.concepts) == theirs["concepts"]
        assert (ours.property.category, ours.property.difficulty) == (
            theirs["category"],
            theirs["difficulty"],
        )


@pytest.mark.parametrize("index", INDICES)
def test_concepts_prompt_golden(upstream_text: str, upstream: Fewshot, index: int) -> None:
    expected = _upstream_prompt(upstream_text, "S->C", index, 8, {"seed": SNIPPET})
    request = concepts_prompt(upstream, SNIPPET, index)
    assert request.prompt == expected
    assert request.seed == 3407 + index and request.kind == "S->C" and request.property is None


@pytest.mark.parametrize("index", INDICES)
def test_instruction_prompt_golden(upstream_text: str, upstream: Fewshot, index: int) -> None:
    expected = _upstream_prompt(upstream_text, "C->I", index, 8, {"concepts": CONCEPTS})
    request = instruction_prompt(upstream, CONCEPTS, index)
    assert request.prompt == expected
    assert request.property is not None
    assert request.property.text() in request.prompt
    assert request.prompt.endswith(request.property.text() + "\n\n### Instruction")


@pytest.mark.parametrize("index", INDICES)
def test_response_prompt_golden(upstream_text: str, upstream: Fewshot, index: int) -> None:
    expected = _upstream_prompt(upstream_text, "I->R", index, 1, {"instruction": INSTRUCTION})
    assert response_prompt(upstream, INSTRUCTION, index).prompt == expected


def test_instruction_difficulties_cover_all_three(upstream: Fewshot) -> None:
    seen = {instruction_prompt(upstream, CONCEPTS, i).property.difficulty for i in range(40)}  # type: ignore[union-attr]
    assert seen == {"easy", "medium", "hard"}


def _headers(prompt: str) -> list[int]:
    return [int(n) for n in re.findall(r"^## Example (\d+)$", prompt, flags=re.M)]


def test_anchors_index_0(upstream: Fewshot) -> None:
    s_c = concepts_prompt(upstream, SNIPPET, 0)
    assert s_c.shots == (1, 6, 2, 5, 3, 14, 4, 12)
    assert _headers(s_c.prompt) == list(range(1, 10))
    assert s_c.prompt.startswith(
        "Extract key programming concepts from a given code snippet collected from the open "
        "source repositories. Present the concepts as a comma separated list.\n\n"
        "## Example 1\n### Snippet\ndef ceil_shift(n, b):\n"
    )
    assert s_c.prompt.endswith(f"\n\n## Example 9\n### Snippet\n{SNIPPET}\n\n### Concepts")

    c_i = instruction_prompt(upstream, CONCEPTS, 0)
    assert c_i.shots == (4, 5, 3, 6, 15, 9, 14, 13)
    assert c_i.property is not None and c_i.property.difficulty == "medium"
    assert c_i.prompt.startswith(
        "Create a set of independent code instructions that are original, different, diverse, "
        "and high-quality, where the properties control an instruction's category, language, "
        "concepts, and difficulty.\n\n## Example 1\n### Property\n"
    )
    assert c_i.prompt.endswith(
        "## Example 9\n### Property\ncategory: code generation (function implementation)\n"
        "language: Python\nconcepts: dictionary comprehension, key lookup with a default, "
        "{braces} in text\ndifficulty: medium\n\n### Instruction"
    )
    assert _headers(c_i.prompt) == list(range(1, 10))

    i_r = response_prompt(upstream, INSTRUCTION, 0)
    assert i_r.shots == (0,)
    assert _headers(i_r.prompt) == [1, 2]
    assert i_r.prompt.startswith(
        "Provide the best response to a given instruction. Follow the following steps to craft "
        "your response:\n1. reason about the given instruction\n"
    )
    assert (
        "## Example 1\n### Instruction\nCreate a Python function to encode an integer" in i_r.prompt
    )
    assert i_r.prompt.endswith(
        "## Example 2\n### Instruction\nWrite a Python function `add(a, b)` that returns the sum "
        "of `a` and `b`.  \n\n\n### Response"
    )
    assert response_prompt(upstream, INSTRUCTION, 1).shots == (3,)


def test_prompts_are_pure(upstream: Fewshot) -> None:
    with _global_random():
        random.seed(1)
        state = random.getstate()
        later = concepts_prompt(upstream, SNIPPET, 17)
        assert random.getstate() == state
    for index in (3, 0, 17):
        concepts_prompt(upstream, SNIPPET, index)
    assert concepts_prompt(upstream, SNIPPET, 17) == later
    assert concepts_prompt(upstream, SNIPPET, 0, base_seed=3424) == later.__class__(
        **{**later.__dict__, "index": 0}
    )


def test_prompt_argument_errors(upstream: Fewshot) -> None:
    with pytest.raises(ValueError, match="index"):
        concepts_prompt(upstream, SNIPPET, -1)
    with pytest.raises(ValueError, match="num_fewshots=11"):
        response_prompt(upstream, INSTRUCTION, 0, num_fewshots=11)
    with pytest.raises(TypeError, match="unexpected"):
        upstream.prompt("S->C", 0, instruction="x")
    with pytest.raises(TypeError, match="concepts"):
        upstream.prompt("C->I", 0, concepts="a, b")
    with pytest.raises(ValueError, match="unknown mode"):
        upstream.prompt("X->Y", 0)  # type: ignore[arg-type]


def test_completion_request_has_upstream_keys(upstream: Fewshot) -> None:
    params = GenerationParams()
    request = response_prompt(upstream, INSTRUCTION, 5)
    body = request.completion_request(params.for_kind("I->R"), "bigcode/starcoder2-15b")
    assert body == {
        "model": "bigcode/starcoder2-15b",
        "prompt": request.prompt,
        "max_tokens": 1536,
        "n": 10,
        "temperature": 0.7,
        "seed": 3412,
        "stop": ["## Example"],
    }


# --------------------------------------------------------------------------------------------
# Generation parameters.


def test_generation_defaults_are_the_released_run() -> None:
    params = GenerationParams()
    for kind, n, k in (("S->C", 1, 8), ("C->I", 1, 8), ("I->R", 10, 1)):
        mode = params.for_kind(kind)  # type: ignore[arg-type]
        assert (mode.temperature, mode.max_tokens, mode.n, mode.num_fewshots) == (0.7, 1536, n, k)
        assert mode.stop == ("## Example",) and mode.seed == 3407
    judge = params.for_kind("judge")
    assert (judge.temperature, judge.max_tokens, judge.stop, judge.seed) == (0.0, 5, ("\n",), 42)


def test_generation_overrides() -> None:
    params = GenerationParams.from_dict(
        {"responses": {"n": 4, "stop": "###"}, "judge": {"temperature": 0}}
    )
    assert params.responses.n == 4 and params.responses.stop == ("###",)
    assert params.responses.max_tokens == 1536 and params.concepts == GenerationParams().concepts
    assert params.judge.temperature == 0.0
    assert GenerationParams.from_dict(GenerationParams().to_dict()) == GenerationParams()
    assert GenerationParams.from_dict(None) == GenerationParams()
    with pytest.raises(ValueError, match="unknown generation section"):
        GenerationParams.from_dict({"response": {"n": 1}})
    with pytest.raises(ValueError, match=r"unknown generation.responses parameter\(s\): temp"):
        GenerationParams.from_dict({"responses": {"temp": 1.0}})
    with pytest.raises(ValueError, match=r"generation.responses.n must be an integer"):
        GenerationParams.from_dict({"responses": {"n": "10"}})
    with pytest.raises(ValueError, match=r"generation.concepts.max_tokens must be >= 1"):
        GenerationParams.from_dict({"concepts": {"max_tokens": 0}})
    with pytest.raises(ValueError, match=r"generation.concepts.n must be an integer"):
        GenerationParams.from_dict({"concepts": {"n": True}})


# --------------------------------------------------------------------------------------------
# Completion parsers.


def test_parse_concepts() -> None:
    assert parse_concepts(" recursion,  memoization ,dynamic programming\n") == [
        "recursion",
        "memoization",
        "dynamic programming",
    ]
    assert parse_concepts("single") == ["single"]
    assert parse_concepts("") == [""]  # upstream keeps it
    assert parse_concepts("a,,b") == ["a", "", "b"]
    with pytest.raises(ParseError) as info:
        parse_concepts("a,,b", allow_empty=False)
    assert info.value.reason == "empty"
    with pytest.raises(ParseError) as info:
        parse_concepts("a, b", finish_reason="length")
    assert info.value.reason == "unfinished"
    assert parse_concepts("a", finish_reason="eos_token") == ["a"]
    with pytest.raises(ParseError) as info:
        parse_concepts(None)
    assert info.value.reason == "missing"


def test_parse_instruction_and_response() -> None:
    assert (
        parse_instruction("\n Write a function.\n\n", finish_reason="stop") == "Write a function."
    )
    assert parse_response("  [Reasoning]\nx\n") == "[Reasoning]\nx"
    assert parse_response("   ") == ""
    with pytest.raises(ParseError, match="empty"):
        parse_response("   ", allow_empty=False)
    with pytest.raises(ParseError, match="length"):
        parse_instruction("cut", finish_reason="length")
    assert parse_completion("S->C", "a, b") == {"concepts": ["a", "b"]}
    assert parse_completion("C->I", " task ") == {"instruction": "task"}
    assert parse_completion("I->R", " answer ") == {"response": "answer"}
    assert issubclass(ParseError, ValueError)


@pytest.mark.parametrize(
    ("text", "yes", "no", "keep"),
    [
        (" Yes", 1, 0, True),
        (" No", 0, 1, False),
        ("", 0, 0, False),
        (" Yes, no", 1, 1, False),
        (" YES yes no", 2, 1, True),
        (" Not sure", 0, 1, False),
        (" Nope", 0, 1, False),
        (" yesno yes", 2, 1, True),
    ],
)
def test_parse_judge(text: str, yes: int, no: int, keep: bool) -> None:
    verdict = parse_judge(text)
    assert (verdict.yes, verdict.no, verdict.keep) == (yes, no, keep)
    assert verdict.tie == (yes == no)


# --------------------------------------------------------------------------------------------
# The judge: an independent reading of filter_dataset.py (global random, in-place shuffle).

ISSUE_HEAD = """<issue_start>username_0: I have a function in Python and I'd like someone to check my description of this function.
I'm doing this so that I can write a good docstring for this function.

Here is the code for the function:
```py
{code}
```

Here is my description of this program:
```
{doc}
```

Do not attempt to execute the function or to judge its correctness.
Answer with "Yes" or "No" depending on if my description has enough information alone to re-implement the function.
Also, answer with "No" if the description does not match the function."""
SHOT_TAIL = """<issue_comment>username_1: Sure, no problem. I will be able to help.
My answer is: {answer}

{rationale}

Upvotes: 200"""
QUERY_TAIL = """
Upvotes: 100<issue_comment>username_1: Sure, no problem. I will be able to help.
My answer is:"""
DUMMY = 'def dummy(): \n    """\n    """\n pass'


def _test_docstring(code: str) -> tuple[str, str]:
    first = code.find('"""')
    assert first != -1
    first += 3
    second = code[first + 1 :].find('"""')
    assert second != -1
    second += first + 1
    raw = code[first:second]
    lines = raw.splitlines()
    blank_free = [ln for ln in lines if ln.strip()]
    indent = min((len(ln) - len(ln.lstrip()) for ln in blank_free), default=0)
    doc = "\n".join(ln[indent:] if len(ln) >= indent else ln for ln in lines).strip()
    return doc, code[: first - 3] + code[second + 3 :]


def _test_judge_prompt(code: str, shots: list[tuple[str, str, str]]) -> str:
    text = ""
    for shot_code, answer, rationale in shots:
        doc, body = _test_docstring(shot_code)
        text += ISSUE_HEAD.format(code=body, doc=doc) + SHOT_TAIL.format(
            answer=answer, rationale=rationale
        )
    doc, body = _test_docstring(code)
    return text + ISSUE_HEAD.format(code=body, doc=doc) + QUERY_TAIL


def _canonical_shots() -> list[tuple[str, str, str]]:
    return [(s.code, s.answer, s.rationale) for s in JUDGE_SHOTS]


JUDGE_CODES = [
    'def add_one(a):\n    """Add one to a."""\n    return a + 1',
    'def scale(xs, k):\n    """\n        Multiply every element\n      of xs by k.\n    """\n    return [x * k for x in xs]',
    'def q(s):\n    """"Quoted" start."""\n    return s',
    "def braces(d):\n    '''no'''\n    \"\"\"Return {d}.\"\"\"\n    return {**d}",
]


def test_judge_shots_data() -> None:
    assert [s.answer for s in JUDGE_SHOTS] == ["No", "Yes", "No", "Yes", "Yes", "No", "Yes"]
    names = [re.search(r"def (\w+)\(", s.code).group(1) for s in JUDGE_SHOTS]  # type: ignore[union-attr]
    assert names == [
        "simple_scan_network",
        "coerce_integer",
        "__trans_df_into_dict",
        "inchesToMeters",
        "square_crop",
        "_setup_motifs_files",
        "trip",
    ]
    assert "\n" in JUDGE_SHOTS[2].rationale and "dict  does" in JUDGE_SHOTS[2].rationale


@pytest.mark.parametrize("index", [0, 1, 5, 99_999])
def test_judge_prompt_per_record_golden(index: int) -> None:
    for code in JUDGE_CODES:
        shots = _canonical_shots()
        with _global_random():
            random.seed(42 + index)
            random.shuffle(shots)
        request = judge_prompt(code, index)
        assert request.prompt == _test_judge_prompt(code, shots)
        assert [JUDGE_SHOTS[i].code for i in request.shots] == [s[0] for s in shots]
        assert request.seed == 42 + index and request.kind == "judge"


@pytest.mark.parametrize("rng_seed", [0, 42])
def test_judge_prompt_upstream_order_replays_sequential_shuffle(rng_seed: int) -> None:
    codes = [JUDGE_CODES[i % len(JUDGE_CODES)] for i in range(12)]
    shots = _canonical_shots()
    expected = []
    with _global_random():
        random.seed(rng_seed)
        random.shuffle(shots)  # upstream's dummy prompt, built before any record
        _test_judge_prompt(DUMMY, shots)
        for code in codes:
            random.shuffle(shots)
            expected.append(_test_judge_prompt(code, shots))
    replay = UpstreamJudgeOrder(rng_seed=rng_seed)
    got = [judge_prompt(code, j, upstream_order=replay).prompt for j, code in enumerate(codes)]
    assert got == expected
    # Going back restarts the stream; jumping ahead fast-forwards it.
    assert judge_prompt(codes[3], 3, upstream_order=replay).prompt == expected[3]
    assert (
        judge_prompt(codes[11], 11, upstream_order=UpstreamJudgeOrder(rng_seed)).prompt
        == expected[11]
    )


def test_judge_anchors() -> None:
    request = judge_prompt(JUDGE_CODES[0], 0)
    assert request.shots == judge_order(0) == (1, 3, 4, 2, 6, 0, 5)
    prompt = request.prompt
    assert prompt.startswith(
        "<issue_start>username_0: I have a function in Python and I'd like someone to check my "
        "description of this function.\n"
    )
    assert prompt.count("<issue_start>") == 8
    assert prompt.count("Upvotes: 200") == 7
    assert prompt.count("My answer is: Yes\n\n") == 4 and prompt.count("My answer is: No\n\n") == 3
    assert prompt.endswith(
        "```py\ndef add_one(a):\n    \n    return a + 1\n```\n\n"
        "Here is my description of this program:\n```\nAdd one to a.\n```\n\n"
        "Do not attempt to execute the function or to judge its correctness.\n"
        'Answer with "Yes" or "No" depending on if my description has enough information alone '
        "to re-implement the function.\n"
        'Also, answer with "No" if the description does not match the function.\n'
        "Upvotes: 100<issue_comment>username_1: Sure, no problem. I will be able to help.\n"
        "My answer is:"
    )
    # The first shot of index 0 is coerce_integer, with its docstring moved out of the code.
    assert prompt.index("def coerce_integer(df):\n    \n    # Numeric columns") < prompt.index(
        "def inchesToMeters"
    )
    assert UpstreamJudgeOrder().order(0) == (2, 4, 5, 3, 6, 1, 0)


def test_extract_docstring() -> None:
    assert extract_docstring(DUMMY) == ("", "def dummy(): \n    \n pass")
    for code in JUDGE_CODES:
        assert extract_docstring(code) == _test_docstring(code)
    assert extract_docstring(JUDGE_CODES[1])[0] == "Multiply every element\nof xs by k."
    with pytest.raises(DocstringError):
        extract_docstring("def f(x):\n    return x")
    with pytest.raises(DocstringError):
        extract_docstring('def f(x):\n    """never closed\n    return x')
    with pytest.raises(DocstringError):
        judge_prompt("def f(x):\n    return x", 0)


# --------------------------------------------------------------------------------------------
# Malformed few-shot files.


def _break(text: str, example: int, old: str, new: str) -> str:
    """Replace the first ``old`` inside example ``example`` of a few-shot text."""
    start = text.index(f"### Example {example}\n")
    nxt = text.find(f"### Example {example + 1}\n")
    end = len(text) if nxt == -1 else nxt
    chunk = text[start:end]
    assert old in chunk, (example, old)
    return text[:start] + chunk.replace(old, new, 1) + text[end:]


@pytest.mark.parametrize(
    ("example", "old", "new", "message"),
    [
        (
            3,
            "[Solution]\n",
            "",
            r"few-shot example 3: needs exactly one '\[Solution\]' line, found 0",
        ),
        (
            2,
            "[Implementation]\n",
            "[Code]\n",
            r"example 2: needs exactly one '\[Code\]' line, found 2",
        ),
        (5, "difficulty: medium\n", "", r"example 5: \[Property\] needs 4 lines"),
        (7, "language: Python", "lang: Python", r"example 7: \[Property\] line 'lang: Python'"),
        (8, "concepts:", "concepts", r"example 8: \[Property\] line 'concepts running total"),
        (4, "[Code]\n", "oops\n[Code]\n", r"example 4: text between"),
        (6, "### Example 6\n", "### Example 60\n", r"example 6: examples must be numbered"),
    ],
)
def test_malformed_example(example: int, old: str, new: str, message: str) -> None:
    text = _break(tiny_fewshot_text(), example, old, new)
    with pytest.raises(FewshotFormatError, match=message) as info:
        parse_fewshot(text)
    assert info.value.example == example
    assert isinstance(info.value, ValueError)


def test_malformed_section_order() -> None:
    text = tiny_fewshot_text()
    start = text.index("### Example 10\n")
    end = text.index("### Example 11\n")
    chunk = text[start:end]
    solution = chunk[chunk.index("[Solution]\n") : chunk.index("[Response]\n")]
    swapped = chunk.replace(solution, "").replace("[Property]\n", solution + "[Property]\n")
    with pytest.raises(FewshotFormatError, match="example 10: sections must come in the order"):
        parse_fewshot(text[:start] + swapped + text[end:])


def test_malformed_file_level() -> None:
    text = tiny_fewshot_text()
    last = text.index("### Example 16\n")
    with pytest.raises(FewshotFormatError, match="expected 16 examples, found 15"):
        parse_fewshot(text[:last])
    assert len(parse_fewshot(text[:last], expected_examples=15).examples) == 15
    swapped = text.replace("### System: C->I", "### System: TMP").replace(
        "### System: S->C", "### System: C->I"
    )
    swapped = swapped.replace("### System: TMP", "### System: S->C")
    with pytest.raises(FewshotFormatError, match="in that order"):
        parse_fewshot(swapped)
    with pytest.raises(FewshotFormatError, match="in that order"):
        parse_fewshot(text.replace("### System: S->C", "### System: S->I"))
    with pytest.raises(FewshotFormatError, match="text before"):
        parse_fewshot("preamble\n" + text)
    with pytest.raises(FewshotFormatError, match="system prompt C->I is empty"):
        parse_fewshot(re.sub(r"(### System: C->I\n).*?\n\n", r"\1", text, count=1, flags=re.S))
    with pytest.raises(FewshotFormatError, match="no '### Example <n>' header"):
        parse_fewshot("### System: I->R\na\n### System: C->I\nb\n### System: S->C\nc\n")


def test_crlf_file_reads_like_upstream(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes(tiny_fewshot_text().replace("\n", "\r\n").encode("utf-8"))
    assert load_fewshot(path).examples == load_tiny_fewshot().examples


# --------------------------------------------------------------------------------------------
# The project's own few-shot file.

RESPONSE_SECTIONS = ("[Reasoning]", "[Implementation]", "[Explanation]", "[Tests]")
PY_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _sections(response: str) -> dict[str, str]:
    positions = [response.index(name) for name in RESPONSE_SECTIONS]
    assert positions == sorted(positions)
    bounds = [*positions, len(response)]
    return {
        name: response[bounds[i] + len(name) : bounds[i + 1]]
        for i, name in enumerate(RESPONSE_SECTIONS)
    }


def test_tiny_fewshot_shape() -> None:
    tiny = load_tiny_fewshot()
    assert len(tiny.examples) == 16
    assert len(tiny.pool("I->R")) == 16
    difficulties = set()
    for ex in tiny.examples:
        assert ex.property.category == "code generation (function implementation)"
        assert ex.property.language == "Python"
        assert len(ex.property.concepts) >= 2 and all(ex.property.concepts)
        difficulties.add(ex.property.difficulty)
        for name in RESPONSE_SECTIONS:
            assert ex.response.count(name) == 1, (ex.number, name)
        sections = _sections(ex.response)
        assert len(PY_BLOCK.findall(sections["[Implementation]"])) == 1, ex.number
        tests = PY_BLOCK.findall(sections["[Tests]"])
        assert len(tests) == 1 and "assert" in tests[0], ex.number
        assert ex.solution is not None and len(PY_BLOCK.findall(ex.solution)) == 1
        assert "import" not in ex.response and "import" not in ex.solution
        assert len(ex.snippet) + len(ex.instruction) + len(ex.response) < 2500, ex.number
    assert difficulties == {"easy", "medium", "hard"}
    # Each stage's prompt can be built from it with the released shot counts.
    assert _headers(concepts_prompt(tiny, SNIPPET, 3).prompt) == list(range(1, 10))
    assert _headers(instruction_prompt(tiny, CONCEPTS, 3).prompt) == list(range(1, 10))
    assert _headers(response_prompt(tiny, INSTRUCTION, 3).prompt) == [1, 2]


@pytest.mark.parametrize("number", range(1, 17))
def test_tiny_fewshot_code_runs(number: int) -> None:
    example = load_tiny_fewshot().examples[number - 1]
    sections = _sections(example.response)
    (implementation,) = PY_BLOCK.findall(sections["[Implementation]"])
    (tests,) = PY_BLOCK.findall(sections["[Tests]"])
    assert example.solution is not None
    (solution,) = PY_BLOCK.findall(example.solution)
    for program in (implementation + "\n" + tests, solution):
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", program],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, (number, result.stderr)
    # The tests must exercise the implementation: without it they fail.
    bare = subprocess.run(
        [sys.executable, "-I", "-S", "-c", tests], capture_output=True, timeout=30
    )
    assert bare.returncode != 0


def test_empty_instruction() -> None:
    text = tiny_fewshot_text()
    broken = re.sub(
        r"(### Example 9\n.*?\[Instruction\]\n).*?(\n\n\[Solution\])", r"\1\2", text, flags=re.S
    )
    with pytest.raises(FewshotFormatError, match=r"example 9: \[Instruction\] is empty"):
        parse_fewshot(broken)


def test_module_has_no_global_random_use() -> None:
    """Only ``random.Random(...)`` instances: a call on the module would be shared state."""
    tree = ast.parse(Path(prompts.__file__).read_text(encoding="utf-8"))
    module_calls = [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "random"
    ]
    assert module_calls and set(module_calls) == {"Random"}
