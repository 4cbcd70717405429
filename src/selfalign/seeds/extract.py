"""Seed extraction: Python source files -> top-level functions whose body opens with a docstring.

This reproduces bigcode's ``seed_gathering/generate_from_the_stack.py``: each file is parsed
with tree-sitter-python and :data:`QUERY` keeps every ``function_definition`` whose first body
statement is a string literal opened and closed by exactly ``\"\"\"`` with non-empty content; of
those, only definitions starting at column 0 (top-level) are kept, and the function text is the
``function_definition`` node's bytes, so decorators (which a ``decorated_definition`` wraps
around it) are not part of it. tree-sitter is used rather than :mod:`ast` because its error
recovery still finds the functions of files that do not fully parse (The Stack holds Python 2
code), and upstream's seed set includes such functions.

A shard of the source becomes a JSONL file sorted by ``id``; :func:`merge_shards` merges the
shards by id and drops exact duplicate function texts (upstream collected a set).

Determinism: files are listed in sorted order and cut into contiguous shards and units, a
worker pool returns results in input order, and each unit is sorted by id, so the bytes of the
output depend neither on the worker count nor on the number of shards (after the merge).
"""

from __future__ import annotations

import hashlib
import heapq
import io
import itertools
import json
import logging
import multiprocessing
import os
import re
import sysconfig
import tokenize
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from operator import itemgetter
from pathlib import Path
from typing import Any

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Query, QueryCursor

from ..chain import FILE_DROP_PREFIX, dropped_path
from ..config import check_params
from ..records import (
    JsonObj,
    RecordError,
    atomic_writer,
    dumps,
    iter_jsonl,
    write_jsonl,
)
from ..runtime import (
    DropSink,
    StageStats,
    UnitPlan,
    UnitRun,
    drive,
    shard_bounds,
    streamed_drops,
)
from ..runtime.resume import UnitResult

log = logging.getLogger(__name__)

#: Upstream's query (only its line breaks differ). ``#eq?`` is evaluated by py-tree-sitter's
#: ``QueryCursor``, so ``'''``, ``r"""`` or ``"`` docstrings do not match; a
#: ``(string_content)`` must be present, so an empty ``""""""`` does not match either.
QUERY = r"""
((function_definition
   name: (identifier)
   body: (block .
     (expression_statement
       (string (string_start) @docstring.start
               (string_content)
               (string_end) @docstring.end)))) @function.def
 (#eq? @docstring.start "\"\"\"")
 (#eq? @docstring.end "\"\"\""))
"""

#: What a ``stdlib`` source leaves out unless ``exclude`` is given: installed third-party code
#: and the test suites, whose near-identical scaffolding would crowd out real library functions.
STDLIB_EXCLUDE = (
    "site-packages/**",
    "dist-packages/**",
    "**/test/**",
    "**/tests/**",
    "idlelib/idle_test/**",
    "**/test_*.py",
)

#: Bumped when the extraction logic changes, so resumable parts of an older version are dropped.
EXTRACT_VERSION = 1


# ------------------------------------------------------------------------------ tree-sitter


@cache
def _language() -> Language:
    return Language(tree_sitter_python.language())


@cache
def _query() -> Query:
    return Query(_language(), QUERY)


@cache
def _default_parser() -> Parser:
    """One parser per process: building one per file would cost more than the parse."""
    return Parser(_language())


def new_parser() -> Parser:
    """A tree-sitter parser for Python, for callers that want their own (e.g. one per thread)."""
    return Parser(_language())


def extract_functions(source: bytes, parser: Parser | None = None) -> list[tuple[int, str]]:
    """Top-level functions of ``source`` (UTF-8) whose first statement is a ``\"\"\"`` docstring.

    Returns ``(line number, function text)`` in file order, one entry per definition; line
    numbers are 1-based and point at the ``def`` (or ``async def``) line. Never raises on bad
    Python: tree-sitter recovers from syntax errors and the functions it still recognises are
    returned, as upstream did.
    """
    tree = (parser or _default_parser()).parse(source)
    captures: dict[str, list[Node]] = QueryCursor(_query()).captures(tree.root_node)
    found: dict[int, tuple[int, str]] = {}
    for node in captures.get("function.def", []):
        row, column = node.start_point
        # Upstream's notion of top-level: the definition starts in the first column.
        if column != 0 or node.start_byte in found:
            continue
        found[node.start_byte] = (row + 1, source[node.start_byte : node.end_byte].decode("utf-8"))
    return [found[start] for start in sorted(found)]


def decode_source(data: bytes) -> str | None:
    """Decode a Python file as the interpreter would (PEP 263 cookie, BOM, else UTF-8).

    Returns None when the file cannot be decoded: an unknown or lying coding cookie, or bytes
    that are not valid in the declared encoding. Callers count such files rather than guess.
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return None


# ------------------------------------------------------------------------------- parameters


@dataclass
class SourceParams:
    """Where seed functions come from: the ``seeds.source`` section of the config.

    ``exclude`` is a list of glob patterns on POSIX paths relative to the source root (``*``
    stays within a path segment, ``**`` spans segments); None means the kind's default,
    :data:`STDLIB_EXCLUDE` for ``stdlib`` and nothing for ``local``. ``max_files`` takes the
    first files (or dataset rows) in source order before sharding, for small runs.
    ``files_per_unit`` files (or rows) make one resumable unit.
    """

    kind: str
    path: str | None = None
    data_dir: str | None = None
    data_files: list[str] | None = None
    revision: str | None = None
    split: str = "train"
    streaming: bool = True
    content_field: str = "content"
    id_field: str = "hexsha"
    origin_fields: list[str] = field(default_factory=list)
    exclude: list[str] | None = None
    max_files: int | None = None
    files_per_unit: int = 256

    def __post_init__(self) -> None:
        # each value's type, bounds and choices: the config schema's seeds.source (from_dict)
        if self.kind != "stdlib" and not self.path:
            raise ValueError(f"a {self.kind} source needs a path")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceParams:
        check_params(cls, data, "seeds.source")
        return cls(**data)

    def exclude_patterns(self) -> list[str]:
        if self.exclude is not None:
            return list(self.exclude)
        return list(STDLIB_EXCLUDE) if self.kind == "stdlib" else []


# ------------------------------------------------------------------------------ file listing


def _segment_regex(segment: str) -> str:
    """Translate one path segment of a glob (``*``, ``?``, ``[...]``) into a regex."""
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        char = segment[i]
        i += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            j = i
            if j < n and segment[j] == "!":
                j += 1
            if j < n and segment[j] == "]":
                j += 1
            while j < n and segment[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(char))
                continue
            body = segment[i:j].replace("\\", "\\\\")
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex that fully matches the POSIX relative paths that ``pattern`` names.

    Written out because :mod:`fnmatch` lets ``*`` cross ``/`` and cannot express "any depth,
    including none" (``**/tests/**`` must match ``tests/x.py``), and ``glob.translate`` needs
    Python 3.13.
    """
    parts = pattern.split("/")
    out: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
        else:
            out.append(_segment_regex(part) + ("" if last else "/"))
    return re.compile("".join(out), re.DOTALL)


@dataclass(frozen=True)
class SourceFile:
    """One file of a stdlib or local source: where it is and what its records are called."""

    path: Path
    relpath: str
    key: str


def source_root(params: SourceParams) -> Path:
    """The directory a file source lists: the running interpreter's stdlib, or ``path``."""
    if params.kind == "stdlib":
        return Path(sysconfig.get_paths()["stdlib"])
    if params.kind == "local":
        assert params.path is not None  # checked by SourceParams
        root = Path(params.path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"local source {root} is not a directory")
        return root
    raise ValueError(f"a {params.kind} source has no file list")


def source_files(params: SourceParams) -> list[SourceFile]:
    """All ``*.py`` files of a stdlib/local source, minus excludes, in record-id order.

    Files are sorted by ``key + "#"``, which is the order of the ids they produce
    (``<key>#L<line>``): plain path order can differ from it when one key is a prefix of
    another, and shards and units must be contiguous runs of ids for the output to be sorted
    without a merge. ``max_files`` is applied to this sorted list.
    """
    root = source_root(params)
    patterns = [glob_regex(p) for p in params.exclude_patterns()]
    # A pattern "X/**" excludes the whole directory X: do not even walk it (site-packages).
    prune = [glob_regex(p[:-3]) for p in params.exclude_patterns() if p.endswith("/**")]
    prefix = "stdlib/" if params.kind == "stdlib" else ""
    found: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        reldir = Path(dirpath).relative_to(root).as_posix()
        reldir = "" if reldir == "." else reldir + "/"
        dirnames[:] = [d for d in dirnames if not any(r.fullmatch(reldir + d) for r in prune)]
        for name in filenames:
            relpath = reldir + name
            if not name.endswith(".py") or any(r.fullmatch(relpath) for r in patterns):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                found.append(SourceFile(path, relpath, prefix + relpath))
    found.sort(key=lambda f: f.key + "#")
    return found[: params.max_files] if params.max_files is not None else found


# ------------------------------------------------------------------------------ the work


@dataclass
class _Item:
    """One file or dataset row to extract from; ``path`` xor ``content`` is set."""

    key: str
    origin: JsonObj
    path: str | None = None
    content: str | None = None


#: What a skipped file's drop record says (its id is the file's, the prefix of its functions' ids).
SKIP_DETAIL: dict[str, dict[str, str]] = {
    "undecodable": {"why": "not UTF-8 and no PEP 263 coding that decodes it (decode_source)"},
    "unencodable": {"why": "decodes to text with lone surrogates, which have no UTF-8 form"},
}

# (drop reason or None, [(line number, function text)])
_Outcome = tuple[str | None, list[tuple[int, str]]]


def _process(task: tuple[str | None, str | None]) -> _Outcome:
    """Extract from one file (``path``) or one text (``content``); runs in the worker pool."""
    path, content = task
    if path is not None:
        with open(path, "rb") as handle:
            content = decode_source(handle.read())
        if content is None:
            return "undecodable", []
    assert content is not None
    try:
        # Lone surrogates (e.g. from a raw_unicode_escape cookie) have no UTF-8 form.
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        return "unencodable", []
    return None, extract_functions(data)


def _outcomes(
    units: Iterable[tuple[int, list[_Item]]], workers: int
) -> Iterator[tuple[int, _Item, _Outcome]]:
    """Process the items of each unit in order, yielding ``(unit, item, outcome)``.

    With several workers, at most two units are in flight: the pool works on the next unit
    while the current one drains, but a dataset stream is never read further ahead than that
    (``Pool.imap`` alone would pull the whole iterable into its task queue).
    """
    if workers <= 1:
        for unit, items in units:
            for item in items:
                yield unit, item, _process((item.path, item.content))
        return
    with multiprocessing.Pool(workers) as pool:
        in_flight: deque[tuple[int, list[_Item], Iterator[_Outcome]]] = deque()
        for unit, items in units:
            chunksize = max(1, min(32, len(items) // (4 * workers)))
            tasks = [(item.path, item.content) for item in items]
            in_flight.append((unit, items, pool.imap(_process, tasks, chunksize)))
            if len(in_flight) > 1:
                done_unit, done_items, results = in_flight.popleft()
                for item, outcome in zip(done_items, results, strict=True):
                    yield done_unit, item, outcome
        while in_flight:
            done_unit, done_items, results = in_flight.popleft()
            for item, outcome in zip(done_items, results, strict=True):
                yield done_unit, item, outcome


def _unit_result(items: list[_Item], outcomes: list[_Outcome]) -> UnitResult:
    """Turn one unit's outcomes into its records (sorted by id) and its stats."""
    stats = StageStats(n_in=len(items))
    records: list[JsonObj] = []
    files_with_functions = 0
    for item, (reason, functions) in zip(items, outcomes, strict=True):
        if reason is not None:
            stats.drop(reason, id=item.key, detail=SKIP_DETAIL[reason])
            continue
        files_with_functions += bool(functions)
        for lineno, text in functions:
            records.append(
                {
                    "id": f"{item.key}#L{lineno:06d}",
                    "content": text,
                    "origin": {**item.origin, "lineno": lineno},
                }
            )
    records.sort(key=itemgetter("id"))
    for before, after in itertools.pairwise(records):
        if before["id"] == after["id"]:
            raise ValueError(f"duplicate record id {after['id']!r}: are the source's ids unique?")
    stats.n_out = len(records)
    stats.extra = {"files_with_functions": files_with_functions, "functions": len(records)}
    summary = stats.to_json()
    summary["first_id"] = records[0]["id"] if records else None
    summary["last_id"] = records[-1]["id"] if records else None
    summary["n_bytes"] = sum(len(dumps(r).encode("utf-8")) + 1 for r in records)
    return UnitResult(records, summary)


def _in_id_order(unit_stats: list[JsonObj]) -> bool:
    """Whether concatenating the units in unit order gives a file sorted by id."""
    last: str | None = None
    for stats in unit_stats:
        if stats["first_id"] is None:
            continue
        if last is not None and stats["first_id"] <= last:
            return False
        last = stats["last_id"]
    return True


def _file_units(
    files: list[SourceFile], kind: str, per_unit: int, done: set[int]
) -> Iterator[tuple[int, list[_Item]]]:
    for unit, start in enumerate(range(0, len(files), per_unit)):
        if unit in done:
            continue
        yield (
            unit,
            [
                _Item(f.key, {"source": kind, "path": f.relpath}, path=str(f.path))
                for f in files[start : start + per_unit]
            ],
        )


class _RowUnits:
    """The pending units of a dataset shard's row stream, validating each row as it is read.

    ``n_rows`` is known only once the stream is exhausted (a streaming dataset has no length),
    and with it the number of units.
    """

    def __init__(
        self, rows: Iterable[JsonObj], params: SourceParams, start: int, done: set[int], where: str
    ):
        self.rows = rows
        self.params = params
        self.start = start
        self.done = done
        self.where = where
        self.n_rows = start

    def _item(self, row: JsonObj, index: int) -> _Item:
        p = self.params
        for name in (p.content_field, p.id_field, *p.origin_fields):
            if name not in row:
                raise ValueError(f"{self.where} row {index}: field {name!r} is missing")
        content = row[p.content_field]
        if not isinstance(content, str):
            raise ValueError(
                f"{self.where} row {index}: field {p.content_field!r}: expected a string, "
                f"got {type(content).__name__}"
            )
        key = row[p.id_field]
        if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
            raise ValueError(
                f"{self.where} row {index}: field {p.id_field!r}: expected a non-empty string "
                f"or integer id, got {key!r}"
            )
        origin: JsonObj = {"source": "huggingface"}
        for name in p.origin_fields:
            try:
                dumps({name: row[name]})
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.where} row {index}: field {name!r} is not JSON-serializable"
                ) from None
            origin[name] = row[name]
        return _Item(str(key), origin, content=content)

    def __iter__(self) -> Iterator[tuple[int, list[_Item]]]:
        per_unit = self.params.files_per_unit
        batch: list[_Item] = []
        unit = self.start // per_unit
        for index, row in enumerate(self.rows, start=self.start):
            self.n_rows = index + 1
            if index // per_unit != unit:
                if batch:
                    yield unit, batch
                batch, unit = [], index // per_unit
            if unit not in self.done:
                batch.append(self._item(row, index))
        if batch:
            yield unit, batch


def _load_rows(
    params: SourceParams, shard: int, num_shards: int, start: int
) -> tuple[Iterable[JsonObj], int | None]:
    """This shard's rows of a Hugging Face dataset from row ``start`` on, and their number.

    Without ``max_files`` a shard is ``shard(contiguous=True)`` of the split (for a streaming
    dataset: a contiguous run of its data files). With it, the first ``max_files`` rows of the
    split are cut into contiguous slices, the same rule as for files.
    """
    import datasets  # deferred: importing datasets costs a second and file sources do not need it

    ds = datasets.load_dataset(
        params.path,
        data_dir=params.data_dir,
        data_files=params.data_files,
        revision=params.revision,
        split=params.split,
        streaming=params.streaming,
    )
    total: int | None = None
    if params.max_files is not None:
        lo, hi = shard_bounds(params.max_files, shard, num_shards)
        total = hi - lo
        if isinstance(ds, datasets.Dataset):
            ds = ds.select(range(min(lo, len(ds)), min(hi, len(ds))))
        else:
            ds = ds.skip(lo).take(hi - lo)
    else:
        if isinstance(ds, datasets.IterableDataset) and num_shards > ds.num_shards:
            raise ValueError(
                f"{params.path} streams from {ds.num_shards} data file(s): it cannot be cut into "
                f"{num_shards} extraction shards "
                "(lower seeds.shards.extract, or set streaming: false)"
            )
        ds = ds.shard(num_shards=num_shards, index=shard, contiguous=True)
    if isinstance(ds, datasets.Dataset):
        total = len(ds)
    if start:
        ds = ds.skip(start)
    return ds, (None if total is None else max(0, total - start))


def _key(params: SourceParams, shard: int, num_shards: int, files: list[SourceFile]) -> JsonObj:
    """What a unit's output depends on besides the code: a change to any of it invalidates
    resumable parts."""
    listing = []
    for f in files:
        st = f.path.stat()
        listing.append([f.relpath, st.st_size, st.st_mtime_ns])
    return {
        "tree_sitter": metadata.version("tree-sitter"),
        "tree_sitter_python": metadata.version("tree-sitter-python"),
        "params": asdict(params),
        "shard": shard,
        "num_shards": num_shards,
        "files": hashlib.sha256(dumps({"files": listing}).encode("utf-8")).hexdigest(),
    }


def run_extract_shard(
    params: SourceParams,
    output: str | os.PathLike[str],
    shard: int = 0,
    num_shards: int = 1,
    workers: int = 1,
    show_progress: bool = True,
) -> StageStats:
    """Extract the seed functions of one shard of the source into ``output``, sorted by id.

    Work is done in resumable units of ``files_per_unit`` files (or rows): after a kill, a rerun
    redoes only the unfinished units. ``n_in`` counts files (rows) seen, ``n_out`` functions
    written, ``drops`` files skipped by reason; a file without any matching function is not a
    drop, so the stage does not balance in the usual sense.
    """
    output = Path(output)
    shard_bounds(1, shard, num_shards)  # validates shard/num_shards before any work
    stage = _Extraction(params, shard, num_shards, workers)
    if params.kind != "huggingface":
        return drive(stage, output, show_progress=show_progress)
    # Units follow row order, not id order: gather them beside the output, then merge.
    unsorted = output.with_name(output.name + ".unsorted")
    stats = drive(stage, unsorted, show_progress=show_progress)
    os.replace(dropped_path(unsorted), dropped_path(output))  # in row order
    if stage.ordered:
        os.replace(unsorted, output)
    else:
        _merge_runs(unsorted, stage.unit_stats, output)
        unsorted.unlink()
    return stats


@dataclass
class _Extraction:
    """Extraction as a :class:`selfalign.runtime.UnitStage`: a unit is ``files_per_unit`` source
    files (or dataset rows), parsed on ``workers`` processes."""

    params: SourceParams
    shard: int
    num_shards: int
    workers: int
    files: list[SourceFile] = field(default_factory=list, init=False)
    ordered: bool = field(default=True, init=False)  # the units' records are in id order
    unit_stats: list[JsonObj] = field(default_factory=list, init=False)

    def plan(self) -> UnitPlan:
        params = self.params
        total: int | None = None
        if params.kind != "huggingface":
            files = source_files(params)
            lo, hi = shard_bounds(len(files), self.shard, self.num_shards)
            self.files = files[lo:hi]
            total = len(self.files)
        return UnitPlan(
            stage="seeds.extract",
            version=EXTRACT_VERSION,
            key=_key(params, self.shard, self.num_shards, self.files),
            total=total,
            per_unit=params.files_per_unit,
            balances=False,
            desc=f"extract shard {self.shard} of {self.num_shards}",
            item="row" if params.kind == "huggingface" else "file",
        )

    def process(self, run: UnitRun) -> None:
        params, per_unit = self.params, self.params.files_per_unit
        if params.kind == "huggingface":
            prefix = next(u for u in itertools.count() if u not in run.done)
            rows, _ = _load_rows(params, self.shard, self.num_shards, prefix * per_unit)
            where = f"{params.path} (shard {self.shard} of {self.num_shards})"
            row_units = _RowUnits(rows, params, prefix * per_unit, set(run.done), where)
            self._write_units(run, _outcomes(row_units, self.workers))
            run.set_total(row_units.n_rows)
        else:
            units = _file_units(self.files, params.kind, per_unit, set(run.done))
            self._write_units(run, _outcomes(units, self.workers))

    @staticmethod
    def _write_units(run: UnitRun, outcomes: Iterator[tuple[int, _Item, _Outcome]]) -> None:
        """Write each unit as soon as its last item is processed."""
        for unit, group in itertools.groupby(outcomes, key=itemgetter(0)):
            items: list[_Item] = []
            results: list[_Outcome] = []
            for _, item, outcome in group:
                items.append(item)
                results.append(outcome)
                run.advance(1)
            result = _unit_result(items, results)
            run.write(unit, result.records, result.stats)

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        self.unit_stats = units
        self.ordered = _in_id_order(units)
        if self.params.kind != "huggingface" and not self.ordered:
            raise RuntimeError(f"{run.output}: units are not in id order; source_files() sorting is broken")
        stats = StageStats()
        files_with_functions = 0
        for summary in units:
            stats.merge(StageStats.from_json(summary))
            files_with_functions += summary["extra"]["files_with_functions"]
        stats.extra = {"files_with_functions": files_with_functions, "functions": stats.n_out}
        return stats


def _run_lines(fd: int, start: int, end: int, block: int = 1 << 16) -> Iterator[bytes]:
    """The lines of bytes ``[start, end)`` of a file, read with ``pread`` so runs share one fd."""
    pending = b""
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(block, end - offset), offset)
        if not chunk:
            raise RuntimeError(f"file shorter than expected at byte {offset}")
        offset += len(chunk)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        raise RuntimeError(f"run ending at byte {end} does not end with a newline")


def _merge_runs(path: Path, unit_stats: list[JsonObj], output: Path) -> None:
    """K-way merge the id-sorted runs (one per unit) of ``path`` into ``output``, streaming."""
    fd = os.open(path, os.O_RDONLY)
    try:
        runs = []
        offset = 0
        for stats in unit_stats:
            lines = _run_lines(fd, offset, offset + stats["n_bytes"])
            runs.append(line.decode("utf-8") for line in lines)
            offset += stats["n_bytes"]

        def keyed(run: Iterator[str]) -> Iterator[tuple[str, str]]:
            for line in run:
                yield _load_id(line), line

        previous: str | None = None
        with atomic_writer(output) as handle:
            for record_id, line in heapq.merge(*(keyed(r) for r in runs), key=itemgetter(0)):
                if record_id == previous:
                    raise ValueError(
                        f"duplicate record id {record_id!r}: are the source's ids unique?"
                    )
                previous = record_id
                handle.write(line)
                handle.write("\n")
    finally:
        os.close(fd)


def _load_id(line: str) -> str:
    record_id = json.loads(line)["id"]
    assert isinstance(record_id, str)
    return record_id


# ------------------------------------------------------------------------------- merging


def _sorted_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, str, int, JsonObj]]:
    """``(id, path, line, record)`` of one shard file, checking that ids strictly increase."""
    previous: str | None = None
    for lineno, record in iter_jsonl(path, {"id": str, "content": str}):
        record_id = record["id"]
        if previous is not None and record_id <= previous:
            problem = "duplicate id" if record_id == previous else "not sorted by id"
            raise RecordError(
                path, lineno, f"{problem}: {record_id!r} after {previous!r}", field="id"
            )
        previous = record_id
        yield record_id, str(path), lineno, record


def merge_shards(
    inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> StageStats:
    """Merge id-sorted shard files into one id-sorted file, dropping exact duplicate functions.

    The merge streams (``heapq.merge``): only one record per shard and one SHA-1 digest per
    distinct function are held in memory. A function text seen before (under a smaller id) is
    dropped as ``exact_duplicate``, which is upstream's set of function texts. An id present
    in two shards, or a shard out of order, is a :class:`RecordError` at its file and line.
    """
    stats = StageStats()
    seen: dict[bytes, str] = {}  # function text's SHA-1 -> the id kept with it
    streams = [_sorted_records(path) for path in inputs]

    def merged(drops: DropSink) -> Iterator[JsonObj]:
        previous: tuple[str, str, int] | None = None
        for record_id, path, lineno, record in heapq.merge(*streams, key=itemgetter(0)):
            stats.n_in += 1
            if previous is not None and record_id == previous[0]:
                raise RecordError(
                    path,
                    lineno,
                    f"duplicate id {record_id!r} (also at {previous[1]}:{previous[2]})",
                    field="id",
                )
            previous = (record_id, path, lineno)
            digest = hashlib.sha1(record["content"].encode("utf-8")).digest()
            if digest in seen:
                drops.drop(record_id, "exact_duplicate", {"duplicate_of": seen[digest]})
                continue
            seen[digest] = record_id
            yield record

    with streamed_drops(output, stats) as drops:
        # first the source files the shards skipped, in shard order (a shard written without a
        # drop file names none; if its sidecar counts skipped files, the raw drop file's check
        # against stats.files_skipped stops the command)
        for shard in inputs:
            shard_drops = dropped_path(Path(shard))
            if shard_drops.is_file():
                for _, skipped in iter_jsonl(shard_drops, {"id": str, "reason": str}):
                    skipped["reason"] = FILE_DROP_PREFIX + skipped["reason"]
                    drops.carry(skipped)
        stats.n_out = write_jsonl(output, merged(drops))
    stats.check_balance()
    return stats
