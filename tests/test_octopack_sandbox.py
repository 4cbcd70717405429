"""HumanEvalPack's languages in the sandbox: hostile programs per language are contained, and the
executors pass canonical solutions and fail buggy ones (a few tasks per language here; the full
table is ``selfalign octopack self-check``, recorded in benchmarks/README.md).

Needs gVisor and the toolchains (``scripts/setup.sh`` installs both); a missing one fails with
the command that provides it, never a skip.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import socket
import time
from pathlib import Path

import pytest
from workflow_utils import copy_workflow, run

from selfalign.octopack import humanevalpack, toolchains
from selfalign.octopack.execute import PackSandboxParams, run_programs

pytestmark = pytest.mark.sandbox

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "octopack"
TIMEOUTS = {"js": 5.0, "java": 20.0, "go": 20.0, "cpp": 20.0, "rust": 25.0}
MARGIN_S = 10.0
PROFILE = ["--profile", "profiles/tiny"]


@pytest.fixture(scope="module")
def params() -> PackSandboxParams:
    p = PackSandboxParams(timeouts=TIMEOUTS)
    try:
        toolchains.load(p.toolchain_dir())
    except toolchains.ToolchainError as exc:
        pytest.fail(str(exc))
    return p


def _hostile(language: str, case: str, target: str, port: int) -> str:
    """A program that exits 0 silently only if the hostile action worked."""
    if language == "js":
        body = {
            "loop": "while (true) {}",
            "fork": "const cp = require('child_process');\n"
            "for (;;) { try { cp.spawn(process.execPath, [__filename]); } catch (e) {} }",
            "write": f"require('fs').writeFileSync({target!r}, 'escaped');\n"
            "require('fs').writeFileSync('/usr/selfalign-escape', 'escaped');",
            "network": f"const s = require('net').connect({{ host: '127.0.0.1', port: {port} }});\n"
            "s.on('connect', () => { s.end('escaped'); });\n"
            "s.on('error', (e) => { console.error(String(e)); process.exit(1); });",
        }[case]
        return body + "\n"
    if language == "java":
        body = {
            "loop": "while (true) {}",
            "fork": "while (true) { try { new ProcessBuilder(System.getProperty(\"java.home\") + "
            "\"/bin/java\", \"-cp\", \".\", \"Main\").start(); } catch (Exception e) {} }",
            "write": f"java.nio.file.Files.writeString(java.nio.file.Path.of(\"{target}\"), \"escaped\");",
            "network": f"new java.net.Socket(\"127.0.0.1\", {port}).getOutputStream().write(1);",
        }[case]
        return (
            "public class Main {\n    public static void main(String[] args) throws Exception {\n"
            f"        {body}\n    }}\n}}\n"
        )
    if language == "go":
        imports, body = {
            "loop": ("", "for {}"),
            "fork": ('"os"\n    "os/exec"', "for { exec.Command(os.Args[0]).Start() }"),
            "write": ('"os"', f'if err := os.WriteFile("{target}", []byte("escaped"), 0644); err != nil {{ t.Fatal(err) }}'),
            "network": ('"net"', f'c, err := net.Dial("tcp", "127.0.0.1:{port}")\n'
                        '    if err != nil { t.Fatal(err) }\n    c.Write([]byte("escaped"))'),
        }[case]  # fmt: skip
        return f'package main\n\nimport (\n    "testing"\n    {imports}\n)\n\nfunc TestEscape(t *testing.T) {{\n    {body}\n}}\n'
    if language == "cpp":
        body = {
            "loop": "volatile int x = 0; while (true) { x++; }",
            "fork": "while (true) { fork(); }",
            "write": f'FILE *f = fopen("{target}", "w"); if (!f) return 1; fputs("escaped", f); fclose(f);',
            "network": "int s = socket(AF_INET, SOCK_STREAM, 0); sockaddr_in a{}; a.sin_family = AF_INET;"
            f" a.sin_port = htons({port}); a.sin_addr.s_addr = htonl(0x7f000001);"
            " if (connect(s, (sockaddr*)&a, sizeof a) != 0) return 1; write(s, \"x\", 1);",
        }[case]
        return (
            "#include <cstdio>\n#include <unistd.h>\n#include <sys/socket.h>\n#include <netinet/in.h>\n"
            f"int main() {{\n    {body}\n    return 0;\n}}\n"
        )
    if language == "rust":
        body = {
            "loop": "let mut x: u64 = 0; loop { x = x.wrapping_add(1); if x == u64::MAX { println!(\"{}\", x); } }",
            "fork": "loop { let _ = std::process::Command::new(std::env::current_exe().unwrap()).spawn(); }",
            "write": f'std::fs::write("{target}", "escaped").unwrap();',
            "network": f'use std::io::Write; std::net::TcpStream::connect("127.0.0.1:{port}").unwrap().write_all(b"x").unwrap();',
        }[case]
        return f"fn main(){{}}\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn escape() {{\n        {body}\n    }}\n}}\n"
    raise AssertionError(language)


CASES = ("loop", "fork", "write", "network")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hostile_programs_in_every_language_are_contained(params: PackSandboxParams, tmp_path: Path) -> None:
    """Per language: an infinite loop times out, a fork bomb ends within the limit, a write to a
    host path does not reach the host, a connection to a host listener never arrives. Each
    program would exit 0 silently (a pass) if its action worked."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    keys, items = [], []
    targets = {}
    for language in TIMEOUTS:
        for case in CASES:
            target = str(tmp_path / f"escape-{language}-{secrets.token_hex(4)}")
            targets[(language, case)] = target
            keys.append((language, case))
            items.append((language, _hostile(language, case, target, port)))
    try:
        started = time.monotonic()
        verdicts = run_programs(items, params)
        elapsed = time.monotonic() - started
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    by_key = dict(zip(keys, verdicts, strict=True))
    for (language, case), verdict in by_key.items():
        assert verdict.status != "pass", (language, case, verdict)
        assert verdict.status != "error", (language, case, verdict)  # the sandbox held
        assert verdict.seconds < TIMEOUTS[language] + MARGIN_S, (language, case, verdict.seconds)
        if case == "loop":
            assert verdict.status == "timeout", (language, verdict)
        if case == "write":
            assert not os.path.exists(targets[(language, case)])
        if case in ("write", "network"):  # they failed for the reason tried, not a compile error
            assert verdict.reason != "compile_error", (language, case, verdict.stderr_tail)
    assert not os.path.exists("/usr/selfalign-escape")
    # Both sandboxes ran 20 programs, 10 of which hit a limit: well under the sum of limits.
    assert elapsed < sum(TIMEOUTS.values()) * len(CASES)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_self_check_target_passes_canonical_and_fails_buggy_in_every_language(
    params: PackSandboxParams, tmp_path: Path
) -> None:
    """`snakemake --profile profiles/tiny octopack_selfcheck`: the pinned task files fetched
    (from the shared mirror, by content), then 3 tasks per language (octopack.selfcheck.limit)."""
    workdir = copy_workflow(tmp_path / "selfalign")
    result = run([*PROFILE, "octopack_selfcheck"], workdir, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:]
    data = workdir / "results" / "octopack" / "data"
    for language in humanevalpack.LANGUAGES:  # the pinned files, byte for byte the mirror's
        with gzip.open(SHARED / f"humanevalpack-{language}.jsonl.gz", "rb") as fh:
            assert (data / f"humanevalpack-{language}.jsonl").read_bytes() == fh.read()
    out = workdir / "results" / "tiny" / "octopack" / "selfcheck"
    summary = json.loads((out / "summary.json").read_text())
    for language in humanevalpack.LANGUAGES:
        entry = summary["languages"][language]
        assert entry["tasks"] == 3
        assert entry["canonical_pass"] == 3, (language, entry["exceptions"])
        assert entry["buggy_not_pass"] == 3, (language, entry["exceptions"])
    lines = (out / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == 6 * 3 * 2
    rows = [json.loads(line) for line in lines]
    assert [r["language"] for r in rows[::6]] == list(humanevalpack.LANGUAGES)
    meta = json.loads((out / "verdicts.jsonl.meta.json").read_text())
    assert meta["stage"] == "octopack.selfcheck" and meta["counts"]["programs"] == 36
    assert meta["counts"]["canonical_pass"] == 18 and meta["counts"]["buggy_not_pass"] == 18
    table = (out / "table.md").read_text()
    assert "| rust | 3 | 3/3 | 3/3 |" in table
    assert "None." in table  # no unexpected verdicts
