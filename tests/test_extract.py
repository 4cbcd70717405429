"""Seed extraction: upstream's tree-sitter query on real stdlib files and planted edge cases,
then the stage around it (decoding, sharding, workers, resume, merge, the Hugging Face path)."""

from __future__ import annotations

import ast
import hashlib
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

from selfalign.records import RecordError, read_jsonl, write_jsonl
from selfalign.runtime.resume import ResumableOutput
from selfalign.seeds import extract
from selfalign.seeds.extract import (
    SourceParams,
    decode_source,
    extract_functions,
    glob_regex,
    merge_shards,
    run_extract_shard,
    source_files,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _ast_expected(source: str) -> list[tuple[int, str]]:
    """Independent oracle: top-level defs whose first statement is a non-empty \"\"\" string."""
    expected = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = node.body[0]
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
            continue
        segment = ast.get_source_segment(source, first) or ""
        if isinstance(first.value.value, str) and segment.startswith('"""') and first.value.value:
            text = ast.get_source_segment(source, node)
            assert text is not None
            expected.append((node.lineno, text))
    return expected


def _functions(code: str) -> list[tuple[int, str]]:
    return extract_functions(textwrap.dedent(code).encode("utf-8"))


def _stdlib(**kwargs: Any) -> SourceParams:
    return SourceParams(kind="stdlib", **kwargs)


# ----------------------------------------------------------------------------- the query


@pytest.mark.parametrize("module", ["textwrap", "ftplib", "ast", "datetime", "typing"])
def test_matches_ast_oracle_on_real_stdlib_files(module: str) -> None:
    """These files hold \"\"\", ''', r\"\"\" and "..." docstrings, methods and decorated defs."""
    source = (STDLIB / f"{module}.py").read_text(encoding="utf-8")
    got = extract_functions(source.encode("utf-8"))
    assert got == _ast_expected(source)
    # ftplib's top-level functions all use ''' docstrings: none of them may match.
    assert bool(got) == (module != "ftplib")


def test_keeps_real_function_text_exactly() -> None:
    source = (STDLIB / "textwrap.py").read_text(encoding="utf-8")
    by_name = {text.split("(")[0]: (n, text) for n, text in extract_functions(source.encode())}
    lineno, text = by_name["def dedent"]
    assert text.startswith('def dedent(text):\n    """Remove any common leading whitespace')
    assert source.splitlines()[lineno - 1] == "def dedent(text):"
    assert text.endswith("return text")


def test_real_single_quote_and_raw_docstrings_are_not_matched() -> None:
    for module, opener in [("ftplib", "'''"), ("ast", 'r"""'), ("datetime", '"')]:
        source = (STDLIB / f"{module}.py").read_text(encoding="utf-8")
        found = {lineno for lineno, _ in extract_functions(source.encode())}
        planted = [
            node.lineno
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef)
            and isinstance(node.body[0], ast.Expr)
            and (ast.get_source_segment(source, node.body[0]) or "").startswith(opener)
            and not (ast.get_source_segment(source, node.body[0]) or "").startswith('"""')
        ]
        assert planted, f"{module}.py no longer has a {opener} docstring"
        assert not found & set(planted)


def test_dropped_cases() -> None:
    code = '''
    class K:
        def method(self):
            """Methods are not top-level."""

    def outer():
        x = 1

        def nested():
            """Nested defs are not top-level."""

        return nested

    def single():
        \'\'\'Triple single quotes.\'\'\'

    def raw():
        r"""Raw docstring."""

    def fstring():
        f"""F-string docstring."""

    def short():
        "Plain double quotes."

    def none():
        return 1

    def late():
        x = 1
        """Not the first statement."""

    def empty():
        """"""
        return 2

    if True:
        def guarded():
            """Inside an if: indented, so not top-level."""
    '''
    assert _functions(code) == []


def test_kept_variants() -> None:
    code = '''
    def one_line(): """On the def line."""

    def commented():
        # a comment does not count as a statement
        """Docstring after a comment."""
        return 1

    def multi(a,
              b):
        """Multi-line signature.

        Body text with "quotes" and \\n escapes.
        """
        return a + b
    '''
    got = _functions(code)
    assert [lineno for lineno, _ in got] == [2, 4, 9]
    assert got[0][1] == 'def one_line(): """On the def line."""'
    assert got[2][1].startswith("def multi(a,\n          b):")
    assert got[2][1].endswith("return a + b")


def test_decorated_function_text_starts_at_def() -> None:
    code = '''
    import functools

    @functools.lru_cache(maxsize=None)
    @staticmethod
    def cached(x):
        """Decorators are not part of the text."""
        return x
    '''
    assert _functions(code) == [
        (6, 'def cached(x):\n    """Decorators are not part of the text."""\n    return x')
    ]


def test_async_def_is_a_function_definition_in_tree_sitter() -> None:
    """tree-sitter-python's function_definition includes ``async``: async defs are kept, whole."""
    code = '''
    async def fetch(url):
        """Fetch a URL."""
        return await get(url)
    '''
    assert _functions(code) == [
        (2, 'async def fetch(url):\n    """Fetch a URL."""\n    return await get(url)')
    ]


def test_python2_file_still_yields_its_functions() -> None:
    code = '''
    import sys

    def broken():
        try:
            pass
        except ValueError, e:
            print "failed", e

    def kept(x):
        """A valid def in a Python 2 file."""
        return x <> 1

    print >>sys.stderr, "module level"
    exec "x = 1"

    def also_kept():
        """After an exec statement."""
        return `also_kept`
    '''
    source = textwrap.dedent(code)
    with pytest.raises(SyntaxError):
        ast.parse(source)
    got = _functions(code)
    assert [text.split("(")[0] for _, text in got] == ["def kept", "def also_kept"]
    assert got[0][0] == 10


def test_garbage_does_not_crash() -> None:
    assert extract_functions(b"") == []
    assert extract_functions(b"\x00\x01))) def def : ::: '''\n\t\tdef (\n") == []
    noise = bytes(range(256)).decode("latin-1") * 4
    assert extract_functions(noise.encode("utf-8")) == []
    # An unterminated docstring swallows the rest of the file: no match, no crash.
    assert _functions('def f():\n    """never closed\n') == []


def test_decode_source() -> None:
    assert decode_source("é = 1\n".encode()) == "é = 1\n"
    assert decode_source(b"\xef\xbb\xbfx = 1\n") == "x = 1\n"  # BOM stripped
    assert decode_source("# -*- coding: latin-1 -*-\nx = 'é'\n".encode("latin-1")) == (
        "# -*- coding: latin-1 -*-\nx = 'é'\n"
    )
    assert decode_source(b"x = '\xe9'\n") is None  # not UTF-8, no cookie
    assert decode_source(b"# coding: no-such-codec\nx = 1\n") is None
    assert decode_source(b"# coding: ascii\nx = '\xc3\xa9'\n") is None  # lying cookie


# ------------------------------------------------------------------------------- params


def test_source_params_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="bogus, colour"):
        SourceParams.from_dict({"kind": "stdlib", "colour": 1, "bogus": 2})
    with pytest.raises(ValueError, match="kind"):
        SourceParams.from_dict({"kind": "github"})
    with pytest.raises(ValueError, match="path"):
        SourceParams.from_dict({"kind": "local"})
    params = SourceParams.from_dict({"kind": "huggingface", "path": "x/y", "origin_fields": ["a"]})
    assert params.origin_fields == ["a"] and params.streaming and params.id_field == "hexsha"


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        (
            "site-packages/**",
            ["site-packages/a.py", "site-packages/x/y.py"],
            ["a/site-packages/b.py"],
        ),
        ("**/tests/**", ["tests/a.py", "a/tests/b/c.py"], ["a/tests.py", "xtests/a.py"]),
        ("**/test_*.py", ["test_a.py", "a/b/test_c.py"], ["a/test_dir/x.py", "atest_b.py"]),
        ("*.py", ["a.py"], ["a/b.py"]),
        ("a/[!b]?.py", ["a/cd.py"], ["a/bd.py", "a/c/.py"]),
    ],
)
def test_glob_regex(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = glob_regex(pattern)
    assert all(regex.fullmatch(p) for p in matches)
    assert not any(regex.fullmatch(p) for p in misses)


def test_stdlib_listing_excludes_tests_and_site_packages() -> None:
    files = source_files(_stdlib())
    relpaths = [f.relpath for f in files]
    assert "textwrap.py" in relpaths and "json/__init__.py" in relpaths
    assert not any(p.startswith(("site-packages/", "test/")) or "/tests/" in p for p in relpaths)
    assert not any(p.split("/")[-1].startswith("test_") for p in relpaths)
    assert [f.key + "#" for f in files] == sorted(f.key + "#" for f in files)
    assert [f.relpath for f in source_files(_stdlib(max_files=7))] == relpaths[:7]


# --------------------------------------------------------------------------------- stage


def _plant(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "tests").mkdir()
    (root / "a.py").write_text('def a():\n    """A."""\n    return 1\n', encoding="utf-8")
    (root / "pkg" / "latin.py").write_bytes(
        '# -*- coding: latin-1 -*-\ndef caf():\n    """Café."""\n    return "é"\n'.encode("latin-1")
    )
    (root / "pkg" / "bad.py").write_bytes(b'def bad():\n    """Caf\xe9."""\n    return 1\n')
    (root / "pkg" / "surrogate.py").write_bytes(
        b'# coding: raw_unicode_escape\ndef s():\n    """\\ud800"""\n'
    )
    (root / "pkg" / "py2.py").write_text(
        'print "hi"\n\ndef two():\n    """Py2."""\n    return `two`\n', encoding="utf-8"
    )
    (root / "pkg" / "junk.py").write_bytes(b"\x00\x01 ))) ::: def")
    (root / "pkg" / "tests" / "t.py").write_text('def t():\n    """T."""\n', encoding="utf-8")
    (root / "notes.txt").write_text('def n():\n    """N."""\n', encoding="utf-8")
    return root


def test_local_source_decodes_counts_and_records(tmp_path: Path) -> None:
    root = _plant(tmp_path / "src")
    params = SourceParams(kind="local", path=str(root), exclude=["**/tests/**"], files_per_unit=2)
    stats = run_extract_shard(params, tmp_path / "out.jsonl", show_progress=False)
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in records] == [
        "a.py#L000001",
        "pkg/latin.py#L000002",
        "pkg/py2.py#L000003",
    ]
    assert records[1]["content"] == 'def caf():\n    """Café."""\n    return "é"'
    assert records[1]["origin"] == {"source": "local", "path": "pkg/latin.py", "lineno": 2}
    assert stats.n_in == 6 and stats.n_out == 3
    assert stats.drops == {"undecodable": 1, "unencodable": 1}
    assert stats.extra == {"files_with_functions": 3, "functions": 3}
    assert not (tmp_path / "out.jsonl.parts").exists()
    # each skipped file is named, in file order, with why
    assert [(d["id"], d["reason"]) for d in read_jsonl(tmp_path / "out.dropped.jsonl")] == [
        ("pkg/bad.py", "undecodable"), ("pkg/surrogate.py", "unencodable")
    ]


def test_skipped_files_reach_the_raw_drop_file_through_the_commands(tmp_path: Path) -> None:
    import json

    from selfalign.cli import main

    root = _plant(tmp_path / "src")
    params = json.dumps({"kind": "local", "path": str(root), "exclude": ["**/tests/**"], "files_per_unit": 2})
    for shard in (0, 1):
        main(["seeds", "extract", "--params", params, "--shard", str(shard), "--num-shards", "2",
              "--workers", "1", "--no-progress", "--out", str(tmp_path / f"shard-{shard}.jsonl")])
    shard_drops = [read_jsonl(tmp_path / f"shard-{s}.dropped.jsonl") for s in (0, 1)]
    assert sorted(d["reason"] for part in shard_drops for d in part) == ["undecodable", "unencodable"]
    main(["seeds", "merge", "--out", str(tmp_path / "raw.jsonl"), str(tmp_path / "shard-0.jsonl"),
          str(tmp_path / "shard-1.jsonl")])
    raw_drops = read_jsonl(tmp_path / "raw.dropped.jsonl")
    assert raw_drops == [{**d, "reason": "file:" + d["reason"]} for part in shard_drops for d in part]
    assert all(d["detail"]["why"] for d in raw_drops)
    meta = json.loads((tmp_path / "raw.jsonl.meta.json").read_text())
    assert meta["stats"]["files_skipped"] == {"undecodable": 1, "unencodable": 1}
    assert meta["dropped"]["records"] == 2


def _merged(
    tmp_path: Path, name: str, params: SourceParams, num_shards: int, workers: int
) -> bytes:
    shards = [tmp_path / name / f"shard-{i}.jsonl" for i in range(num_shards)]
    n_in = 0
    for i, shard in enumerate(shards):
        stats = run_extract_shard(
            params, shard, i, num_shards, workers=workers, show_progress=False
        )
        n_in += stats.n_in
        ids = [r["id"] for r in read_jsonl(shard)]
        assert ids == sorted(ids)
    merged = tmp_path / name / "raw.jsonl"
    merge_stats = merge_shards(shards, merged)
    assert merge_stats.n_in == sum(len(read_jsonl(s)) for s in shards)
    if params.max_files is not None:
        assert n_in == params.max_files
    return merged.read_bytes()


def test_deterministic_across_workers_and_shards(tmp_path: Path) -> None:
    params = _stdlib(max_files=150, files_per_unit=16)
    one = _merged(tmp_path, "one", params, num_shards=1, workers=1)
    many = _merged(tmp_path, "many", params, num_shards=3, workers=2)
    assert one == many
    records = read_jsonl(tmp_path / "one" / "raw.jsonl")
    assert len(records) > 50
    assert all(r["id"].startswith("stdlib/") and r["origin"]["source"] == "stdlib" for r in records)


class Killed(Exception):
    """Stands in for the job being killed between two units."""


def _fail_after(monkeypatch: pytest.MonkeyPatch, n_units: int) -> list[int]:
    """Make ``write_unit`` die after ``n_units`` units, as a killed job would."""
    original = ResumableOutput.write_unit
    written: list[int] = []

    def write_unit(self: ResumableOutput, unit: int, result: Any) -> None:
        if len(written) == n_units:
            raise Killed(f"after {n_units} units")
        original(self, unit, result)
        written.append(unit)

    monkeypatch.setattr(ResumableOutput, "write_unit", write_unit)
    return written


def test_resume_after_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = _stdlib(max_files=60, files_per_unit=10)
    clean = tmp_path / "clean.jsonl"
    clean_stats = run_extract_shard(params, clean, show_progress=False)

    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        written = _fail_after(patch, 2)
        with pytest.raises(Killed):
            run_extract_shard(params, out, show_progress=False)
    assert written == [0, 1] and not out.exists()
    parts = ResumableOutput(out, extract._Extraction(params, 0, 1, workers=1).plan().fingerprint())
    assert parts.done_units() == {0, 1}

    processed: list[Any] = []
    real_process = extract._process

    def counting(task: Any) -> Any:
        processed.append(task)
        return real_process(task)

    monkeypatch.setattr(extract, "_process", counting)
    stats = run_extract_shard(params, out, show_progress=False)
    assert len(processed) == 40  # units 0 and 1 were not redone
    assert out.read_bytes() == clean.read_bytes()
    assert stats.to_json() == clean_stats.to_json()


def test_changed_params_discard_stale_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        _fail_after(patch, 1)
        with pytest.raises(Killed):
            run_extract_shard(_stdlib(max_files=30, files_per_unit=10), out, show_progress=False)
    run_extract_shard(_stdlib(max_files=20, files_per_unit=10), out, show_progress=False)
    clean = tmp_path / "clean.jsonl"
    run_extract_shard(_stdlib(max_files=20, files_per_unit=10), clean, show_progress=False)
    assert out.read_bytes() == clean.read_bytes()


# ----------------------------------------------------------------------------------- merge


def _rec(record_id: str, content: str) -> dict[str, Any]:
    return {"id": record_id, "content": content, "origin": {}}


def test_merge_drops_exact_duplicates_keeping_smallest_id(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "0.jsonl", [_rec("a", "x"), _rec("c", "y")])
    write_jsonl(tmp_path / "1.jsonl", [_rec("b", "y"), _rec("d", "x"), _rec("e", "z")])
    stats = merge_shards([tmp_path / "0.jsonl", tmp_path / "1.jsonl"], tmp_path / "m.jsonl")
    assert [r["id"] for r in read_jsonl(tmp_path / "m.jsonl")] == ["a", "b", "e"]
    assert (stats.n_in, stats.n_out, dict(stats.drops)) == (5, 3, {"exact_duplicate": 2})


def test_merge_rejects_an_id_in_two_shards(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "0.jsonl", [_rec("a", "x"), _rec("b", "y")])
    write_jsonl(tmp_path / "1.jsonl", [_rec("b", "z")])
    with pytest.raises(RecordError, match=r"1\.jsonl:1: field 'id': duplicate id 'b'") as info:
        merge_shards([tmp_path / "0.jsonl", tmp_path / "1.jsonl"], tmp_path / "m.jsonl")
    assert "0.jsonl:2" in str(info.value)
    assert not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize(
    ("ids", "problem"), [(["b", "a"], "not sorted"), (["a", "a"], "duplicate")]
)
def test_merge_rejects_a_bad_shard(tmp_path: Path, ids: list[str], problem: str) -> None:
    write_jsonl(tmp_path / "0.jsonl", [_rec("0", "w")])
    write_jsonl(tmp_path / "1.jsonl", [_rec(i, i + "!") for i in ids])
    with pytest.raises(RecordError, match=rf"1\.jsonl:2: field 'id': {problem}"):
        merge_shards([tmp_path / "0.jsonl", tmp_path / "1.jsonl"], tmp_path / "m.jsonl")


# ---------------------------------------------------------------------------- huggingface


def _blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def parquet_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """Two parquet files of 40 stdlib files each (the-stack's columns), and their relpaths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("parquet")
    files = source_files(_stdlib(max_files=80))
    paths = []
    for part in range(2):
        chunk = files[part * 40 : (part + 1) * 40][::-1]  # rows not in id order
        data = [f.path.read_bytes() for f in chunk]
        table = pa.table(
            {
                "hexsha": [_blob_sha(d) for d in data],
                "content": [decode_source(d) for d in data],
                "max_stars_repo_path": [f.relpath for f in chunk],
                "max_stars_repo_licenses": [["PSF-2.0"] for _ in chunk],
            }
        )
        path = root / f"part-{part}.parquet"
        pq.write_table(table, path, row_group_size=16)
        paths.append(str(path))
    return paths, [f.relpath for f in files]


def _hf(files: list[str], **kwargs: Any) -> SourceParams:
    fields = ["max_stars_repo_path", "max_stars_repo_licenses"]
    return SourceParams(
        kind="huggingface", path="parquet", data_files=files, origin_fields=fields, **kwargs
    )


def test_huggingface_parquet_matches_the_file_source(
    tmp_path: Path, parquet_files: tuple[list[str], list[str]]
) -> None:
    files, _ = parquet_files
    params = _hf(files, files_per_unit=16)
    one = _merged(tmp_path, "one", params, num_shards=1, workers=1)
    two = _merged(tmp_path, "two", params, num_shards=2, workers=2)
    assert one == two
    records = read_jsonl(tmp_path / "one" / "raw.jsonl")
    for record in records:
        origin = record["origin"]
        blob = (STDLIB / origin["max_stars_repo_path"]).read_bytes()
        assert record["id"] == f"{_blob_sha(blob)}#L{origin['lineno']:06d}"
        assert origin["source"] == "huggingface"
        assert origin["max_stars_repo_licenses"] == ["PSF-2.0"]

    local = tmp_path / "local.jsonl"
    run_extract_shard(_stdlib(max_files=80), local, show_progress=False)
    from_parquet = sorted(r["content"] for r in read_jsonl(tmp_path / "one" / "shard-0.jsonl"))
    assert from_parquet == sorted(r["content"] for r in read_jsonl(local))


def test_huggingface_max_files_takes_the_first_rows(
    tmp_path: Path, parquet_files: tuple[list[str], list[str]]
) -> None:
    files, _ = parquet_files
    params = _hf(files, max_files=50, files_per_unit=8)
    assert _merged(tmp_path, "one", params, 1, 1) == _merged(tmp_path, "three", params, 3, 1)


def test_huggingface_resume_after_kill(
    tmp_path: Path, parquet_files: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    files, _ = parquet_files
    params = _hf(files, files_per_unit=16)
    clean = tmp_path / "clean.jsonl"
    clean_stats = run_extract_shard(params, clean, 1, 2, show_progress=False)
    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        _fail_after(patch, 2)
        with pytest.raises(Killed):
            run_extract_shard(params, out, 1, 2, show_progress=False)
    stats = run_extract_shard(params, out, 1, 2, show_progress=False)
    assert out.read_bytes() == clean.read_bytes()
    assert (tmp_path / "out.dropped.jsonl").read_bytes() == (tmp_path / "clean.dropped.jsonl").read_bytes()
    assert stats.to_json() == clean_stats.to_json() and stats.n_in == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clean.dropped.jsonl", "clean.jsonl", "out.dropped.jsonl", "out.jsonl"]


def test_huggingface_bad_rows_are_errors(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    table = pa.table({"hexsha": ["a", "b", "c"], "content": ["x = 1\n", "y = 2\n", None]})
    pq.write_table(table, path)
    params = SourceParams(kind="huggingface", path="parquet", data_files=[str(path)])
    with pytest.raises(ValueError, match=r"row 2: field 'content': expected a string, got None"):
        run_extract_shard(params, tmp_path / "out.jsonl", show_progress=False)
    params.content_field = "text"
    with pytest.raises(ValueError, match=r"row 0: field 'text' is missing"):
        run_extract_shard(params, tmp_path / "out.jsonl", show_progress=False)
    params.content_field = "content"
    with pytest.raises(ValueError, match="cannot be cut into 2 extraction shards"):
        run_extract_shard(params, tmp_path / "out.jsonl", 0, 2, show_progress=False)
