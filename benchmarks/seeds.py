"""Benchmark the seed-extraction stage against a plain ``ast`` walk on the interpreter's stdlib.

    python benchmarks/seeds.py [--workers 2] [--max-files N] [--with-tests] [--repeat 3]

Ours is ``run_extract_shard`` end to end (listing, reading, decoding, tree-sitter parse and
query, unit files, final JSONL) with ``--workers`` processes. The baseline is what one would
write without tree-sitter: one process, ``ast.parse`` of each decoded file, top-level
``def``/``async def`` whose first statement is a string constant spelled with ``\"\"\"``; files
that do not parse are skipped. Both see the same file list (the ``stdlib`` source's, with its
default excludes unless ``--with-tests``) and the same decoding. Each is timed as the best of
``--repeat`` runs; the rate is functions extracted per second of wall time.
"""

from __future__ import annotations

import argparse
import ast
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from selfalign.records import read_jsonl
from selfalign.seeds.extract import SourceParams, decode_source, run_extract_shard, source_files

# (relpath, line of the def) -> function text
Found = dict[tuple[str, int], str]


@dataclass
class Timing:
    seconds: float
    found: Found
    unparsed: int = 0


def _segment(data: bytes, starts: list[int], node: ast.stmt) -> bytes:
    """The bytes of ``node``: ast column offsets are UTF-8 byte offsets within the line."""
    assert node.end_lineno is not None and node.end_col_offset is not None
    begin = starts[node.lineno - 1] + node.col_offset
    return data[begin : starts[node.end_lineno - 1] + node.end_col_offset]


def ast_baseline(params: SourceParams) -> Timing:
    """Single-process ``ast`` extraction over the same files as ``run_extract_shard``."""
    started = time.perf_counter()
    found: Found = {}
    unparsed = 0
    for source_file in source_files(params):
        text = decode_source(source_file.path.read_bytes())
        if text is None:
            continue
        try:
            module = ast.parse(text)
        except (SyntaxError, ValueError):  # ValueError: null bytes
            unparsed += 1
            continue
        data = text.encode("utf-8")
        # Offsets of line starts, computed once: ast.get_source_segment re-splits the file
        # on every call, which would make the baseline quadratic and unfairly slow.
        starts = [0]
        for line in data.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        for node in module.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = node.body[0]
            if not (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
                and _segment(data, starts, first).startswith(b'"""')
            ):
                continue
            key = (source_file.relpath, node.lineno)
            found[key] = _segment(data, starts, node).decode("utf-8")
    return Timing(time.perf_counter() - started, found, unparsed)


def ours(params: SourceParams, workers: int) -> Timing:
    """``run_extract_shard`` into a fresh directory (no resumable parts to reuse)."""
    with tempfile.TemporaryDirectory(prefix="selfalign-bench-") as tmp:
        output = Path(tmp) / "raw.jsonl"
        started = time.perf_counter()
        run_extract_shard(params, output, workers=workers, show_progress=False)
        seconds = time.perf_counter() - started
        found = {
            (r["origin"]["path"], r["origin"]["lineno"]): r["content"] for r in read_jsonl(output)
        }
    return Timing(seconds, found)


def _only_trailing_comments(shorter: str, longer: str) -> bool:
    """Whether ``longer`` is ``shorter`` followed by nothing but comments and blank lines."""
    if not longer.startswith(shorter):
        return False
    rest = [line.strip() for line in longer[len(shorter) :].splitlines()]
    return all(not line or line.startswith("#") for line in rest)


def best(runs: list[Timing]) -> Timing:
    return min(runs, key=lambda t: t.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for run_extract_shard")
    parser.add_argument("--max-files", type=int, default=None, help="first N files only")
    parser.add_argument(
        "--with-tests",
        action="store_true",
        help="keep the stdlib test suites (incl. lib2to3's Python 2 test data)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="take the best of this many runs")
    args = parser.parse_args(argv)

    exclude = ["site-packages/**"] if args.with_tests else None
    params = SourceParams(kind="stdlib", exclude=exclude, max_files=args.max_files)
    n_files = len(source_files(params))
    print(f"python {platform.python_version()} on {platform.platform()}, {n_files} stdlib files")

    base = best([ast_baseline(params) for _ in range(args.repeat)])
    mine = best([ours(params, args.workers) for _ in range(args.repeat)])

    base_rate = len(base.found) / base.seconds
    our_rate = len(mine.found) / mine.seconds
    only_ours = sorted(set(mine.found) - set(base.found))
    only_base = sorted(set(base.found) - set(mine.found))
    differ = [k for k in set(mine.found) & set(base.found) if mine.found[k] != base.found[k]]
    # tree-sitter's block ends after comments that trail the last statement; ast's ends before.
    comment_only = sum(_only_trailing_comments(base.found[k], mine.found[k]) for k in differ)
    print(
        f"ast baseline (1 process): {len(base.found):6d} functions in {base.seconds:.3f} s"
        f" = {base_rate:8.0f} functions/s ({base.unparsed} files ast cannot parse)"
    )
    print(
        f"run_extract_shard ({args.workers} workers): {len(mine.found):6d} functions in"
        f" {mine.seconds:.3f} s = {our_rate:8.0f} functions/s"
    )
    print(f"ratio ours/baseline (functions/s): {our_rate / base_rate:.2f}")
    print(f"found only by tree-sitter: {len(only_ours)}; only by ast: {len(only_base)}")
    print(
        f"same function, different text: {len(differ)}"
        f" ({comment_only} only by trailing comments that tree-sitter keeps)"
    )
    for label, keys in (("tree-sitter only", only_ours), ("ast only", only_base)):
        for relpath, lineno in keys[:5]:
            print(f"  {label}: {relpath}:{lineno}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
