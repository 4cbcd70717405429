"""JSONL records: strict reading, deterministic atomic writing, and resumable unit-wise output.

Every stage boundary in selfalign is a JSONL file of JSON objects with a stable string ``id``.
Reading is strict: a malformed line, a non-object, or a missing/mistyped field stops the stage
with the file, the line number and the field, never a silent drop.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

JsonObj = dict[str, Any]


class RecordError(ValueError):
    """A bad input record, located by file, line and (when known) field."""

    def __init__(self, path: str | os.PathLike[str], line: int, message: str, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        where = f"{self.path}:{line}"
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {message}")


def dataset_file_rows(files: Iterable[str | os.PathLike[str]], features: Any = None
                      ) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    """``(file, row number from 1, row)`` of local dataset files read through ``datasets``: the
    parquet builder for ``*.parquet``, the JSON builder otherwise (``features``, if given, fixes
    the columns' types)."""
    from datasets import load_dataset

    for path in files:
        builder = "parquet" if str(path).endswith(".parquet") else "json"
        for index, row in enumerate(load_dataset(builder, data_files=str(path), split="train", features=features)):
            yield str(path), index + 1, row


class FirstSeen:
    """Where each key was first seen; a second sighting is a :class:`RecordError` naming both."""

    def __init__(self) -> None:
        self.where: dict[Any, str] = {}

    def add(self, key: Any, path: str | os.PathLike[str], line: int, field: str, label: str) -> None:
        """Record ``key`` at ``path:line``; ``label`` names it in the error ("question_id 'x'")."""
        if key in self.where:
            raise RecordError(path, line, f"duplicate {label} (first in {self.where[key]})", field=field)
        self.where[key] = f"{path}:{line}"


def dumps(record: Mapping[str, Any]) -> str:
    """The one serialization of a record used everywhere, so equal records give equal bytes.

    Text is written as UTF-8, except in a record holding text that has no UTF-8 form (a lone
    surrogate, which JSON's ``"\\ud800"`` escape and Python strings can hold): that record is
    written with every non-ASCII character escaped, as the release's ``json.dumps`` wrote all of
    its records, so the stage carries it instead of stopping (the next reader gets the same text).
    """
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    return text


Required = Mapping[str, type | tuple[type, ...]]


def parse_jsonl_line(path: str | os.PathLike[str], lineno: int, line: str | bytes, required: Required) -> JsonObj:
    """One JSONL line as a record, or a :class:`RecordError` naming file, line and field."""
    ends = line.endswith("\n") if isinstance(line, str) else line.endswith(b"\n")
    if not ends:
        raise RecordError(path, lineno, "truncated line (no trailing newline): was the file cut short?")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = line[exc.start]
            raise RecordError(path, lineno, f"not valid UTF-8 (byte 0x{bad:02x} at byte {exc.start + 1})") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(path, lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise RecordError(path, lineno, f"expected a JSON object, got {type(record).__name__}")
    for field, kind in required.items():
        if field not in record:
            raise RecordError(path, lineno, "missing", field=field)
        if not isinstance(record[field], kind) or (kind is int and isinstance(record[field], bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise RecordError(path, lineno, f"expected {names}, got {type(record[field]).__name__}", field=field)
    return record


class UniqueIds:
    """Remembers the ``id`` of every record read and refuses a second record with the same one,
    naming both lines (records without an ``id`` are not checked: their ids are derived later)."""

    def __init__(self, path: str | os.PathLike[str], field: str = "id") -> None:
        self.path = path
        self.field = field
        self.seen: dict[str | int, int] = {}

    def check(self, lineno: int, record: JsonObj) -> None:
        value = record.get(self.field)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return
        first = self.seen.setdefault(value, lineno)
        if first != lineno:
            raise RecordError(self.path, lineno, f"duplicate {self.field} {value!r} (first at line {first})", field=self.field)


def iter_jsonl(
    path: str | os.PathLike[str], required: Required | None = None, *, unique: str | None = None
) -> Iterator[tuple[int, JsonObj]]:
    """Yield ``(line_number, record)`` from a JSONL file (gzip-compressed if it ends in
    ``.gz``), validating each line.

    ``required`` maps field names to the type (or tuple of types) each record must carry.
    Blank lines are an error too: they are not something our writers produce. With ``unique``
    (a field name, usually ``id``), a second record with the same value stops the stage, naming
    both lines.
    """
    fields = dict(required or {})
    ids = UniqueIds(path, unique) if unique else None
    # bytes, decoded line by line: a line that is not UTF-8 is named by its number, and lines
    # end at "\n" only (as count_lines and the writers count them)
    opened = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    with opened as handle:
        for lineno, line in enumerate(handle, start=1):
            record = parse_jsonl_line(path, lineno, line, fields)
            if ids is not None:
                ids.check(lineno, record)
            yield lineno, record


def iter_jsonl_offsets(
    path: str | os.PathLike[str], required: Required | None = None, *, unique: str | None = None
) -> Iterator[tuple[int, int, JsonObj]]:
    """:func:`iter_jsonl` for an uncompressed file, with each line's byte offset:
    ``(line_number, offset, record)``, for stages that seek back to records instead of
    holding them all in memory."""
    fields = dict(required or {})
    ids = UniqueIds(path, unique) if unique else None
    with open(path, "rb") as handle:
        lineno = 0
        while True:
            offset = handle.tell()
            line = handle.readline()
            if not line:
                return
            lineno += 1
            record = parse_jsonl_line(path, lineno, line, fields)
            if ids is not None:
                ids.check(lineno, record)
            yield lineno, offset, record


def read_jsonl(path: str | os.PathLike[str], required: Required | None = None) -> list[JsonObj]:
    return [rec for _, rec in iter_jsonl(path, required)]


def count_lines(path: str | os.PathLike[str]) -> int:
    """Lines of a file, a last one without its newline included (so a stage that reads as many
    records as this counts reaches it, and stops there on :func:`parse_jsonl_line`'s error,
    instead of never reading it)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Atomically write records; returns how many were written."""
    n = 0
    with atomic_writer(path) as handle:
        for record in records:
            handle.write(dumps(record))
            handle.write("\n")
            n += 1
    return n


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_writer(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(obj: Any) -> str:
    """A stable hash of a JSON-able object (used to tie resumable work to its inputs and params)."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


def concat_files(target: str | os.PathLike[str], parts: Iterable[str | os.PathLike[str]]) -> None:
    """``target`` (atomically) as the bytes of ``parts`` in order."""
    with atomic_writer(target, "wb") as out:
        for path in parts:
            with open(path, "rb") as part:
                shutil.copyfileobj(part, out)


def usual_permissions(directory: str | os.PathLike[str]) -> None:
    """Give a directory assembled in a temp dir, and its files, the umask's modes (temp files
    and dirs are created private: 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    directory = Path(directory)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)
