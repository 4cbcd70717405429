"""The stage contract and its driver: one owner for units, fingerprint, resumption and progress.

A long stage cuts its input into numbered **units** of a fixed number of items (records,
requests, tasks) and declares, as a :class:`UnitStage`:

- :meth:`~UnitStage.plan`: what this run covers (items, items per unit) and everything the
  units' output depends on (input hashes, params, tool versions), decided before any work;
- :meth:`~UnitStage.process`: do the units the driver says are left, handing each finished
  unit (its records, its counts and drop records) to :meth:`UnitRun.write` in any order, on
  whatever pool, thread or event loop the stage needs;
- :meth:`~UnitStage.summarize`: sum the units' counts up (by default :func:`merge_units`).

:func:`drive` (or :func:`drive_async`) owns the rest: the parts directory keyed by the
fingerprint (stale parts are discarded, :class:`~selfalign.runtime.resume.ResumableOutput`),
which units a killed run already finished, the progress bar, assembling the parts into the
output and its drop file in unit order, and the record balance. The sidecar, the drop file's
check and the explain index are written after it by :func:`selfalign.runtime.finish.finish`.

The split is datatrove's (a step says what to do with its data, the executor owns ranks,
completion and stats), kept to what a JSONL chain needs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from tqdm import tqdm

from ..records import JsonObj, fingerprint
from .finish import merge_extra
from .progress import progress_bar
from .resume import ResumableOutput, UnitResult
from .stats import StageStats

log = logging.getLogger("selfalign")


@dataclass(frozen=True)
class UnitPlan:
    """What one run of a stage covers, decided before any work.

    ``key`` is everything the units' output depends on besides the code's ``version`` (input
    hashes, shard, params, tool versions): a rerun with a different key discards the parts.
    """

    stage: str
    version: int | str
    key: Mapping[str, Any]
    #: items (records, requests, tasks) this run covers; None: known only once the input is read
    #: (a streaming dataset), and then set by the stage's process (:meth:`UnitRun.set_total`)
    total: int | None
    per_unit: int  # items per unit (the last unit may hold fewer)
    drops: bool = True  # the stage drops records: units carry drop records
    records: bool = True  # units carry output records; False: stats and unit files only
    balances: bool = True  # n_in == n_out + dropped (extraction counts files in, functions out)
    desc: str = ""
    item: str = "rec"  # what the progress bar counts

    def __post_init__(self) -> None:
        if self.per_unit < 1:
            raise ValueError(f"{self.stage}: items per unit must be >= 1, got {self.per_unit}")
        if self.total is not None and self.total < 0:
            raise ValueError(f"{self.stage}: a negative number of items ({self.total})")

    @property
    def n_units(self) -> int:
        if self.total is None:
            raise ValueError(f"{self.stage}: the number of units is not known before the input is read")
        return -(-self.total // self.per_unit)

    def unit_range(self, unit: int) -> range:
        """The items of ``unit``, counted from the run's first item."""
        if self.total is None:
            raise ValueError(f"{self.stage}: unit sizes are not known before the input is read")
        lo = unit * self.per_unit
        return range(lo, min(self.total, lo + self.per_unit))

    def fingerprint(self) -> str:
        return fingerprint({"stage": self.stage, "version": self.version, "per_unit": self.per_unit,
                            "total": self.total, "key": dict(self.key)})


@dataclass
class UnitRun:
    """The driver's side of one run: which units are left, where a finished unit goes, the bar."""

    output: Path
    plan: UnitPlan
    work: ResumableOutput
    done: frozenset[int]
    bar: tqdm = field(repr=False)

    @property
    def pending(self) -> list[int] | None:
        """The units left to do, in order; None while the number of units is not known."""
        if self.plan.total is None:
            return None
        return [u for u in range(self.plan.n_units) if u not in self.done]

    def set_total(self, total: int) -> None:
        """The number of items, once a stage whose plan could not say has read its input."""
        if self.plan.total is not None and self.plan.total != total:
            raise ValueError(f"{self.output}: the plan said {self.plan.total} items, the input has {total}")
        self.plan = replace(self.plan, total=total)
        self.bar.total = total
        self.bar.refresh()

    def write(self, unit: int, records: Sequence[JsonObj], stats: StageStats | JsonObj) -> None:
        """A finished unit: its records (in input order) and its counts (with its drop records)."""
        if unit < 0 or (self.plan.total is not None and unit >= self.plan.n_units):
            raise ValueError(f"{self.output}: unit {unit} is outside the plan's {self.plan.n_units}")
        if unit in self.done:
            raise ValueError(f"{self.output}: unit {unit} was already done before this run")
        summary = stats.to_json() if isinstance(stats, StageStats) else dict(stats)
        self.work.write_unit(unit, UnitResult(list(records), summary))

    def unit_file(self, unit: int, suffix: str) -> Path:
        """Where a stage keeps a file of its own for ``unit`` (write it before :meth:`write`)."""
        return self.work.unit_file(unit, suffix)

    def advance(self, n: int = 1) -> None:
        """Move the progress bar on by ``n`` items."""
        self.bar.update(n)


class UnitStage(Protocol):
    """A stage the driver can run (see the module's docstring)."""

    def plan(self) -> UnitPlan: ...

    def process(self, run: UnitRun) -> None | Awaitable[None]: ...

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats: ...


def merge_units(units: Sequence[JsonObj]) -> StageStats:
    """The units' counts and drop records added up in unit order; their ``extra`` merged by
    :func:`~selfalign.runtime.finish.merge_extra` (numbers add, lists concatenate, dicts merge)."""
    stats = StageStats()
    for summary in units:
        stats.merge(StageStats.from_json(summary))
    stats.extra = merge_extra([u.get("extra") or {} for u in units]) or {}
    return stats


class _Driver:
    def __init__(self, stage: UnitStage, output: str | os.PathLike[str], show_progress: bool) -> None:
        self.stage = stage
        plan = stage.plan()
        work = ResumableOutput(output, plan.fingerprint(), drops=plan.drops, records=plan.records)
        if plan.total is None:
            done = frozenset(work.done_units())
            initial = 0
            if done:
                log.info("%s: resuming, %d unit(s) already done", output, len(done))
        else:
            done = frozenset(u for u in work.done_units() if u < plan.n_units)
            initial = sum(len(plan.unit_range(u)) for u in done)
            if done:
                log.info("%s: resuming, %d of %d unit(s) already done", output, len(done), plan.n_units)
        bar = progress_bar(desc=plan.desc or plan.stage, total=plan.total, unit=plan.item, initial=initial,
                           enabled=show_progress)
        self.run = UnitRun(Path(output), plan, work, done, bar)

    def __enter__(self) -> UnitRun:
        return self.run

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.run.bar.close()

    def result(self) -> StageStats:
        run = self.run
        if run.plan.total is None:
            raise RuntimeError(f"{run.output}: the stage read its input but did not say how many items it had")
        units = run.work.finalize(run.plan.n_units, cleanup=False)
        stats = self.stage.summarize(units, run)  # may read its unit files (UnitRun.unit_file)
        run.work.cleanup()
        if run.plan.balances:
            stats.check_balance()
        stats.dropped_written = run.plan.drops  # finalize wrote the units' drop records
        return stats


def drive(stage: UnitStage, output: str | os.PathLike[str], *, show_progress: bool = True) -> StageStats:
    """Run ``stage`` into ``output``, resuming a killed run's finished units; its summed counts."""
    driver = _Driver(stage, output, show_progress)
    with driver as run:
        if run.pending is None or run.pending:
            outcome = stage.process(run)
            if outcome is not None:
                close = getattr(outcome, "close", None)
                if close is not None:
                    close()  # a coroutine never started: no "never awaited" warning
                raise TypeError(f"{type(stage).__name__}.process is a coroutine: use drive_async")
    return driver.result()


async def drive_async(stage: UnitStage, output: str | os.PathLike[str], *, show_progress: bool = True) -> StageStats:
    """:func:`drive` for a stage whose :meth:`~UnitStage.process` is a coroutine."""
    driver = _Driver(stage, output, show_progress)
    with driver as run:
        if run.pending is None or run.pending:
            outcome = stage.process(run)
            if outcome is not None:
                await outcome
    return driver.result()
