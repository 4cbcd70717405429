"""The stage contract's driver: units, resumption, stale parts, ordering, balance, unit files."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from selfalign.chain import dropped_path
from selfalign.records import JsonObj, read_jsonl
from selfalign.runtime import (
    ResumableOutput,
    StageStats,
    UnitPlan,
    UnitRun,
    drive,
    drive_async,
    finish,
    merge_units,
    streamed_drops,
)


class Killed(Exception):
    pass


@dataclass
class Toy:
    """Keeps even numbers, drops odd ones as ``odd``; a unit is ``per_unit`` numbers."""

    numbers: list[int]
    per_unit: int = 3
    key: str = "k1"
    kill_after: int | None = None  # raise after writing this many units
    reverse: bool = False  # write the pending units last to first
    processed: list[int] = field(default_factory=list)

    def plan(self) -> UnitPlan:
        return UnitPlan(stage="toy", version=1, key={"k": self.key}, total=len(self.numbers), per_unit=self.per_unit)

    def process(self, run: UnitRun) -> None:
        pending = run.pending or []
        for n, unit in enumerate(reversed(pending) if self.reverse else pending):
            if self.kill_after is not None and n == self.kill_after:
                raise Killed
            stats = StageStats()
            kept = []
            for i in run.plan.unit_range(unit):
                stats.n_in += 1
                value = self.numbers[i]
                if value % 2:
                    stats.drop("odd", id=f"n{i}", detail={"value": value})
                else:
                    kept.append({"id": f"n{i}", "value": value})
                    stats.n_out += 1
            stats.extra = {"seen": len(run.plan.unit_range(unit)), "by_unit": [unit]}
            self.processed.append(unit)
            run.write(unit, kept, stats)
            run.advance(len(run.plan.unit_range(unit)))

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        return merge_units(units)


NUMBERS = list(range(11))


def test_a_killed_run_resumes_with_nothing_lost_or_redone(tmp_path: Path) -> None:
    clean_out = tmp_path / "clean.jsonl"
    clean = drive(Toy(NUMBERS), clean_out, show_progress=False)
    assert [r["value"] for r in read_jsonl(clean_out)] == [0, 2, 4, 6, 8, 10]
    assert clean.counts() == {"in": 11, "out": 6, "dropped": 5}
    assert clean.extra == {"seen": 11, "by_unit": [0, 1, 2, 3]}
    assert [r["id"] for r in read_jsonl(dropped_path(clean_out))] == ["n1", "n3", "n5", "n7", "n9"]

    out = tmp_path / "out.jsonl"
    with pytest.raises(Killed):
        drive(Toy(NUMBERS, kill_after=2), out, show_progress=False)
    assert not out.exists() and (tmp_path / "out.jsonl.parts").is_dir()
    again = Toy(NUMBERS)
    stats = drive(again, out, show_progress=False)
    assert again.processed == [2, 3]  # units 0 and 1 were kept from the killed run
    assert out.read_bytes() == clean_out.read_bytes()
    assert dropped_path(out).read_bytes() == dropped_path(clean_out).read_bytes()
    assert stats.to_json() == clean.to_json()
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_parts_of_another_key_are_discarded(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(Killed):
        drive(Toy(NUMBERS, kill_after=2), out, show_progress=False)
    other = Toy(NUMBERS, key="k2")
    drive(other, out, show_progress=False)
    assert other.processed == [0, 1, 2, 3]


def test_units_written_out_of_order_land_in_unit_order(tmp_path: Path) -> None:
    ordered, shuffled = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    drive(Toy(NUMBERS), ordered, show_progress=False)
    stats = drive(Toy(NUMBERS, reverse=True), shuffled, show_progress=False)
    assert shuffled.read_bytes() == ordered.read_bytes()
    assert stats.extra["by_unit"] == [0, 1, 2, 3]  # summed in unit order, not completion order


def test_the_driver_refuses_bad_writes_and_unbalanced_counts(tmp_path: Path) -> None:
    class Outside(Toy):
        def process(self, run: UnitRun) -> None:
            run.write(run.plan.n_units, [], StageStats())

    with pytest.raises(ValueError, match="outside the plan"):
        drive(Outside(NUMBERS), tmp_path / "a.jsonl", show_progress=False)

    class Leaky(Toy):
        def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
            stats = merge_units(units)
            stats.n_in += 1  # a record that is neither kept nor dropped
            return stats

    with pytest.raises(AssertionError, match="record accounting is off"):
        drive(Leaky(NUMBERS), tmp_path / "b.jsonl", show_progress=False)

    class Again(Toy):
        def process(self, run: UnitRun) -> None:
            run.write(0, [], StageStats())

    out = tmp_path / "c.jsonl"
    with pytest.raises(Killed):
        drive(Toy(NUMBERS, kill_after=1), out, show_progress=False)
    with pytest.raises(ValueError, match="already done"):
        drive(Again(NUMBERS), out, show_progress=False)


def test_a_run_with_nothing_left_does_not_call_process(tmp_path: Path) -> None:
    class Untouchable(Toy):
        def process(self, run: UnitRun) -> None:
            raise AssertionError("process called with no unit left")

    stats = drive(Untouchable([]), tmp_path / "empty.jsonl", show_progress=False)
    assert stats.counts() == {"in": 0, "out": 0, "dropped": 0}
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


@dataclass
class Stream(Toy):
    """A stage that learns its input's length only by reading it (a streaming dataset)."""

    tell: bool = True

    def plan(self) -> UnitPlan:
        return UnitPlan(stage="stream", version=1, key={}, total=None, per_unit=self.per_unit)

    def process(self, run: UnitRun) -> None:
        if self.tell:
            run.set_total(len(self.numbers))
        super().process(run)


def test_a_plan_without_a_total_needs_the_stage_to_say_it(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    assert drive(Stream(NUMBERS), out, show_progress=False).counts() == {"in": 11, "out": 6, "dropped": 5}
    with pytest.raises(RuntimeError, match="did not say how many items"):
        drive(Stream(NUMBERS, tell=False), tmp_path / "t.jsonl", show_progress=False)


def test_unit_files_are_read_by_summarize_then_removed(tmp_path: Path) -> None:
    @dataclass
    class Squares:
        seen: list[int] = field(default_factory=list)

        def plan(self) -> UnitPlan:
            return UnitPlan(stage="squares", version=1, key={}, total=5, per_unit=2, drops=False, records=False)

        def process(self, run: UnitRun) -> None:
            for unit in run.pending or []:
                values = [i * i for i in run.plan.unit_range(unit)]
                run.unit_file(unit, ".json").write_text(json.dumps(values))
                run.write(unit, [], {"n_in": len(values), "n_out": len(values), "drops": {}})

        def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
            for unit in range(run.plan.n_units):
                self.seen += json.loads(run.unit_file(unit, ".json").read_text())
            return merge_units(units)

    stage = Squares()
    out = tmp_path / "sq.jsonl"
    drive(stage, out, show_progress=False)
    assert stage.seen == [0, 1, 4, 9, 16]
    assert not out.exists() and not (tmp_path / "sq.jsonl.parts").exists()
    with pytest.raises(ValueError, match="suffix"):
        ResumableOutput(tmp_path / "x.jsonl", "fp").unit_file(0, ".stats.json")  # the done marker's name


def test_an_async_process_runs_under_drive_async_only(tmp_path: Path) -> None:
    class Async(Toy):
        async def process(self, run: UnitRun) -> None:  # type: ignore[override]
            await asyncio.sleep(0)
            Toy.process(self, run)

    with pytest.raises(TypeError, match="drive_async"):
        drive(Async(NUMBERS), tmp_path / "a.jsonl", show_progress=False)
    out = tmp_path / "b.jsonl"
    stats = asyncio.run(drive_async(Async(NUMBERS), out, show_progress=False))
    assert stats.counts() == {"in": 11, "out": 6, "dropped": 5}
    assert len(read_jsonl(out)) == 6


def test_streamed_drops_are_counted_and_checked_like_any_other(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    out.write_text("")
    stats = StageStats(n_in=2)
    with streamed_drops(out, stats) as drops:
        drops.drop("a", "dup", {"duplicate_of": "b"})
        drops.drop("c", "dup")
    assert stats.drops == {"dup": 2} and stats.dropped_written
    finish(out, stats, stage="toy", inputs=[], params={}, started=None, drop_file=True)
    meta = json.loads((tmp_path / "x.jsonl.meta.json").read_text())
    assert meta["dropped"]["records"] == 2
    stats.drops["dup"] += 1  # a count the drop file does not back
    with pytest.raises(AssertionError, match="does not name its record"):
        finish(out, stats, stage="toy", inputs=[], params={}, started=None, drop_file=True)
