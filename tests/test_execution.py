"""The execution filter stage on real code: HumanEval+ solutions, planted bugs, record shapes,
recursion (and upstream's exec-in-a-function behaviour), and resuming after a kill."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, shared_data

from selfalign.execution import ExecutionParams, extract_code, run_execution
from selfalign.records import RecordError, read_jsonl, write_jsonl

pytestmark = [pytest.mark.timeout(300), pytest.mark.sandbox]

PARAMS = {"backend": "gvisor", "timeout_s": 4, "memory_mb": 1024, "workers": 2, "records_per_unit": 16}


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def response(implementation: str, tests: str) -> str:
    """A response in the I->R layout: the parts upstream's sanitizer checks."""
    return (
        f"[Reasoning]\nThink.\n\n[Implementation]\n{fenced(implementation)}\n\n"
        f"[Explanation]\nIt works.\n\n[Tests]\n{fenced(tests)}"
    )


def humaneval() -> list[dict[str, Any]]:
    path = shared_data() / "evalplus" / "HumanEvalPlus-v0.1.9.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def humaneval_records(bug: bool = False) -> list[dict[str, Any]]:
    records = []
    for task in humaneval():
        solution = task["prompt"] + task["canonical_solution"]
        if bug:  # the function answers None: every task's tests compare real values
            solution = task["prompt"] + "    return None\n"
        tests = f"{task['test']}\ncheck({task['entry_point']})"
        records.append({"id": task["task_id"], "instruction": task["prompt"], "responses": [{"sample": 0, "response": response(solution, tests)}]})
    return records


def test_every_humaneval_plus_solution_passes_and_planted_bugs_fail(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_jsonl(good, humaneval_records())
    write_jsonl(bad, humaneval_records(bug=True))
    params = ExecutionParams.from_dict(PARAMS)
    passed = run_execution(good, tmp_path / "good-out.jsonl", params, show_progress=False)
    assert (passed.n_in, passed.n_out) == (164, 164), dict(passed.drops)
    failed = run_execution(bad, tmp_path / "bad-out.jsonl", params, show_progress=False)
    assert failed.n_out == 0 and failed.n_in == 164
    assert sum(failed.drops.values()) == 164
    assert failed.drops["fail:assertion"] > 150
    out = read_jsonl(tmp_path / "good-out.jsonl")
    assert out[0]["id"] == "HumanEval/0/0" and out[0]["source_id"] == "HumanEval/0"
    assert out[0]["execution"] == {"status": "pass", "reason": "ok", "time_limit_s": 4}
    assert "responses" not in out[0] and out[0]["response"].startswith("[Reasoning]")


def test_upstream_fewshot_responses_that_need_only_the_stdlib_pass(tmp_path: Path) -> None:
    from selfalign.generation.prompts import load_fewshot

    fewshot = load_fewshot(shared_data() / "upstream" / "self-ossinstruct-fewshot.txt")
    records = [
        {"id": f"ex{ex.number}", "instruction": ex.instruction, "response": ex.response}
        for ex in fewshot.pool("I->R")
    ]
    path = tmp_path / "fewshot.jsonl"
    write_jsonl(path, records)
    stats = run_execution(path, tmp_path / "out.jsonl", ExecutionParams.from_dict(PARAMS), show_progress=False)
    kept = {r["source_id"] for r in read_jsonl(tmp_path / "out.jsonl")}
    failed = sorted(set(r["id"] for r in records) - kept)
    # Examples that import third-party packages (numpy, torch, ...) cannot pass in a sandbox
    # with only the standard library; every other one must.
    for record in records:
        if record["id"] in failed:
            assert any(m in record["response"] for m in ("numpy", "torch", "pandas", "PIL", "requests", "cv2")), record["id"]
    assert stats.n_out >= len(records) - 4


def test_extract_code_keeps_only_blocks_that_parse() -> None:
    text = (
        "intro ```python inline``` not a block\n"
        + fenced("def f(x):\n    return x + 1")
        + "\n"
        + fenced("def broken(:\n    pass")
        + "\n"
        + fenced("assert f(1) == 2")
        + "\n```\nplain fence\n```\n"
    )
    assert extract_code(text) == "def f(x):\n    return x + 1\n\nassert f(1) == 2\n"
    assert extract_code("no code at all") == ""


def test_recursion_and_helpers_pass_unless_upstream_exec_is_asked_for(tmp_path: Path) -> None:
    code = "def helper(n):\n    return n * 2\n\ndef fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
    tests = "assert fact(5) == 120\nassert helper(3) == 6"
    path = tmp_path / "in.jsonl"
    write_jsonl(path, [{"id": "r", "instruction": "i", "responses": [{"sample": 3, "response": response(code, tests)}]}])
    ours = run_execution(path, tmp_path / "ours.jsonl", ExecutionParams.from_dict(PARAMS), show_progress=False)
    assert ours.n_out == 1
    assert read_jsonl(tmp_path / "ours.jsonl")[0]["id"] == "r/3"
    upstream = ExecutionParams.from_dict({**PARAMS, "exec_mode": "function"})
    theirs = run_execution(path, tmp_path / "theirs.jsonl", upstream, show_progress=False)
    assert theirs.n_out == 0 and dict(theirs.drops) == {"fail:exception:NameError": 1}


def test_record_shapes_and_bad_records(tmp_path: Path) -> None:
    ok = response("def f():\n    return 1", "assert f() == 1")
    path = tmp_path / "shapes.jsonl"
    write_jsonl(
        path,
        [
            {"id": "ours", "responses": [{"sample": 0, "response": ok}, {"sample": 1, "response": "no code"}]},
            {"id": "upstream", "instruction": "x", "parsing_result": [{"response": ok}]},
            {"id": "single", "response": ok},
        ],
    )
    stats = run_execution(path, tmp_path / "out.jsonl", ExecutionParams.from_dict(PARAMS), show_progress=False)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["ours/0", "upstream/0", "single/0"]
    assert (stats.n_in, stats.n_out, dict(stats.drops)) == (4, 3, {"no_code": 1})

    # The release's I->R output has no id: the line number stands in, stable for the file.
    release = tmp_path / "release.jsonl"
    write_jsonl(release, [{"instruction": "x", "parsing_result": [{"response": ok}]}, {"instruction": "y", "response": ok}])
    stats = run_execution(release, tmp_path / "rel-out.jsonl", ExecutionParams.from_dict(PARAMS), show_progress=False)
    assert [r["id"] for r in read_jsonl(tmp_path / "rel-out.jsonl")] == ["line000000001/0", "line000000002/0"]
    assert stats.extra["ids_from_line_numbers"] == 2

    mistyped = tmp_path / "mistyped.jsonl"
    write_jsonl(mistyped, [{"id": 7, "response": ok}])
    with pytest.raises(RecordError, match=r"mistyped\.jsonl:1: field 'id': must be a string, got int$"):
        run_execution(mistyped, tmp_path / "m-out.jsonl", ExecutionParams.from_dict(PARAMS), show_progress=False)

    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": "a", "response": ok}, {"id": "b", "parsing_result": [{"text": "x"}]}])
    with pytest.raises(RecordError) as caught:
        run_execution(bad, tmp_path / "bad-out.jsonl", ExecutionParams.from_dict(PARAMS), show_progress=False)
    assert f"{bad}:2" in str(caught.value)


def test_unsandboxed_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ValueError, match="allow_unsandboxed"):
        ExecutionParams.from_dict({**PARAMS, "backend": "none"})
    with pytest.raises(ValueError, match="unknown execution parameter"):
        ExecutionParams.from_dict({**PARAMS, "timeout": 3})


def test_a_killed_execution_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    slow = response("import time\ndef f():\n    time.sleep(0.3)\n    return 1", "assert f() == 1")
    failing = response("def f():\n    return 2", "assert f() == 1")
    records = [{"id": f"r{i:02d}", "responses": [{"sample": 0, "response": slow if i % 3 else failing}]} for i in range(16)]
    path = tmp_path / "in.jsonl"
    write_jsonl(path, records)
    params = json.dumps({**PARAMS, "workers": 1, "records_per_unit": 2})
    whole = tmp_path / "whole.jsonl"
    out = tmp_path / "killed.jsonl"
    base = [sys.executable, "-m", "selfalign.cli", "execute", "--params", params, "--input", str(path), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([*base, "--out", str(whole)], env=env, check=True, capture_output=True, timeout=120)

    process = subprocess.Popen([*base, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = out.with_name(out.name + ".parts")
    deadline = time.monotonic() + 60
    while len(list(parts.glob("*.stats.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    assert not out.exists() and len(list(parts.glob("*.stats.json"))) >= 2
    subprocess.run([*base, "--out", str(out)], env=env, check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == whole.read_bytes()
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["counts"] == {"in": 16, "out": 10, "dropped": 6}


def test_the_verdict_cache_runs_identical_code_once_and_changes_no_byte(tmp_path: Path) -> None:
    ok = response("def f():\n    return 1", "assert f() == 1")
    bad = response("def f():\n    return 2", "assert f() == 1")
    path = tmp_path / "responses.jsonl"
    write_jsonl(path, [
        {"id": "a", "responses": [{"sample": k, "response": r} for k, r in enumerate([ok, bad, ok, ok, bad])]},
        {"id": "b", "responses": [{"sample": 0, "response": ok}, {"sample": 1, "response": "no code"}]},
    ])
    outputs = {}
    for cache in (False, True):
        out = tmp_path / f"cache-{cache}" / "executed.jsonl"
        stats = run_execution(path, out, ExecutionParams.from_dict({**PARAMS, "verdict_cache": cache}), show_progress=False)
        outputs[cache] = (out.read_bytes(), (out.parent / "executed.dropped.jsonl").read_bytes(), dict(stats.drops))
        assert stats.extra["sandbox_runs"] == (2 if cache else 6) and stats.extra["verdict_cache"] is cache
    assert outputs[True] == outputs[False]
    assert outputs[True][2] == {"fail:assertion": 2, "no_code": 1}


@pytest.mark.parametrize("mode", ["module", "release"])
def test_a_sample_a_time_limit_stopped_runs_once_more_alone_and_that_verdict_is_final(
    mode: str, tmp_path: Path
) -> None:
    # The first run of sample "slow" takes 2 s, over the 1 s limit (as a busy machine can make a
    # quick test slow); its later runs are quick. With the re-check it is kept, and the sidecar
    # counts one re-check; without, it is dropped as the release's one run dropped it. A sample
    # that always loops is re-checked too and still dropped. Unsandboxed (backend none): the
    # marker that tells the first run from the second must outlive the sample's process.
    def slow_once(marker: Path) -> str:
        return response(
            f"import os, time\nif not os.path.exists({str(marker)!r}):\n    os.mkdir({str(marker)!r})\n"
            "    time.sleep(2)\n\ndef f():\n    return 1",
            "assert f() == 1",
        )

    loops = response("def f():\n    while True:\n        pass", "f()")
    reason = "timeout" if mode == "module" else "fail:exception:TimeoutException"
    for recheck in (True, False):
        path = tmp_path / f"responses-{recheck}.jsonl"
        write_jsonl(path, [{"id": "slow", "responses": [{"sample": 0, "response": slow_once(tmp_path / f"m-{recheck}")}]},
                           {"id": "loops", "responses": [{"sample": 0, "response": loops}]}])
        out = tmp_path / f"out-{recheck}" / "executed.jsonl"
        params = ExecutionParams.from_dict({**PARAMS, "backend": "none", "allow_unsandboxed": True, "timeout_s": 1,
                                            "exec_mode": mode, "recheck_time_limits": recheck})
        stats = run_execution(path, out, params, show_progress=False)
        kept = [r["id"] for r in read_jsonl(out)]
        if recheck:
            assert kept == ["slow/0"] and dict(stats.drops) == {reason: 1}
            assert stats.extra["rechecks"] == 2
        else:
            assert kept == [] and dict(stats.drops) == {reason: 2}
            assert stats.extra["rechecks"] == 0
