"""The high-quality subset stage: return check, autoimport, Pyright, and its failure handling.

Real Pyright runs cost a couple of seconds each, so only a few tests use it (in batches); the
retry, bisection, timeout and resume paths use a small fake Pyright script instead, which
speaks Pyright's JSON and fails on demand.
"""

from __future__ import annotations

import colorsys
import inspect
import json
import logging
import os
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import stdlib_functions

from selfalign.records import RecordError, read_jsonl, write_jsonl
from selfalign.runtime.resume import ResumableOutput
from selfalign.seeds import quality
from selfalign.seeds.quality import (
    QualityParams,
    has_return_value,
    infer_imports,
    pyright_version,
    run_quality,
    typecheck,
)

# A fake Pyright. Its own options come first, then the ones quality.py passes. It logs each
# batch size to calls.log; --crash-once fails the first run, --poison fails every batch with a
# file containing POISON, --hang starts a sleeping child (its pid in child.pid) and sleeps.
# Otherwise it reports one error per file containing "undefined_name", like Pyright would.
FAKE_PYRIGHT = r"""
import json, os, subprocess, sys, time
from pathlib import Path

state = Path(sys.argv[1])
args = sys.argv[2:]
if "--version" in args:
    print("pyright 0.0.0-fake")
    sys.exit(0)
files = [a for a in args if a.endswith(".py")]
with open(state / "calls.log", "a") as log:
    log.write(f"{len(files)}\n")
if "--crash-once" in args and not (state / "crashed").exists():
    (state / "crashed").touch()
    print("Error: something broke inside node", file=sys.stderr)
    sys.exit(2)
if "--poison" in args and any("POISON" in Path(f).read_text() for f in files):
    print("<<< not json >>>")
    sys.exit(1)
if "--hang" in args:
    child = subprocess.Popen(["sleep", "300"])
    (state / "child.pid").write_text(str(child.pid))
    time.sleep(300)
diagnostics = [
    {"file": os.path.abspath(f), "severity": "error", "message": "undefined", "rule": "x"}
    for f in files
    if "undefined_name" in Path(f).read_text()
]
diagnostics.append({"file": os.path.abspath(files[0]), "severity": "warning", "message": "w"})
summary = {"filesAnalyzed": len(files), "errorCount": len(diagnostics) - 1}
print(json.dumps({"version": "0.0.0-fake", "generalDiagnostics": diagnostics, "summary": summary}))
sys.exit(1 if len(diagnostics) > 1 else 0)
"""


@pytest.fixture
def fake_state(tmp_path: Path) -> Path:
    state = tmp_path / "fake-pyright"
    state.mkdir()
    (state / "fake_pyright.py").write_text(FAKE_PYRIGHT, encoding="utf-8")
    return state


def fake_command(state: Path, *options: str) -> list[str]:
    return [sys.executable, str(state / "fake_pyright.py"), str(state), *options]


def calls(state: Path) -> list[int]:
    """The batch size of every fake Pyright run so far."""
    log = state / "calls.log"
    return [int(n) for n in log.read_text().split()] if log.exists() else []


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch, fake_state: Path):
    """Make run_quality use the fake Pyright with the given options."""

    def install(*options: str) -> Path:
        monkeypatch.setattr(quality, "PYRIGHT_COMMAND", fake_command(fake_state, *options))
        return fake_state

    return install


def source(func: Any) -> str:
    return textwrap.dedent(inspect.getsource(func)).rstrip("\n")


def records_file(path: Path, records: list[dict[str, Any]]) -> Path:
    write_jsonl(path, records)
    return path


def seed_records() -> list[dict[str, Any]]:
    """Real stdlib functions (most return a value) plus a few with a known fate."""
    records = [{**r, "origin": {"n": i}} for i, r in enumerate(stdlib_functions())][:14]
    records.append({"id": "z/needs_re", "content": NEEDS_RE, "origin": {"n": 98}})
    records.append({"id": "z/no_return", "content": NO_RETURN, "origin": {"n": 99}})
    return records


NEEDS_RE = '''def words(text):
    """Split text into words."""
    return re.compile(r"\\w+").findall(text)'''

NO_RETURN = '''def log_it(message):
    """Print a message; returns nothing."""
    print(message)
    return'''

UNDEFINED = '''def broken(x):
    """Uses a name that exists nowhere."""
    return undefined_name(x) + 1'''


# ------------------------------------------------------------------------------ parameters


def test_params_defaults_and_unknown_keys() -> None:
    params = QualityParams.from_dict({"pyright_batch_size": 10})
    assert params.pyright_batch_size == 10
    assert params.require_return and params.infer_imports
    assert (params.autoimport_timeout_s, params.pyright_timeout_s, params.pyright_retries) == (
        10.0,
        120.0,
        2,
    )
    with pytest.raises(ValueError, match="pyright_batchsize, typo"):
        QualityParams.from_dict({"pyright_batchsize": 10, "typo": 1})
    with pytest.raises(ValueError, match="seeds.quality.pyright_batch_size must be >= 1, got 0"):
        QualityParams.from_dict({"pyright_batch_size": 0})


# ---------------------------------------------------------------------------- return check


def test_has_return_value() -> None:
    assert has_return_value(source(colorsys.rgb_to_yiq))
    assert has_return_value(source(textwrap.dedent))
    # bare returns and no return at all do not count; neither do returns in strings
    assert not has_return_value(NO_RETURN)
    assert not has_return_value(source(shutil.copyfileobj))
    assert not has_return_value('def f():\n    """return x"""\n    # return y\n    pass')
    # a value returned by a nested function counts, as it did upstream
    assert has_return_value("def f():\n    def g():\n        return 1\n    g()\n    return")
    assert has_return_value("def f():\n    return (\n    )")
    # tree-sitter still finds the return in code that does not fully parse
    assert has_return_value("def f(x):\n    print x\n    return x")


# ------------------------------------------------------------------------------- autoimport


def test_infer_imports_adds_missing_import() -> None:
    code, failure = infer_imports(NEEDS_RE, timeout_s=10)
    assert failure is None
    assert code.startswith("import re\n")
    assert code.endswith(NEEDS_RE)
    clean = source(colorsys.rgb_to_yiq)
    assert infer_imports(clean, timeout_s=10) == (clean, None)


def test_infer_imports_timeout_keeps_code() -> None:
    assert infer_imports(NEEDS_RE, timeout_s=1e-6) == (NEEDS_RE, "timeout")


def test_stuck_autoimport_worker_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that outlives its alarm kills the pool; the calls after it run on a fresh one.

    A grace of minus the alarm makes the parent give up on each call at once (a zero wait),
    before autoimport (milliseconds) can answer: every call takes the hard-timeout path. (A
    0.1 ms wait was flaky: the waiting thread may be descheduled for milliseconds and then
    find the answer there.)
    """
    codes = [source(textwrap.dedent), source(textwrap.indent), NEEDS_RE]
    monkeypatch.setattr(quality, "AUTOIMPORT_HARD_GRACE_S", -10.0)
    with quality._ImportFixer(2, timeout_s=10.0) as fixer:
        assert fixer.fix_many(codes) == [(code, "hard_timeout") for code in codes]
        monkeypatch.setattr(quality, "AUTOIMPORT_HARD_GRACE_S", 10.0)
        fixed = fixer.fix_many(codes)
    assert [failure for _, failure in fixed] == [None, None, None]
    assert fixed[2][0] == "import re\n\n\n" + NEEDS_RE


# ---------------------------------------------------------------------------- real Pyright


def test_typecheck_with_real_pyright() -> None:
    """One real Pyright run over functions with known verdicts."""
    clean = source(colorsys.rgb_to_yiq)
    codes = [
        clean,
        UNDEFINED,
        "import surely_not_an_installed_package\n\n\ndef f():\n"
        "    return surely_not_an_installed_package.x",
        # six is not installed, but Pyright bundles its stubs: only a warning
        "import six\n\n\ndef g():\n    return six.PY3",
        # numpy resolves through --pythonpath: it is installed in this environment
        "import numpy as np\n\n\ndef h():\n    return np.zeros(3)",
        "def f(x: int) -> str:\n    return x",
        clean,
    ]
    counts = typecheck(codes, QualityParams())
    assert counts[0] == 0 and counts[-1] == 0
    assert counts[1] == 1
    assert counts[2] == 1
    assert counts[3] == 0
    assert counts[4] == 0
    assert counts[5] == 1
    assert typecheck([], QualityParams()) == []
    assert quality.pyright_command()[0].startswith(str(Path(sys.executable).parent))
    assert re.fullmatch(r"\d+\.\d+\.\d+", pyright_version())


def test_run_quality_end_to_end(tmp_path: Path) -> None:
    records = seed_records()
    records.append({"id": "z/undefined", "content": UNDEFINED, "origin": {"n": 100}})
    src = records_file(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    stats = run_quality(src, out, QualityParams(), workers=2, show_progress=False)
    kept = read_jsonl(out)
    kept_ids = [r["id"] for r in kept]
    assert kept_ids == [r["id"] for r in records if r["id"] in set(kept_ids)]  # input order
    by_id = {r["id"]: r for r in kept}
    assert by_id["z/needs_re"]["content"] == "import re\n\n\n" + NEEDS_RE
    assert by_id["z/needs_re"]["origin"] == {"n": 98}
    assert "z/no_return" not in by_id and "z/undefined" not in by_id
    assert stats.n_in == len(records) and stats.n_out == len(kept)
    assert stats.drops["no_return"] >= 1
    assert stats.drops["pyright_error"] >= 1
    assert "pyright_failed" not in stats.drops
    stats.check_balance()
    assert stats.extra["pyright_python"] == sys.executable
    assert stats.extra["pyright_version"] == pyright_version()
    assert stats.extra["pyright_failed_ids"] == []
    assert not out.with_name(out.name + ".parts").exists()


# ------------------------------------------------------------------- Pyright failure handling


def test_crash_once_is_retried(tmp_path: Path, use_fake, caplog: pytest.LogCaptureFixture) -> None:
    state = use_fake("--crash-once")
    records = seed_records()
    src = records_file(tmp_path / "in.jsonl", records)
    params = QualityParams(infer_imports=False)
    no_return = sum(not has_return_value(r["content"]) for r in records)
    with caplog.at_level(logging.WARNING, logger="selfalign.seeds.quality"):
        stats = run_quality(src, tmp_path / "out.jsonl", params, show_progress=False)
    assert stats.drops == {"no_return": no_return}
    assert stats.n_out == len(records) - no_return
    assert stats.extra["pyright_retries"] == 1
    assert stats.extra["pyright_failed_ids"] == []
    assert calls(state) == [len(records) - no_return] * 2
    assert any("exit code 2" in m and "retry 1 of 2" in m for m in caplog.messages)


def test_poison_function_is_isolated_by_bisection(
    tmp_path: Path, use_fake, caplog: pytest.LogCaptureFixture
) -> None:
    state = use_fake("--poison")
    records = [{**r, "origin": {}} for r in stdlib_functions()][:7]
    records.insert(3, {"id": "p/poison", "content": "def p():\n    return 'POISON'"})
    src = records_file(tmp_path / "in.jsonl", records)
    params = QualityParams(infer_imports=False, require_return=False, pyright_retries=1)
    with caplog.at_level(logging.WARNING, logger="selfalign.seeds.quality"):
        stats = run_quality(src, tmp_path / "out.jsonl", params, show_progress=False)
    assert stats.drops == {"pyright_failed": 1}
    assert stats.extra["pyright_failed_ids"] == ["p/poison"]
    kept = [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert kept == [r["id"] for r in records if r["id"] != "p/poison"]
    # 8 -> 4 -> 2 -> 1 (the poison is 4th): each poisoned batch is tried twice, each clean
    # half once, depth first
    assert calls(state) == [8, 8, 4, 4, 2, 2, 2, 1, 1, 1, 4]
    assert stats.extra["pyright_bisections"] == 3
    assert sum("bisecting" in m for m in caplog.messages) == 3
    assert any("unparsable JSON" in m for m in caplog.messages)
    assert any("p/poison" in m and "pyright_failed" in m for m in caplog.messages)


def test_hanging_pyright_is_killed_in_bounded_time(fake_state: Path) -> None:
    params = QualityParams(pyright_timeout_s=1.0, pyright_retries=1)
    started = time.monotonic()
    counts = typecheck(
        [source(colorsys.rgb_to_yiq)], params, command=fake_command(fake_state, "--hang")
    )
    elapsed = time.monotonic() - started
    assert counts == [None]
    assert calls(fake_state) == [1, 1]
    assert elapsed < 15
    # the whole process group went, including the child the fake started
    pid = int((fake_state / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail(f"pyright's child process {pid} survived the timeout")


def test_fake_errors_are_drops_not_failures(tmp_path: Path, use_fake) -> None:
    """Exit code 1 with errors is a normal verdict: the function goes, nothing is retried."""
    use_fake()
    records = seed_records()
    records.append({"id": "z/undefined", "content": UNDEFINED})
    src = records_file(tmp_path / "in.jsonl", records)
    params = QualityParams(infer_imports=False)
    no_return = sum(not has_return_value(r["content"]) for r in records)
    stats = run_quality(src, tmp_path / "out.jsonl", params, show_progress=False)
    assert stats.drops == {"no_return": no_return, "pyright_error": 1}
    assert stats.extra["pyright_retries"] == 0


# ------------------------------------------------------------ resume, determinism, sharding


class Killed(Exception):
    """Stands in for the process being killed."""


def test_resume_after_kill_gives_identical_bytes(
    tmp_path: Path, use_fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = use_fake()
    records = seed_records()
    src = records_file(tmp_path / "in.jsonl", records)
    params = QualityParams(pyright_batch_size=4)  # 16 records: 4 units
    reference = tmp_path / "reference.jsonl"
    ref_stats = run_quality(src, reference, params, show_progress=False)
    runs_uninterrupted = len(calls(state))

    out = tmp_path / "out.jsonl"
    write_unit = ResumableOutput.write_unit

    def write_then_die(self: ResumableOutput, unit: int, result: Any) -> None:
        write_unit(self, unit, result)
        if unit == 1:
            raise Killed

    monkeypatch.setattr(ResumableOutput, "write_unit", write_then_die)
    with pytest.raises(Killed):
        run_quality(src, out, params, show_progress=False)
    assert not out.exists()
    monkeypatch.setattr(ResumableOutput, "write_unit", write_unit)
    before = len(calls(state))
    stats = run_quality(src, out, params, show_progress=False)
    assert len(calls(state)) - before == runs_uninterrupted - 2  # units 0 and 1 not redone
    assert out.read_bytes() == reference.read_bytes()
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids))
    assert stats.counts() == ref_stats.counts() and stats.drops == ref_stats.drops
    assert stats.extra["units_resumed"] == 2


def test_output_independent_of_workers_and_shards(tmp_path: Path, use_fake) -> None:
    use_fake()
    records = seed_records()
    records.append({"id": "z/undefined", "content": UNDEFINED})
    src = records_file(tmp_path / "in.jsonl", records)
    params = QualityParams(pyright_batch_size=3)
    one = tmp_path / "one.jsonl"
    run_quality(src, one, params, workers=1, show_progress=False)
    many = tmp_path / "many.jsonl"
    run_quality(src, many, params, workers=3, show_progress=False)
    assert many.read_bytes() == one.read_bytes()
    parts = []
    for shard in range(3):
        part = tmp_path / f"shard-{shard}.jsonl"
        run_quality(src, part, params, shard=shard, num_shards=3, show_progress=False)
        parts.append(part.read_bytes())
    assert b"".join(parts) == one.read_bytes()


def test_autoimport_timeouts_keep_code_and_are_counted(tmp_path: Path, use_fake) -> None:
    use_fake()
    records = [{"id": "a", "content": NEEDS_RE}, {"id": "b", "content": NO_RETURN}]
    src = records_file(tmp_path / "in.jsonl", records)
    params = QualityParams(autoimport_timeout_s=1e-6)
    stats = run_quality(src, tmp_path / "out.jsonl", params, show_progress=False)
    assert read_jsonl(tmp_path / "out.jsonl") == [records[0]]
    assert stats.extra["autoimport_failed"] == 1
    assert stats.extra["autoimport_errors"] == {"timeout": 1}


# ------------------------------------------------------------------------------ bad input


def test_malformed_input_stops_with_file_and_line(tmp_path: Path, use_fake) -> None:
    use_fake()
    good = json.dumps({"id": "a", "content": NEEDS_RE})
    src = tmp_path / "in.jsonl"
    src.write_text(good + "\n" + json.dumps({"id": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as info:
        run_quality(src, tmp_path / "out.jsonl", QualityParams(), show_progress=False)
    assert (info.value.path, info.value.line, info.value.field) == (str(src), 2, "content")
    assert f"{src}:2:" in str(info.value)

    src.write_text(good + "\n" + good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"in\.jsonl:3: not valid JSON"):
        run_quality(src, tmp_path / "out.jsonl", QualityParams(), show_progress=False)

    src.write_text(json.dumps({"id": "s", "content": "def f():\n    return '\ud800'"}) + "\n")
    with pytest.raises(RecordError, match="not encodable") as info:
        run_quality(src, tmp_path / "out.jsonl", QualityParams(), show_progress=False)
    assert (info.value.line, info.value.field) == (1, "content")
