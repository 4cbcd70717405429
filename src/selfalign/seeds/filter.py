"""Heuristic seed filter and benchmark decontamination (upstream ``filter_dataset.py`` pre-filter).

Each function's code goes through upstream's checks in upstream's order, and the first one that
fires names the drop reason:

1. ``bad_word`` / ``bad_import``: ``code.lower()`` contains one of ``todo``, ``fixme``, ``bug``,
   or ``import X`` / ``from X`` for X in argparse, os, subprocess, sys, setuptools, distutils,
   matplotlib, seaborn. Upstream matches plain substrings, so ``debug`` counts as ``bug`` and
   ``import osmnx`` as ``import os``; ``match: substring`` (the default) reproduces that, and
   ``match: token`` is an opt-in that only matches whole words and whole module names.
2. ``contaminated:<key>``: the code contains (case-sensitively) a HumanEval or MBPP docstring or
   canonical solution, see :mod:`selfalign.benchdata`.
3. ``too_long``: more than ``max_lines`` lines (``len(code.split("\\n"))``, as upstream).
4. ``no_argument``: some line starts with ``def `` and contains ``():``.

Upstream then re-checked that the function returns a value and opens with a docstring; the
extraction and quality stages already guarantee both, so they are not repeated here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..benchdata import BENCHMARK_KEYS, ContaminationIndex, DecontamParams, load_decontamination
from ..config import check_params
from ..records import atomic_writer, count_lines, dumps, iter_jsonl
from ..runtime import StageStats, progress, shard_bounds

UPSTREAM_BAD_WORDS: tuple[str, ...] = ("todo", "fixme", "bug")
UPSTREAM_BAD_IMPORTS: tuple[str, ...] = (
    "argparse",
    "os",
    "subprocess",
    "sys",
    "setuptools",
    "distutils",
    "matplotlib",
    "seaborn",
)

@dataclass
class FilterParams:
    """The filter's knobs; the defaults are upstream's values.

    ``match``: ``substring`` (upstream: ``bad_words`` and ``import X``/``from X`` anywhere in
    the lower-cased code) or ``token``: a bad word must not touch a letter or digit on either
    side (``_`` separates, so ``known_bug`` still hits but ``debug`` does not), and an import
    must name the module exactly (``import os.path`` hits, ``import osmnx`` does not). Token
    mode only ever drops a subset of what substring mode drops.
    """

    bad_words: list[str] = field(default_factory=lambda: list(UPSTREAM_BAD_WORDS))
    bad_imports: list[str] = field(default_factory=lambda: list(UPSTREAM_BAD_IMPORTS))
    match: str = "substring"
    max_lines: int = 150
    drop_no_argument: bool = True
    decontamination: DecontamParams = field(default_factory=DecontamParams)

    def __post_init__(self) -> None:
        # each value's type, bounds and choices: the config schema's seeds.filter (from_dict)
        if not isinstance(self.decontamination, DecontamParams):
            raise ValueError("filter.decontamination must be a DecontamParams (use from_dict)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FilterParams:
        check_params(cls, data, "seeds.filter")
        values = dict(data)
        nested = values.get("decontamination")
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise ValueError("filter.decontamination must be a mapping")
            values["decontamination"] = DecontamParams.from_dict(dict(nested))
        return cls(**values)


# ------------------------------------------------------------------------------------ filter


def _token_word_regex(words: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w.lower()) for w in words)
    # [^\W_] is "a letter or digit": underscores separate words (snake_case), letters do not.
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])")


def _token_import_regex(modules: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(m.lower()) for m in modules)
    # The module name must end there (a dot starts a submodule of it, which still counts).
    return re.compile(rf"(?<![\w.])(?:import|from) (?:{alternatives})(?!\w)")


class SeedFilter:
    """Upstream's pre-filter over one function's code; :meth:`check` gives the drop reason."""

    def __init__(self, params: FilterParams, strings: Mapping[str, Sequence[str]]):
        self.params = params
        self.bad_words = [w.lower() for w in params.bad_words]
        modules = [module.lower() for module in params.bad_imports]
        # Upstream's order: every "import X", then every "from X" (it only matters for speed).
        self.bad_imports = [f"{kind} {module}" for kind in ("import", "from") for module in modules]
        self.word_regex = _token_word_regex(params.bad_words) if params.bad_words else None
        self.import_regex = _token_import_regex(params.bad_imports) if params.bad_imports else None
        self.contamination = ContaminationIndex(strings)

    def _has_bad_word(self, lower: str) -> bool:
        if self.params.match == "substring":
            return any(word in lower for word in self.bad_words)
        return self.word_regex is not None and self.word_regex.search(lower) is not None

    def _has_bad_import(self, lower: str) -> bool:
        if self.params.match == "substring":
            return any(text in lower for text in self.bad_imports)
        return self.import_regex is not None and self.import_regex.search(lower) is not None

    def detail(self, code: str, reason: str) -> dict[str, Any]:
        """What made :meth:`check` give ``reason`` for ``code``: the drop record's detail (run
        only on drops, so the match is found again rather than carried)."""
        lower = code.lower()
        if reason == "bad_word":
            if self.params.match == "substring":
                return {"word": next(w for w in self.bad_words if w in lower)}
            found = self.word_regex.search(lower) if self.word_regex else None
            return {"word": found.group(0) if found else None}
        if reason == "bad_import":
            if self.params.match == "substring":
                return {"import": next(t for t in self.bad_imports if t in lower)}
            found = self.import_regex.search(lower) if self.import_regex else None
            return {"import": found.group(0) if found else None}
        if reason.startswith("contaminated:"):
            key = reason.split(":", 1)[1]
            text = next((t for t in self.contamination.strings[key] if t in code), None)
            return {"benchmark": key, "matched": text}
        lines = code.split("\n")
        if reason == "too_long":
            return {"lines": len(lines), "max_lines": self.params.max_lines}
        if reason == "no_argument":
            return {"line": next(line for line in lines if line.startswith("def ") and "():" in line)}
        return {}

    def check(self, code: str) -> str | None:
        """The reason to drop ``code``, or ``None`` to keep it (checks in upstream's order)."""
        lower = code.lower()
        if self._has_bad_word(lower):
            return "bad_word"
        if self._has_bad_import(lower):
            return "bad_import"
        key = self.contamination.first_key(code)
        if key is not None:
            return f"contaminated:{key}"
        lines = code.split("\n")
        if len(lines) > self.params.max_lines:
            return "too_long"
        if self.params.drop_no_argument and any(
            line.startswith("def ") and "():" in line for line in lines
        ):
            return "no_argument"
        return None


def run_filter(
    input_path: str | Path,
    output_path: str | Path,
    params: FilterParams,
    shard: int = 0,
    num_shards: int = 1,
    show_progress: bool = True,
) -> StageStats:
    """Filter shard ``shard`` of ``num_shards`` contiguous slices of ``input_path``.

    Survivors are written unchanged and in input order, atomically, so concatenating the shard
    outputs in shard order equals an unsharded run. Every record of the slice is either written
    or counted under its drop reason. Lines before the slice are still read and validated by
    :func:`iter_jsonl` (a malformed input fails every shard, not just the one that owns it);
    reading stops at the end of the slice.
    """
    input_path = Path(input_path)
    start, stop = shard_bounds(count_lines(input_path), shard, num_shards)
    benchmarks = load_decontamination(params.decontamination)
    seed_filter = SeedFilter(params, benchmarks.strings)

    stats = StageStats()
    removed = dict.fromkeys(BENCHMARK_KEYS, 0)
    records = iter_jsonl(input_path, {"id": str, "content": str}, unique="id")
    bar = progress(
        records, desc=f"filter {shard + 1}/{num_shards}", total=stop, enabled=show_progress
    )
    with atomic_writer(output_path) as out:
        for index, (_, record) in enumerate(bar):
            if index < start:
                continue
            if index >= stop:
                break
            stats.n_in += 1
            reason = seed_filter.check(record["content"])
            if reason is None:
                out.write(dumps(record) + "\n")
                stats.n_out += 1
                continue
            stats.drop(reason, id=record["id"], detail=seed_filter.detail(record["content"], reason))
            if reason.startswith("contaminated:"):
                key = reason.split(":", 1)[1]
                removed[key] = removed.get(key, 0) + 1
    stats.check_balance()
    stats.extra = {"benchmarks": benchmarks.describe(), "removed_per_benchmark": removed}
    return stats
