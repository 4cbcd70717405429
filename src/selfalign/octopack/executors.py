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

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..sandbox.core import Program, Step
from ..sandbox.languages import LANGUAGES, language
from .toolchains import Toolchains

JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

Steps = tuple[list[Step], dict[str, str], list[list[str]]]
"""What a language's step builder returns: the steps, extra environment, files to copy in."""


@dataclass(frozen=True)
class Limits:
    """Per-language limits that differ from the sandbox's Python defaults."""

    timeout_s: float
    memory_bytes: int | None = None
    nproc: int | None = None


#: Each language's limits, from :data:`selfalign.sandbox.languages.LANGUAGES`.
LIMITS = {key: Limits(lang.timeout_s, lang.memory_bytes, lang.nproc) for key, lang in LANGUAGES.items()}


def js_steps(tc: Toolchains, name: str) -> Steps:
    env = {"NODE_PATH": str(tc.root / tc.manifest["node"]["node_path"])}
    # HumanEval-X's rule (CodeGeeX, code_eval_octopack): a JavaScript program passes when it
    # prints nothing; its tests are console.assert calls, which print and exit 0.
    return [{"argv": [tc.tool("node"), name], "stage": "run", "fail_on_output": True}], env, []


def java_steps(tc: Toolchains, name: str) -> Steps:
    return [
        {"argv": [tc.tool("javac"), *(f"-J{f}" for f in JVM_FLAGS), name], "stage": "compile"},
        {"argv": [tc.tool("java"), *JVM_FLAGS, "-cp", ".", "Main"], "stage": "run"},
    ], {}, []


def go_steps(tc: Toolchains, name: str) -> Steps:
    env = {
        "GO111MODULE": "off",
        "GOPATH": str(tc.root / tc.manifest["go"]["gopath"]),
        "GOCACHE": "{workdir}/.gocache",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    copy = [[str(tc.root / tc.manifest["go"]["cache"]), ".gocache"]]
    # `go test` compiles, vets and runs; a compile error and a failing test both exit 1.
    timeout = int(language("go").timeout_s)
    return [{"argv": [tc.tool("go"), "test", f"-timeout={timeout}s", name], "stage": "run"}], env, copy


def cpp_steps(tc: Toolchains, name: str) -> Steps:
    return [
        {"argv": [tc.tool("g++"), "-std=c++11", name, "-lcrypto", "-lssl"], "stage": "compile"},
        {"argv": ["./a.out"], "stage": "run"},
    ], {}, []


def rust_steps(tc: Toolchains, name: str) -> Steps:
    externs = [a for k, v in sorted(tc.rust_externs.items()) for a in ("--extern", f"{k}={v}")]
    deps = str(tc.root / "rust" / "deps")
    return [
        {
            "argv": [
                tc.tool("rustc"), "--edition", "2021", "--test", "-C", "debuginfo=0",
                "-C", f"linker={tc.tool('gcc')}", "-L", f"dependency={deps}", *externs,
                name, "-o", "test",
            ],
            "stage": "compile",
        },
        {"argv": ["./test"], "stage": "run"},
    ], {}, []  # fmt: skip


def program(language_key: str, source: str, tc: Toolchains) -> Program:
    """The sandbox program that compiles and runs ``source`` (a whole test program)."""
    lang = language(language_key)
    if lang.steps is None:
        raise ValueError(f"no executor for {language_key!r} (python runs as a module)")
    module, _, attribute = lang.steps.partition(":")
    build: Callable[[Toolchains, str], Steps] = getattr(importlib.import_module(module), attribute)
    steps, env, copy = build(tc, lang.source_name)
    return {"files": {lang.source_name: source}, "copy": copy, "env": env, "steps": steps}
