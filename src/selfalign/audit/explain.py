"""``selfalign explain ID``: one record's path through the chain, from an index per stage.

At the end of each stage (in the CLI, after its sidecar) :func:`build_index` writes
``<artifact stem>.index.sqlite`` beside the artifact: for every record it kept (a line of the
artifact) and every record it dropped (a line of its drop file), the record's root id (the
seed's id; a sample ``<id>/<k>`` has root ``<id>``), the rest of its own id and the byte offset
of its line. :func:`explain` then answers with one indexed lookup per stage and a seek per record
found, never a scan, so a query costs the same on the tiny run as on a paper-sized one
(benchmarks/explain.py). An index remembers the sha256 its sidecar gave the artifact and the
drop file; a stale or missing index is an error that says how to rebuild it
(``selfalign explain --reindex``), not a silent scan.

SQLite because it is in the standard library, is one file, and answers an indexed lookup
from disk without loading the index.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import chain
from ..chain import SAMPLE_DROP_PREFIX, Stage, dropped_path, root_id
from ..provenance import sidecar_path
from ..records import JsonObj

INDEX_SUFFIX = ".index.sqlite"
INDEX_VERSION = 2
_ID_PREFIX = b'{"id":"'
_SAMPLE = re.compile(r"^(?P<root>.+)/(?P<sample>\d+)$")


class ExplainError(ValueError):
    """The run has no usable index for a stage, or the id is in none of them."""


def index_path(artifact: str | os.PathLike[str]) -> Path:
    path = Path(artifact)
    return path.with_name(path.name.removesuffix(".jsonl") + INDEX_SUFFIX)


def _record_id(line: bytes) -> str:
    """The ``id`` of one JSONL line, without parsing the whole record when it comes first (as
    every writer of ours puts it)."""
    if line.startswith(_ID_PREFIX):
        end = line.find(b'"', len(_ID_PREFIX))
        if end != -1 and b"\\" not in line[len(_ID_PREFIX) : end]:
            return line[len(_ID_PREFIX) : end].decode("utf-8")
    return str(json.loads(line)["id"])


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        offset = 0
        for line in handle:
            yield offset, line
            offset += len(line)


def _drop_reason(line: bytes) -> str:
    found = re.search(rb'"reason":"([^"\\]*)"', line)
    return found.group(1).decode("utf-8") if found else str(json.loads(line)["reason"])


def build_index(artifact: str | os.PathLike[str]) -> Path | None:
    """Index ``artifact`` (and its drop file) for :func:`explain`; ``None`` when it is not an
    artifact of the chain (its sidecar names no chain stage)."""
    artifact = Path(artifact)
    meta_path = sidecar_path(artifact)
    if not meta_path.is_file() or artifact.suffix != ".jsonl":
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    stage = chain.by_sidecar_stage(str(meta.get("stage", "")))
    if stage is None:
        return None
    drops = dropped_path(artifact)
    target = index_path(artifact)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
            # one B-tree keyed by the root id (no separate index); a sample's id is its root plus
            # the suffix stored ('/3'), a record's is its root (suffix '')
            "CREATE TABLE rows (root TEXT NOT NULL, kept INTEGER NOT NULL, offset INTEGER NOT NULL,"
            " suffix TEXT NOT NULL, PRIMARY KEY (root, kept, offset)) WITHOUT ROWID;"
        )

        def row(rid: str, kept: int, offset: int, per_sample: bool) -> tuple[str, int, int, str]:
            root = root_id(rid, per_sample=per_sample)
            return root, kept, offset, rid[len(root):]

        def rows() -> Iterator[tuple[str, int, int, str]]:
            for offset, line in _lines(artifact):
                yield row(_record_id(line), 1, offset, stage.per_sample)
            if drops.is_file():
                for offset, line in _lines(drops):
                    per_sample = stage.per_sample or _drop_reason(line).startswith(SAMPLE_DROP_PREFIX)
                    yield row(_record_id(line), 0, offset, per_sample)

        db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", rows())
        facts = {
            "version": str(INDEX_VERSION),
            "stage": stage.key,
            "artifact_sha256": str(meta["sha256"]),
            "dropped_sha256": str((meta.get("dropped") or {}).get("sha256", "")),
        }
        db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(facts.items()))
        db.commit()
    finally:
        db.close()
    os.replace(tmp, target)
    return target


# ------------------------------------------------------------------------------ the query


@dataclass
class Found:
    """One line of a stage's artifact or drop file that belongs to the explained record."""

    id: str
    kept: bool
    record: JsonObj

    def to_json(self) -> JsonObj:
        out: JsonObj = {"id": self.id, "kept": self.kept}
        if self.kept:
            out["record"] = self.record
        else:
            out["reason"] = self.record.get("reason")
            out["detail"] = self.record.get("detail")
        return out


@dataclass
class StageStep:
    stage: Stage
    status: str  # kept | dropped | absent | not_in_run | not_reached | partly kept
    found: list[Found] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> JsonObj:
        return {
            "stage": self.stage.key,
            "label": self.stage.label,
            "artifact": self.stage.artifact,
            "status": self.status,
            "note": self.note,
            "records": [f.to_json() for f in self.found],
        }


def _open_index(results: Path, stage: Stage) -> sqlite3.Connection | None:
    artifact = results / stage.artifact
    meta_path = sidecar_path(artifact)
    if not meta_path.is_file():
        return None
    path = index_path(artifact)
    hint = f"rebuild it: selfalign explain --reindex --results {results}"
    if not path.is_file():
        raise ExplainError(f"{path}: no index for stage {stage.key} ({hint})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    facts = dict(db.execute("SELECT key, value FROM meta"))
    expected = {
        "version": str(INDEX_VERSION),
        "artifact_sha256": str(meta["sha256"]),
        "dropped_sha256": str((meta.get("dropped") or {}).get("sha256", "")),
    }
    if any(facts.get(k) != v for k, v in expected.items()):
        db.close()
        raise ExplainError(f"{path}: stale index, {artifact} changed since it was built ({hint})")
    return db


def _read_at(path: Path, offset: int) -> JsonObj:
    with open(path, "rb") as handle:
        handle.seek(offset)
        record: JsonObj = json.loads(handle.readline())
        return record


def _lookup(results: Path, stage: Stage, db: sqlite3.Connection, root: str, sample: str | None) -> list[Found]:
    artifact = results / stage.artifact
    found = []
    for suffix, kept, offset in db.execute(
        "SELECT suffix, kept, offset FROM rows WHERE root = ? ORDER BY kept DESC, offset", (root,)
    ):
        rid = root + suffix
        if sample is not None and rid not in (sample, root):
            continue
        found.append(Found(rid, bool(kept), _read_at(artifact if kept else dropped_path(artifact), offset)))
    return found


def explain(results_dir: str | os.PathLike[str], query: str) -> list[StageStep]:
    """The path of record (or sample) ``query`` through every stage of the run in
    ``results_dir``, in chain order."""
    results = Path(results_dir)
    if not results.is_dir():
        raise ExplainError(f"{results}: no such results directory")
    stages = list(chain.ARTIFACT_STAGES)
    dbs = {s.key: _open_index(results, s) for s in stages}
    try:
        root, sample = query, None
        if not any(db is not None and _has_root(db, query) for db in dbs.values()):
            match = _SAMPLE.match(query)
            if match and any(db is not None and _has_root(db, match["root"]) for db in dbs.values()):
                root, sample = match["root"], query
            else:
                raise ExplainError(f"{query!r}: no record or sample with this id in any stage of {results}")
        steps: list[StageStep] = []
        alive: bool | None = None  # kept by the stage before (None: no stage before it)
        for s in stages:
            db = dbs[s.key]
            if db is None:
                steps.append(StageStep(s, "not_in_run", note="this run has no such artifact"))
                continue
            found = _lookup(results, s, db, root, sample)
            if not found:
                note = ""
                if alive and s.key == "judged":
                    beyond = _sidecar(results, s).get("stats", {}).get("records_beyond_limit", 0)
                    note = "beyond generation.limit (not judged)" if beyond else ""
                steps.append(StageStep(s, "not_reached" if alive is False else "absent", note=note))
                alive = False
                continue
            kept = [f for f in found if f.kept]
            dropped = [f for f in found if not f.kept]
            status = "kept" if kept and not dropped else "dropped" if not kept else "partly kept"
            steps.append(StageStep(s, status, found))
            alive = bool(kept)
        return steps
    finally:
        for db in dbs.values():
            if db is not None:
                db.close()


def _has_root(db: sqlite3.Connection, root: str) -> bool:
    return db.execute("SELECT 1 FROM rows WHERE root = ? LIMIT 1", (root,)).fetchone() is not None


def _sidecar(results: Path, stage: Stage) -> JsonObj:
    data: JsonObj = json.loads(sidecar_path(results / stage.artifact).read_text(encoding="utf-8"))
    return data


def reindex(results_dir: str | os.PathLike[str]) -> list[Path]:
    """(Re)build the index of every chain artifact in ``results_dir``."""
    results = Path(results_dir)
    built = []
    for s in chain.ARTIFACT_STAGES:
        path = build_index(results / s.artifact) if (results / s.artifact).is_file() else None
        if path is not None:
            built.append(path)
    return built


# ------------------------------------------------------------------------------ rendering


def _head(text: Any, n: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _tail(text: Any, n: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else "…" + flat[-(n - 1):]


def kept_summary(stage: Stage, record: JsonObj) -> str:
    """What a kept record holds at this stage, in one line."""
    if stage.key == "judged":
        judge = (record.get("generation") or {}).get("judge") or {}
        return f"judge answered {judge.get('answer', '?')!r}"
    if stage.key == "responses":
        samples = record.get("responses", [])
        return f"{len(samples)} parsed sample(s)"
    if stage.key == "executed":
        verdict = record.get("execution") or {}
        return f"{verdict.get('status', '?')}: " + _head(record.get("response", ""), 120)
    words, name, chars = stage.shows  # every other stage: the field its chain row names
    value = record.get(name, "")
    return words + _head(", ".join(map(str, value)) if isinstance(value, list) else value, chars)


def detail_summary(record: JsonObj) -> str:
    """A drop record's detail in a line (``key=value; ...``), positions left out."""
    detail = record.get("detail") or {}
    parts = []
    for key, value in detail.items():
        if key in ("index", "shuffled_position", "seconds"):
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={_tail(value, 160) if key.endswith('tail') else _head(value, 100)}")
    return "; ".join(parts)


def drop_summary(found: Found) -> str:
    detail = detail_summary(found.record)
    return f"{found.record.get('reason')}" + (f" ({detail})" if detail else "")


def render(query: str, steps: list[StageStep]) -> str:
    """The path as text: one block per stage."""
    out = [f"{query}:"]
    width = max(len(s.stage.key) for s in steps)
    for step in steps:
        head = f"  {step.stage.key:<{width}}  {step.status}"
        if step.note:
            head += f" — {step.note}"
        out.append(head)
        if step.stage.key == "responses":
            for f in step.found:
                if f.kept:
                    for item in f.record.get("responses", []):
                        out.append(f"      sample {item.get('sample')}: {_head(item.get('response', ''), 110)}")
                    out.append(f"      ({kept_summary(step.stage, f.record)})")
                else:
                    out.append(f"      {f.id} dropped: {drop_summary(f)}")
            continue
        for f in step.found:
            label = f.id if f.id != query or len(step.found) > 1 else ""
            prefix = f"      {label + ' ' if label else ''}"
            if f.kept:
                out.append(prefix + kept_summary(step.stage, f.record))
            else:
                out.append(prefix + "dropped: " + drop_summary(f))
    return "\n".join(out) + "\n"
