"""Hold one of our artifacts against a published dataset: the same records? which differ, where?

``selfalign compare --ours results/paper/sft.jsonl --published bigcode/self-oss-instruct-sc2-exec-filter-50k``
loads the published side with ``datasets`` (a Hub dataset at a revision, or a local JSONL or
Parquet file) and matches records by a key: ``instruction`` (default: the instruction with all
whitespace removed, the release's own dedup key, so one record per instruction on each side),
``response`` (likewise), or any field both sides hold (``id``). It reports how many records each side has, how many match,
which keys only one side has, and, for each compared field, how many matched records differ
there, with the first differences (key, both values' heads, the offset of the first differing
character). Order is checked too: the release wrote its SFT set in its shuffled order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import JsonObj, RecordError, iter_jsonl

#: Keys compared with all whitespace removed, as the release's ``mk_key`` did.
WHITESPACE_FREE = ("instruction", "response")

#: How many examples of each kind of difference the report keeps.
EXAMPLES = 5
HEAD = 160


@dataclass(frozen=True)
class Source:
    """Where the published side comes from: a Hub dataset (name, revision, split) or a file."""

    dataset: str | None = None
    revision: str | None = None
    split: str = "train"
    path: str | None = None

    def describe(self) -> JsonObj:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def load_rows(source: Source) -> Iterator[tuple[str, int, JsonObj]]:
    """``(where, row number, record)`` of the published side."""
    if source.path is not None:
        path = Path(source.path)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for n, row in enumerate(pq.read_table(path).to_pylist(), start=1):
                yield str(path), n, row
            return
        for n, row in iter_jsonl(path):
            yield str(path), n, row
        return
    import datasets

    kwargs: dict[str, Any] = {"split": source.split}
    if source.revision:
        kwargs["revision"] = source.revision
    for n, row in enumerate(datasets.load_dataset(source.dataset, **kwargs), start=1):
        yield str(source.dataset), n, dict(row)


def match_key(record: Mapping[str, Any], key: str, where: str, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise RecordError(where, line, "missing or not a string (the match key)", key)
    return "".join(value.split()) if key in WHITESPACE_FREE else value


@dataclass
class FieldDiff:
    differ: int = 0
    examples: list[JsonObj] = field(default_factory=list)


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _index(rows: Iterable[tuple[str, int, JsonObj]], key: str) -> tuple[dict[str, JsonObj], list[str], list[str]]:
    """Records by key, keys in order, and duplicate keys (each kept once: the first)."""
    by_key: dict[str, JsonObj] = {}
    order: list[str] = []
    duplicates: list[str] = []
    for where, line, record in rows:
        k = match_key(record, key, where, line)
        if k in by_key:
            duplicates.append(k)
            continue
        by_key[k] = record
        order.append(k)
    return by_key, order, duplicates


def compare(
    ours: str | os.PathLike[str],
    published: Source,
    *,
    key: str = "instruction",
    fields: Sequence[str] = ("instruction", "response"),
) -> JsonObj:
    """The comparison report (see the module docstring)."""
    mine, mine_order, mine_dups = _index(((str(ours), n, r) for n, r in iter_jsonl(Path(ours))), key)
    theirs, their_order, their_dups = _index(load_rows(published), key)
    common = [k for k in mine_order if k in theirs]
    diffs = {name: FieldDiff() for name in fields}
    identical = 0
    for k in common:
        same = True
        for name in fields:
            a, b = mine[k].get(name), theirs[k].get(name)
            if a == b:
                continue
            same = False
            diff = diffs[name]
            diff.differ += 1
            if len(diff.examples) < EXAMPLES:
                example: JsonObj = {"key": k[:HEAD], "ours": str(a)[:HEAD], "published": str(b)[:HEAD]}
                if isinstance(a, str) and isinstance(b, str):
                    example["first_difference_at"] = _first_difference(a, b)
                diff.examples.append(example)
        identical += same
    their_rank = {k: i for i, k in enumerate(k for k in their_order if k in mine)}
    in_order = all(their_rank[a] < their_rank[b] for a, b in zip(common, common[1:], strict=False))
    return {
        "ours": {"path": str(ours), "records": len(mine_order), "duplicate_keys": len(mine_dups)},
        "published": {**published.describe(), "records": len(their_order), "duplicate_keys": len(their_dups)},
        "key": key,
        "matched": len(common),
        "identical": identical,
        "same_order": in_order,
        "only_ours": {"count": len(mine_order) - len(common),
                      "examples": [k[:HEAD] for k in mine_order if k not in theirs][:EXAMPLES]},
        "only_published": {"count": len(their_order) - len(common),
                           "examples": [k[:HEAD] for k in their_order if k not in mine][:EXAMPLES]},
        "fields": {name: {"differ": d.differ, "examples": d.examples} for name, d in diffs.items()},
    }


def summary(report: Mapping[str, Any]) -> str:
    """One paragraph for the terminal."""
    lines = [
        f"ours {report['ours']['records']} records, published {report['published']['records']}; "
        f"matched by {report['key']}: {report['matched']}, identical in "
        f"{', '.join(report['fields'])}: {report['identical']}; same order: {report['same_order']}",
        f"only ours: {report['only_ours']['count']}, only published: {report['only_published']['count']}",
    ]
    for name, diff in report["fields"].items():
        lines.append(f"{name}: {diff['differ']} of the matched differ")
    return "\n".join(lines)
