"""exec_mode release against the release's own execution_filter.py (0b19dbc).

tests/data/release/exec/passed.jsonl is what the release's script kept of input.jsonl (370
samples in its I->R shape: probes of its rules, the 16 few-shot responses, HumanEval+ canonical
solutions with their tests and the same with a planted bug), run unsandboxed with evalplus at
25e195e0 and numpy 1.26.4 (README beside it). The same samples under config.yaml's execution
settings, in gVisor, must pass and fail exactly as there.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import yaml

from selfalign.execution import ExecutionParams, run_execution

DATA = Path(__file__).parent / "data" / "release" / "exec"
REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.timeout(300), pytest.mark.sandbox]


def rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def paper_execution(**overrides: object) -> ExecutionParams:
    execution = yaml.safe_load((REPO / "config.yaml").read_text())["execution"]
    execution = {k: v for k, v in execution.items() if k != "shards"}
    assert execution["sample_site"] == "bundled"  # beside the running venv (scripts/setup.sh)
    return ExecutionParams.from_dict({**execution, "workers": 2, "records_per_unit": 64, **overrides})


def test_release_mode_keeps_exactly_what_the_release_kept(tmp_path: Path) -> None:
    source = tmp_path / "responses.jsonl"
    with gzip.open(DATA / "input.jsonl.gz", "rb") as src, open(source, "wb") as dst:
        shutil.copyfileobj(src, dst)
    kinds = {r["idx"]: r["kind"] for r in rows(DATA / "input.jsonl.gz")}
    release = {r["idx"] for r in rows(DATA / "passed.jsonl.gz")}

    stats = run_execution(source, tmp_path / "executed.jsonl", paper_execution(), show_progress=False)
    with open(tmp_path / "executed.jsonl", encoding="utf-8") as handle:
        ours = {json.loads(line)["idx"] for line in handle}
    assert sorted(kinds[i] for i in ours ^ release) == []
    assert (stats.n_in, stats.n_out, stats.drops["no_code"]) == (370, 183, 2)
    assert stats.extra["exec_mode"] == "release" and stats.extra["ids_from_line_numbers"] == 370
    assert any(name.startswith("numpy-1.26.4") for name in stats.extra["sample_packages"])
    # what the release's rules decide, by probe: its function-body exec, its guard, its exit rule
    for probe, passed in {
        "recursion": False, "helper": False, "unimported_os": True, "numpy": True,
        "numpy_testing": False, "open_write": False, "sys_exit0": False, "os_exit0": True,
    }.items():
        [idx] = [i for i, kind in kinds.items() if kind == f"probe:{probe}"]
        assert (idx in ours) is passed, probe

    # the corrected mode keeps the recursive and helper-calling solutions the release lost
    module = run_execution(source, tmp_path / "module.jsonl", paper_execution(exec_mode="module", sample_site=None),
                           show_progress=False)
    assert module.n_out > stats.n_out
