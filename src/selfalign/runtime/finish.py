"""What every stage leaves beside its artifact, written in one place: the sidecar, the drop file
(checked against the counts) and the explain index; and how shard sidecars' stats combine."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..chain import PREFIXED_DROPS, dropped_path
from ..provenance import write_sidecar
from ..records import atomic_writer, dumps, iter_jsonl, sha256_file, write_jsonl
from .stats import StageStats, drop_record

log = logging.getLogger("selfalign")


def finish(
    artifact: str | Path,
    stats: StageStats,
    *,
    stage: str,
    inputs: Sequence[str | Path],
    params: Mapping[str, Any],
    started: float | None,
    extra: Mapping[str, Any] | None = None,
    drop_file: bool = False,
) -> Path:
    """The artifact's sidecar; with ``drop_file`` (a stage that drops records), the drop file
    beside it too, checked against the counts (one drop record per dropped record) and hashed
    into the sidecar, and then the artifact's explain index (unless it is one shard's).
    Returns the sidecar's path."""
    artifact = Path(artifact)
    meta_extra: dict[str, Any] = {"stats": stats.extra} if stats.extra else {}
    if extra:
        meta_extra.update(extra)
    if drop_file:
        meta_extra["dropped"] = write_drop_file(artifact, stats)
    path = write_sidecar(
        artifact,
        stage=stage,
        inputs=inputs,
        counts=stats.counts(),
        drops=dict(stats.drops),
        config=params,
        extra=meta_extra,
        started=started,
    )
    log.info("%s: %s in, %s out, drops %s -> %s", stage, stats.n_in, stats.n_out, dict(stats.drops), artifact)
    log.debug("sidecar %s", path)
    if "shard" not in (extra or {}):
        from ..audit.explain import build_index

        build_index(artifact)  # a no-op for an artifact that is not one of the chain's
    return path


def finish_counts(
    artifact: str | Path,
    *,
    stage: str,
    counts: Mapping[str, int],
    inputs: Sequence[str | Path],
    params: Mapping[str, Any],
    started: float | None,
    drops: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """The sidecar of an artifact that counts something other than records in and out (an
    evaluation's tasks, a self-check's programs), written by the same writer as :func:`finish`."""
    path = write_sidecar(artifact, stage=stage, inputs=inputs, counts=counts, drops=drops, config=params,
                         extra=extra, started=started)
    log.info("%s: %s -> %s", stage, dict(counts), artifact)
    return path


def write_drop_file(artifact: str | Path, stats: StageStats) -> dict[str, Any]:
    """Write (unless a finalize or concat already did) and check the drop file of ``artifact``."""
    path = dropped_path(artifact)
    if not stats.dropped_written:
        write_jsonl(path, stats.dropped)
    reasons: Counter[str] = Counter(rec["reason"] for _, rec in iter_jsonl(path, {"id": str, "reason": str}))
    expected = {k: v for k, v in stats.drops.items() if v}
    for prefix, key in PREFIXED_DROPS.items():  # samples, skipped files: counted in stats
        expected.update({prefix + k: v for k, v in (stats.extra.get(key) or {}).items() if v})
    if dict(reasons) != expected:
        raise AssertionError(
            f"{path}: drop records by reason {dict(reasons)} differ from the counts"
            f" {expected}: a drop site does not name its record"
        )
    return {"file": path.name, "sha256": sha256_file(path), "records": sum(reasons.values())}


#: Stats keys that describe the shared setup (identical in every shard) rather than count work.
SHARED_STATS_KEYS = frozenset({"benchmarks"})


def merge_extra(values: list[Any], key: str | None = None) -> Any:
    """Combine the ``stats`` of shards or units: numbers add up, lists concatenate, dicts merge.

    Keys in SHARED_STATS_KEYS must be equal in every shard and are kept once.
    """
    values = [v for v in values if v is not None]
    if key in SHARED_STATS_KEYS and values:
        if any(v != values[0] for v in values[1:]):
            raise ValueError(f"shards disagree on {key!r}: they were not run with the same setup")
        return values[0]
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return values[0] if len(set(values)) == 1 else values
    if all(isinstance(v, (int, float)) for v in values):
        return sum(values)
    if all(isinstance(v, list) for v in values):
        return [item for v in values for item in v]
    if all(isinstance(v, dict) for v in values):
        keys: dict[str, None] = {}
        for v in values:
            keys.update(dict.fromkeys(v))
        return {k: merge_extra([v.get(k) for v in values], k) for k in keys}
    unique = []
    for v in values:
        if v not in unique:
            unique.append(v)
    return unique[0] if len(unique) == 1 else unique


class DropSink:
    """A drop file written as records are dropped, for a stage that streams more drops than it
    should hold (:func:`streamed_drops`); each drop is counted in the stage's stats too."""

    def __init__(self, handle: IO[str], stats: StageStats) -> None:
        self._handle = handle
        self._stats = stats

    def drop(self, id: str, reason: str, detail: Mapping[str, Any] | None = None) -> None:
        """Drop record ``id`` for ``reason``: one line in the drop file, one in the counts."""
        self._stats.drops[reason] += 1
        self._handle.write(dumps(drop_record(id, reason, detail)) + "\n")

    def carry(self, record: Mapping[str, Any]) -> None:
        """A drop record made (and counted) by an earlier stage or shard, kept as it is."""
        self._handle.write(dumps(record) + "\n")


@contextmanager
def streamed_drops(output: str | os.PathLike[str], stats: StageStats) -> Iterator[DropSink]:
    """The drop file of ``output``, written atomically as the stage goes; afterwards
    :func:`finish` checks it against ``stats`` like any other."""
    with atomic_writer(dropped_path(output)) as handle:
        yield DropSink(handle, stats)
    stats.dropped_written = True


def interleave_drops(
    output: str | os.PathLike[str], records: Sequence[Mapping[str, Any]], *, key: Callable[[Mapping[str, Any]], Any]
) -> None:
    """Add drop records made outside a stage's units (e.g. records no request was built for) to
    its finished drop file, all in input order by ``key`` (stable: a record's drops keep theirs)."""
    path = dropped_path(output)
    rows: list[Mapping[str, Any]] = [rec for _, rec in iter_jsonl(path)] + list(records)
    rows.sort(key=key)
    write_jsonl(path, rows)
