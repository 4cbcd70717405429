"""Unit-wise, crash-safe output: what makes every long stage resumable after a kill."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..chain import dropped_path
from ..records import JsonObj, concat_files, fingerprint, write_json, write_jsonl
from .stats import detail_cap


@dataclass
class UnitResult:
    """What one unit of resumable work produced."""

    records: list[JsonObj]
    stats: JsonObj


class ResumableOutput:
    """Unit-wise, crash-safe output for a long stage.

    Work is split into numbered units (a batch of records, a source file chunk, ...). Each
    finished unit is written atomically to ``<output>.parts/<unit>.jsonl`` plus a stats file
    written last, which marks the unit done. After a kill, a rerun skips finished units, so
    nothing is lost and nothing is written twice. ``finalize`` concatenates the parts in unit
    order into ``output`` (atomically) and removes the parts directory.

    With ``drops``, a unit's drop records (its stats' ``dropped``) go to ``<unit>.dropped.jsonl``, written
    before the stats file, and ``finalize`` concatenates them in unit order into the output's
    drop file (:func:`selfalign.chain.dropped_path`), so a kill loses or duplicates none.

    The parts directory carries a fingerprint of the stage's inputs and parameters (and of the
    drop detail cap); if they changed since the interrupted run, the stale parts are discarded
    rather than mixed in.
    """

    def __init__(
        self, output: str | os.PathLike[str], fingerprint_value: str, *, drops: bool = False, records: bool = True
    ):
        self.output = Path(output)
        self.drops = drops  # a stage that drops records: keep its units' drop records
        #: the units carry records for ``output``; without, a unit is its stats and the files
        #: the stage keeps beside them (:meth:`unit_file`), and finalize writes no output
        self.records = records
        self.parts = self.output.with_name(self.output.name + ".parts")
        fingerprint_value = fingerprint([fingerprint_value, {"drop_detail_chars": detail_cap()}])
        self.fingerprint = fingerprint_value
        manifest = self.parts / "manifest.json"
        if self.parts.exists():
            try:
                previous = json.loads(manifest.read_text(encoding="utf-8"))["fingerprint"]
            except (OSError, ValueError, KeyError):
                previous = None
            if previous != fingerprint_value:
                shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            write_json(manifest, {"fingerprint": fingerprint_value})

    def _records_path(self, unit: int) -> Path:
        return self.parts / f"{unit:08d}.jsonl"

    def _stats_path(self, unit: int) -> Path:
        return self.parts / f"{unit:08d}.stats.json"

    def _dropped_path(self, unit: int) -> Path:
        return self.parts / f"{unit:08d}.dropped.jsonl"

    def unit_file(self, unit: int, suffix: str) -> Path:
        """A file of the stage's own beside unit ``unit``'s parts (e.g. ``.npy``): write it
        before :meth:`write_unit`, whose stats file marks the unit done."""
        if not suffix.startswith(".") or suffix in (".jsonl", ".stats.json", ".dropped.jsonl"):
            raise ValueError(f"{suffix!r}: a unit file's suffix starts with '.' and is not one of the parts'")
        return self.parts / f"{unit:08d}{suffix}"

    def done(self, unit: int) -> bool:
        needed = [self._stats_path(unit)] + ([self._records_path(unit)] if self.records else [])
        if self.drops:
            needed.append(self._dropped_path(unit))
        return all(p.exists() for p in needed)

    def done_units(self) -> set[int]:
        return {int(p.name.split(".")[0]) for p in self.parts.glob("*.stats.json") if self.done(int(p.name.split(".")[0]))}

    def write_unit(self, unit: int, result: UnitResult) -> None:
        stats = dict(result.stats)
        dropped = stats.pop("dropped", [])
        if dropped and not self.drops:
            raise ValueError(f"{self.output}: unit {unit} has drop records but the output keeps none")
        if self.records:
            write_jsonl(self._records_path(unit), result.records)
        elif result.records:
            raise ValueError(f"{self.output}: unit {unit} has records but the stage writes none")
        if self.drops:
            write_jsonl(self._dropped_path(unit), dropped)
        write_json(self._stats_path(unit), stats)

    def unit_stats(self, unit: int) -> JsonObj:
        return json.loads(self._stats_path(unit).read_text(encoding="utf-8"))

    def finalize(self, n_units: int, *, cleanup: bool = True) -> list[JsonObj]:
        """Concatenate units ``0..n_units-1`` into the output and their drop records into its
        drop file; returns their stats in order. Without ``cleanup`` the parts stay until
        :meth:`cleanup` (a stage reads its unit files first)."""
        missing = [u for u in range(n_units) if not self.done(u)]
        if missing:
            raise RuntimeError(f"{self.output}: cannot finalize, units not done: {missing[:10]}")
        stats = [self.unit_stats(unit) for unit in range(n_units)]
        if self.records:
            concat_files(self.output, [self._records_path(u) for u in range(n_units)])
        if self.drops:
            concat_files(dropped_path(self.output), [self._dropped_path(u) for u in range(n_units)])
        if cleanup:
            self.cleanup()
        return stats

    def cleanup(self) -> None:
        """Remove the parts directory (after the output is assembled)."""
        shutil.rmtree(self.parts, ignore_errors=True)
