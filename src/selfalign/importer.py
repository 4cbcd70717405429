"""Start the chain from a published dataset or a local JSONL instead of regenerating earlier stages.

The published intermediate datasets (e.g. ``bigcode/python-stack-v1-functions-filtered``) are
loaded with ``datasets`` at a pinned revision and converted to selfalign records: a stable ``id``
(the dataset's own id column where it has one, else the row index), ``content``, and an
``origin`` naming the dataset, revision and row, so every downstream record can be traced back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .records import JsonObj, RecordError, atomic_writer, dumps, iter_jsonl
from .stage import StageStats, progress


@dataclass(frozen=True)
class ImportSpec:
    stage: str
    jsonl: str | None = None
    dataset: str | None = None
    data_files: list[str] | None = None
    revision: str | None = None
    split: str = "train"
    content_field: str = "content"
    id_field: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown start_from key(s): {', '.join(unknown)}")
        spec = cls(**data)
        if (spec.jsonl is None) == (spec.dataset is None):
            raise ValueError("start_from needs exactly one of 'jsonl' or 'dataset'")
        return spec


def _from_dataset(spec: ImportSpec) -> Iterator[JsonObj]:
    import datasets

    kwargs: dict[str, Any] = {"split": spec.split}
    if spec.revision:
        kwargs["revision"] = spec.revision
    if spec.data_files:
        kwargs["data_files"] = spec.data_files
    ds = datasets.load_dataset(spec.dataset, **kwargs)
    label = f"{spec.dataset}" if not spec.data_files else f"{spec.dataset}:{','.join(spec.data_files)}"
    for row_index, row in enumerate(ds):
        for field_name in (spec.content_field, spec.id_field):
            if field_name is not None and field_name not in row:
                raise RecordError(label, row_index + 1, "missing", field=field_name)
        content = row[spec.content_field]
        if not isinstance(content, str):
            raise RecordError(label, row_index + 1, f"expected str, got {type(content).__name__}", field=spec.content_field)
        key = row[spec.id_field] if spec.id_field else row_index
        yield {
            "id": f"{spec.dataset}/{key}" if spec.id_field else f"{spec.dataset}/{row_index:09d}",
            "content": content,
            "origin": {"dataset": spec.dataset, "revision": spec.revision, "split": spec.split, "row": row_index},
        }


def _from_jsonl(spec: ImportSpec) -> Iterator[JsonObj]:
    assert spec.jsonl is not None
    for _, record in iter_jsonl(spec.jsonl, {"id": str, "content": str}):
        yield record


def import_records(spec: ImportSpec, output: str | Path, show_progress: bool = True) -> StageStats:
    """Write the imported records to ``output``; ids must be unique (checked, not assumed)."""
    source = _from_jsonl(spec) if spec.jsonl else _from_dataset(spec)
    stats = StageStats()
    seen: set[str] = set()
    where = spec.jsonl or spec.dataset or "?"
    with atomic_writer(output) as out:
        for index, record in enumerate(progress(source, desc=f"import {spec.stage}", enabled=show_progress)):
            if record["id"] in seen:
                raise RecordError(where, index + 1, f"duplicate id {record['id']!r}", field="id")
            seen.add(record["id"])
            out.write(dumps(record) + "\n")
            stats.n_in += 1
            stats.n_out += 1
    stats.extra = {"source": {k: v for k, v in spec.__dict__.items() if v is not None}}
    return stats
