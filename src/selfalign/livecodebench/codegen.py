"""LiveCodeBench code generation: problems, the prompt, code extraction and sandboxed grading.

Problems are rows of ``livecodebench/code_generation_lite`` (a release is a set of its JSONL files,
cumulative: ``release_v1`` is ``test.jsonl``, ``release_v2`` adds ``test2.jsonl``, ... as its loading
script's ``ALLOWED_FILES`` says), read through ``datasets`` (the JSON builder: the dataset's loading
script is not run) from files downloaded at a pinned dataset commit, or from a local copy in the same
shape. Each row: ``question_id``, ``question_title``, ``question_content``, ``platform``,
``contest_id``, ``contest_date`` (ISO), ``starter_code``, ``difficulty``, ``public_test_cases`` (a
JSON list of ``{input, output, testtype}``), ``private_test_cases`` (the same JSON, or that JSON
pickled, zlib-compressed and base64-encoded), ``metadata`` (JSON, ``func_name`` for LeetCode).
The pickle is read with an unpickler that may build only strings and lists (no class is found,
so no code runs), unlike ``pickle.loads``.

The prompt is LiveCodeBench's for StarCoder2-Instruct (``LMStyle.StarCoderInstruct``, added in
LiveCodeBench 99affe6 in April 2024: its generic system message, then the question with the
starter code or the stdin instruction); the code is the first fenced block of the answer
(``extract_code``; the last with ``code_block: last``, as LiveCodeBench since 264e841). Grading runs :mod:`selfalign.livecodebench.grader` in the sandbox on the public
and private tests.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import pickle
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..records import FirstSeen, RecordError, dataset_file_rows

DATASET = "livecodebench/code_generation_lite"
#: A release's files (the dataset's loading script, ``ALLOWED_FILES``): cumulative.
RELEASE_FILES: Mapping[str, tuple[str, ...]] = {
    f"release_v{n}": tuple(["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, n + 1)]) for n in range(1, 7)
}
#: Seconds per test (LiveCodeBench's ``run_test`` default, as its code-generation metric calls it).
TEST_TIMEOUT_S = 6

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests."
)
WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                "code within delimiters.")
WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, "
    "it reads the inputs, runs the algorithm and writes output to STDOUT."
)
FIELDS = ("question_id", "question_title", "question_content", "platform", "contest_id", "contest_date",
          "starter_code", "difficulty", "public_test_cases", "private_test_cases", "metadata")


@dataclass(frozen=True)
class Test:
    input: str
    output: str
    testtype: str  # "stdin" | "functional"


@dataclass(frozen=True)
class Problem:
    question_id: str
    title: str
    content: str
    platform: str
    contest_date: date
    starter_code: str
    difficulty: str
    public_tests: tuple[Test, ...]
    private_tests: tuple[Test, ...]
    fn_name: str | None

    @property
    def tests(self) -> tuple[Test, ...]:
        return self.public_tests + self.private_tests

    @property
    def key(self) -> str:
        """The item's id, as every scenario's items have one."""
        return self.question_id


class _StringsOnly(pickle.Unpickler):
    """Builds strings, numbers, lists and dicts; refuses every class (so no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is expected")


def decode_tests(text: str) -> list[Any]:
    """A test list as published: JSON, or JSON pickled, zlib-compressed and base64-encoded."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raw = zlib.decompress(base64.b64decode(text.encode("utf-8")))
        inner = _StringsOnly(io.BytesIO(raw)).load()
        value = json.loads(inner) if isinstance(inner, str) else inner
    if not isinstance(value, list):
        raise ValueError(f"expected a list of tests, got {type(value).__name__}")
    return value


def _tests(rows: list[Any], where: tuple[str, int], name: str) -> tuple[Test, ...]:
    tests = []
    for row in rows:
        if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("input", "output", "testtype"))
                and row["testtype"] in ("stdin", "functional")):
            raise RecordError(where[0], where[1], "each test needs string input, output and testtype "
                              "(stdin or functional)", field=name)
        tests.append(Test(row["input"], row["output"], row["testtype"]))
    return tuple(tests)


def problem_from_row(row: Mapping[str, Any], path: str = "<rows>", lineno: int = 0) -> Problem:
    """One published row as a :class:`Problem`; a missing or malformed field is named."""
    for name in FIELDS:
        if not isinstance(row.get(name), str):
            raise RecordError(path, lineno, "missing, or not a string", field=name)
    try:
        contest = datetime.fromisoformat(row["contest_date"]).date()
    except ValueError:
        raise RecordError(path, lineno, "not an ISO date", field="contest_date") from None
    try:
        metadata = json.loads(row["metadata"])
    except json.JSONDecodeError:
        raise RecordError(path, lineno, "not JSON", field="metadata") from None
    tests = {}
    for name in ("public_test_cases", "private_test_cases"):
        try:
            decoded = decode_tests(row[name])
        except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as exc:
            raise RecordError(path, lineno, f"not a test list: {exc}", field=name) from None
        tests[name] = _tests(decoded, (path, lineno), name)
    fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    return Problem(row["question_id"], row["question_title"], row["question_content"], row["platform"], contest,
                   row["starter_code"], row["difficulty"], tests["public_test_cases"], tests["private_test_cases"],
                   fn_name if isinstance(fn_name, str) else None)


def in_window(problems: Iterable[Problem], start: date | None = None, end: date | None = None) -> list[Problem]:
    """The problems whose contest date is in ``[start, end]`` (either open), in their order."""
    return [p for p in problems if (start is None or start <= p.contest_date) and (end is None or p.contest_date <= end)]


def select(problems: Iterable[Problem], start: str | None = None, end: str | None = None,
           limit: int | None = None) -> tuple[list[Problem], str]:
    """The problems of the contest-date window (``YYYY-MM-DD``, inclusive), the first ``limit`` of
    them; and the window in words, for tables."""
    chosen = in_window(problems, date.fromisoformat(start) if start else None, date.fromisoformat(end) if end else None)
    if limit is not None:
        chosen = chosen[:limit]
    window = f"contest dates {start or 'any'} to {end or 'any'}" + (f", the first {limit}" if limit else "")
    return chosen, f"{len(chosen)} problems, {window}"


def load_problems(files: Sequence[str | Path]) -> list[Problem]:
    """Every problem of the given JSONL files (a release's, downloaded or local), in file order,
    through ``datasets``' JSON builder; a duplicate ``question_id`` is an error."""
    from datasets import Features, Value

    # every field a string, as the dataset's loading script declares them (the JSON builder would
    # otherwise read contest_date as a timestamp)
    features = Features({name: Value("string") for name in FIELDS})
    problems: list[Problem] = []
    seen = FirstSeen()
    for path, lineno, row in dataset_file_rows(files, features):
        problem = problem_from_row(row, path, lineno)
        seen.add(problem.question_id, path, lineno, "question_id", f"question_id {problem.question_id!r}")
        problems.append(problem)
    return problems


def hub_files(release: str, revision: str, cache_dir: str | None = None) -> list[Path]:
    """A release's files from the Hub at a dataset commit (``huggingface_hub``, cached)."""
    from huggingface_hub import hf_hub_download

    if release not in RELEASE_FILES:
        raise ValueError(f"unknown LiveCodeBench release {release!r}: expected one of {sorted(RELEASE_FILES)}")
    return [Path(hf_hub_download(DATASET, name, repo_type="dataset", revision=revision, cache_dir=cache_dir))
            for name in RELEASE_FILES[release]]


def hub_data_files(dataset: str, revision: str, cache_dir: str | None = None) -> list[Path]:
    """A parquet dataset's test-split files from the Hub at a dataset commit (``test_generation``,
    ``execution-v2``: ``data/test-*.parquet``), in name order."""
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(dataset, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                                  allow_patterns=["data/test-*.parquet"]))
    files = sorted(root.glob("data/test-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{dataset}@{revision} has no data/test-*.parquet")
    return files


def build_prompt(problem: Problem) -> str:
    """LiveCodeBench's code-generation prompt for StarCoder2-Instruct (``StarCoderInstruct``)."""
    prompt = f"{SYSTEM_MESSAGE}\n### Question:\n{problem.content}\n\n"
    if problem.starter_code:
        prompt += f"### Format: {WITH_STARTER}\n```python\n{problem.starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


#: Which fenced block of an answer is its code: ``first`` as LiveCodeBench took it until its 264e841
#: (December 2024), so when the model card's figures were made; ``last`` since.
CODE_BLOCKS = ("first", "last")


def extract_code(answer: str, block: str = "first") -> str:
    """The code of an answer (LiveCodeBench's ``extract_code`` for chat styles): the lines between
    the first two lines that hold a fence (``block="last"``: the last two); no block, no code."""
    if block not in CODE_BLOCKS:
        raise ValueError(f"unknown code block choice {block!r}: expected one of {CODE_BLOCKS}")
    lines = answer.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    start, end = (fences[0], fences[1]) if block == "first" else (fences[-2], fences[-1])
    return "\n".join(lines[start + 1 : end])


def grading_program(problem: Problem, code: str, timeout_s: int = TEST_TIMEOUT_S) -> str:
    """The program the sandbox runs: the grader's source, then a call with the sample and every
    test (public, then private). It runs to its end only when every test passes."""
    payload = json.dumps({"code": code, "tests": [[t.input, t.output] for t in problem.tests],
                          "fn_name": problem.fn_name, "timeout": timeout_s})
    return f"{_grader_source()}\n\nmain({payload!r})\n"


@functools.cache
def _grader_source() -> str:
    """The grader's source, read once (every sample's program starts with it)."""
    return Path(__file__).with_name("grader.py").read_text(encoding="utf-8")


def program_timeout(problem: Problem, timeout_s: int = TEST_TIMEOUT_S) -> float:
    """The whole program's wall-clock limit: LiveCodeBench's global one, (timeout + 1) per test + 5."""
    return float((timeout_s + 1) * len(problem.tests) + 5)
