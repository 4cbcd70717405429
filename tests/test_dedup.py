from __future__ import annotations

from pathlib import Path

from conftest import stdlib_functions

from selfalign.records import read_jsonl, write_jsonl
from selfalign.seeds.dedup import DedupParams, run_dedup, shingles


def _run(tmp_path: Path, records: list[dict], workers: int = 1, **params) -> tuple[list[dict], list[dict]]:
    src, out, dup = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "dup.jsonl"
    write_jsonl(src, records)
    stats = run_dedup(src, out, dup, DedupParams(**params), workers=workers, show_progress=False)
    stats.check_balance()
    return read_jsonl(out), read_jsonl(dup)


def test_keeps_one_of_two_near_duplicates(tmp_path: Path) -> None:
    import inspect
    import textwrap

    original = inspect.getsource(textwrap.dedent)
    # the same function with a renamed local and an extra comment: a near duplicate
    variant = original.replace("margin", "common_margin").replace('"""', '"""  # copy', 1)
    kept, dropped = _run(tmp_path, [{"id": "a", "content": original}, {"id": "b", "content": variant}])
    assert [r["id"] for r in kept] == ["a"]
    assert dropped == [{"id": "b", "kept": "a"}]


def test_keeps_both_of_two_different_functions(tmp_path: Path) -> None:
    import colorsys
    import inspect

    a = inspect.getsource(colorsys.rgb_to_hls)
    b = inspect.getsource(colorsys.hsv_to_rgb)
    kept, dropped = _run(tmp_path, [{"id": "a", "content": a}, {"id": "b", "content": b}])
    assert [r["id"] for r in kept] == ["a", "b"] and dropped == []


def test_deterministic_across_workers_and_units(tmp_path: Path) -> None:
    records = stdlib_functions()
    # plant exact and near copies so that there is something to remove
    records += [{"id": r["id"] + "~copy", "content": r["content"] + "\n"} for r in records[:5]]
    records.sort(key=lambda r: r["id"])
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    kept1, dup1 = _run(tmp_path / "1", records, workers=1, records_per_unit=1000)
    kept2, dup2 = _run(tmp_path / "2", records, workers=2, records_per_unit=7)
    assert kept1 == kept2 and dup1 == dup2
    assert len(dup1) >= 5
    assert {d["id"] for d in dup1} >= {r["id"] + "~copy" for r in records[:5] if not r["id"].endswith("~copy")}


def test_resume_after_kill_reuses_finished_signature_units(tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    from selfalign.seeds import dedup

    records = stdlib_functions()
    src, out, dup = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "dup.jsonl"
    write_jsonl(src, records)
    params = DedupParams(records_per_unit=10)

    real_save = np.save
    calls = {"n": 0}

    def dying_save(handle, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        real_save(handle, arr)

    monkeypatch.setattr(dedup.np, "save", dying_save)
    try:
        run_dedup(src, out, dup, params, show_progress=False)
    except KeyboardInterrupt:
        pass
    assert not out.exists()
    parts = out.with_name(out.name + ".parts")
    assert len(list(parts.glob("*.npy"))) == 2

    monkeypatch.setattr(dedup.np, "save", real_save)
    run_dedup(src, out, dup, params, show_progress=False)
    resumed = out.read_bytes()
    out.unlink()
    run_dedup(src, out, dup, params, show_progress=False)
    assert out.read_bytes() == resumed
    assert not parts.exists()


def test_shingles_are_lowercased_alphanumeric_ngrams() -> None:
    assert shingles("def F(x): return X+1", 2) == {b"def f", b"f x", b"x return", b"return x", b"x 1"}
    assert shingles("a b", 5) == {b"a b"}
