"""How each language's test program is compiled and run inside the sandbox.

The commands are the harness's (``code_eval_octopack``'s ``execute.py``): ``node test.js``;
``javac Main.java`` then ``java -cp . Main``; ``go test main_test.go``; ``g++ -std=c++11 test.cpp
-lcrypto -lssl`` then ``./a.out``; Rust's ``cargo test`` as the ``rustc --test`` it runs, against
prebuilt crates (see ``toolchains``). Python runs as a module in the sandbox's own interpreter,
as every other Python sample does, with the sample packages (numpy, which the harness's import
helper imports) on its path. Each program runs as one sample: compilation happens inside the
sandbox, under the sample's limits and wall clock.

Differences in how, not what: the JVM runs with the serial collector and C1 only (start-up
under gVisor's ptrace platform; results do not depend on them); rustc writes no debug info;
``javac`` is not retried on a timeout (the sandbox's deadline covers the whole program).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..sandbox.core import Program
from .humanevalpack import TIMEOUT_S
from .toolchains import Toolchains

JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
SOURCE_NAME = {
    "js": "test.js", "java": "Main.java", "go": "main_test.go", "cpp": "test.cpp",
    "rust": "test.rs", "python": "test.py",
}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """Per-language limits that differ from the sandbox's Python defaults."""

    timeout_s: float
    memory_bytes: int | None = None
    nproc: int | None = None


LIMITS = {
    "python": Limits(TIMEOUT_S["python"]),
    "js": Limits(TIMEOUT_S["js"], memory_bytes=16 << 30, nproc=64),
    "java": Limits(TIMEOUT_S["java"], memory_bytes=16 << 30, nproc=128),
    "go": Limits(TIMEOUT_S["go"], memory_bytes=16 << 30, nproc=256),
    "cpp": Limits(TIMEOUT_S["cpp"], memory_bytes=4 << 30, nproc=64),
    "rust": Limits(TIMEOUT_S["rust"], memory_bytes=16 << 30, nproc=128),
}
"""Node, the JVM, Go and rustc reserve address space far beyond what they use, so RLIMIT_AS is
raised for them; the memory that counts is capped by the sandbox's cgroup limit
(``sandbox_memory_mb``). Their threads and the Go tool's subprocesses count against RLIMIT_NPROC."""


def program(language: str, source: str, tc: Toolchains) -> Program:
    """The sandbox program that compiles and runs ``source`` (a whole test program)."""
    name = SOURCE_NAME[language]
    files = {name: source}
    env: dict[str, str] = {}
    copy: list[list[str]] = []
    steps: list[dict[str, Any]]
    if language == "js":
        env["NODE_PATH"] = str(tc.root / tc.manifest["node"]["node_path"])
        # HumanEval-X's rule (CodeGeeX, code_eval_octopack): a JavaScript program passes when it
        # prints nothing; its tests are console.assert calls, which print and exit 0.
        steps = [{"argv": [tc.tool("node"), name], "stage": "run", "fail_on_output": True}]
    elif language == "java":
        steps = [
            {"argv": [tc.tool("javac"), *(f"-J{f}" for f in JVM_FLAGS), name], "stage": "compile"},
            {"argv": [tc.tool("java"), *JVM_FLAGS, "-cp", ".", "Main"], "stage": "run"},
        ]
    elif language == "go":
        env.update(
            GO111MODULE="off",
            GOPATH=str(tc.root / tc.manifest["go"]["gopath"]),
            GOCACHE="{workdir}/.gocache",
            GOFLAGS="",
            CGO_ENABLED="0",
        )
        copy.append([str(tc.root / tc.manifest["go"]["cache"]), ".gocache"])
        # `go test` compiles, vets and runs; a compile error and a failing test both exit 1.
        steps = [{"argv": [tc.tool("go"), "test", f"-timeout={int(TIMEOUT_S['go'])}s", name], "stage": "run"}]
    elif language == "cpp":
        steps = [
            {"argv": [tc.tool("g++"), "-std=c++11", name, "-lcrypto", "-lssl"], "stage": "compile"},
            {"argv": ["./a.out"], "stage": "run"},
        ]
    elif language == "rust":
        externs = [a for k, v in sorted(tc.rust_externs.items()) for a in ("--extern", f"{k}={v}")]
        deps = str(tc.root / "rust" / "deps")
        steps = [
            {
                "argv": [
                    tc.tool("rustc"), "--edition", "2021", "--test", "-C", "debuginfo=0",
                    "-C", f"linker={tc.tool('gcc')}", "-L", f"dependency={deps}", *externs,
                    name, "-o", "test",
                ],
                "stage": "compile",
            },
            {"argv": ["./test"], "stage": "run"},
        ]  # fmt: skip
    else:
        raise ValueError(f"no executor for {language!r} (python runs as a module)")
    return {"files": files, "copy": copy, "env": env, "steps": steps}
