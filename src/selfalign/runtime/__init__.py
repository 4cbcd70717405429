"""The runtime every stage runs on: the stage contract and its driver (:mod:`.driver`), resumable
unit output (:mod:`.resume`), counts and drop records (:mod:`.stats`), what is written beside an
artifact (:mod:`.finish`), sharding (:mod:`.shards`) and progress bars (:mod:`.progress`).

A stage module says what to do with its records; this package owns how a run of it is cut,
resumed, shown and recorded. See README, "Architecture".
"""

from __future__ import annotations

from .driver import UnitPlan, UnitRun, UnitStage, drive, drive_async, merge_units
from .finish import (
    DropSink,
    finish,
    finish_counts,
    interleave_drops,
    merge_extra,
    streamed_drops,
    write_drop_file,
)
from .progress import default_workers, progress, progress_bar
from .resume import ResumableOutput, UnitResult
from .shards import shard_bounds
from .stats import DETAIL_CAP_ENV, StageStats, cap_detail, detail_cap, drop_record

__all__ = [
    "DETAIL_CAP_ENV",
    "DropSink",
    "ResumableOutput",
    "StageStats",
    "UnitPlan",
    "UnitResult",
    "UnitRun",
    "UnitStage",
    "cap_detail",
    "default_workers",
    "detail_cap",
    "drive",
    "drive_async",
    "drop_record",
    "finish",
    "finish_counts",
    "interleave_drops",
    "merge_extra",
    "merge_units",
    "progress",
    "progress_bar",
    "shard_bounds",
    "streamed_drops",
    "write_drop_file",
]
