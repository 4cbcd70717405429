"""The sandbox's languages, in one table: what each needs installed, how its program is
compiled and run, and its limits.

The executors (:func:`selfalign.octopack.executors.program`), HumanEvalPack's task list, the
toolchain builder and ``scripts/setup.sh`` all read :data:`LANGUAGES`; adding a language is a
row here, its step builder, and its tests (README, "Architecture: add a sandbox language").

The module imports nothing outside the standard library, so ``scripts/setup.sh`` runs it as a
script (``python3 src/selfalign/sandbox/languages.py debian-packages``) before the virtualenv
exists.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    """One language the sandbox compiles and runs programs in."""

    key: str  # HumanEvalPack's name for it (its file suffix: humanevalpack-<key>.jsonl)
    name: str
    source_name: str  # the file its program is written to in the sandbox's work directory
    timeout_s: float  # per program, compile and run together
    #: RLIMIT_AS and RLIMIT_NPROC where they differ from the sandbox's Python defaults (Node,
    #: the JVM, Go and rustc reserve address space far beyond what they use; the memory that
    #: counts is the sandbox's cgroup limit; their threads and subprocesses count as processes)
    memory_bytes: int | None = None
    nproc: int | None = None
    debian_packages: tuple[str, ...] = ()  # what setup.sh installs for it (Debian bookworm)
    tools: tuple[str, ...] = ()  # the toolchain commands its steps call (toolchains.TOOLS)
    #: "module:function" (Toolchains, source_name) -> (steps, env, copy); None: the program runs
    #: as a Python module in the sandbox's own interpreter
    steps: str | None = None


_GiB = 1 << 30

#: The harness's ``LANGUAGE_TO_TIMEOUT`` (bigcode-evaluation-harness 8fc5bae6), except Java: its
#: 10 s for the run plus up to five 5-s ``javac`` tries.
LANGUAGES: dict[str, Language] = {
    lang.key: lang
    for lang in (
        Language("python", "Python", "test.py", 10.0),
        Language("js", "JavaScript", "test.js", 10.0, 16 * _GiB, 64, ("nodejs", "npm"), ("node",),
                 "selfalign.octopack.executors:js_steps"),
        Language("java", "Java", "Main.java", 35.0, 16 * _GiB, 128, ("default-jdk-headless",), ("javac", "java"),
                 "selfalign.octopack.executors:java_steps"),
        Language("go", "Go", "main_test.go", 20.0, 16 * _GiB, 256,
                 ("golang-go", "golang-github-stretchr-testify-dev"), ("go",),
                 "selfalign.octopack.executors:go_steps"),
        Language("cpp", "C++", "test.cpp", 60.0, 4 * _GiB, 64, ("g++", "libssl-dev", "libboost-dev"), ("g++",),
                 "selfalign.octopack.executors:cpp_steps"),
        Language("rust", "Rust", "test.rs", 300.0, 16 * _GiB, 128,
                 ("rustc", "cargo", "librust-rand-dev", "librust-regex-dev", "librust-md5-dev",
                  "librust-aho-corasick-dev", "librust-memchr-dev"), ("rustc", "cargo", "gcc"),
                 "selfalign.octopack.executors:rust_steps"),
    )
}

#: Installed only where the machine has no ``node`` of its own (Pyright brings its own npm use).
NODE_PACKAGES = ("nodejs", "npm")


def language(key: str) -> Language:
    try:
        return LANGUAGES[key]
    except KeyError:
        raise ValueError(f"no sandbox language {key!r}; known: {', '.join(LANGUAGES)}") from None


def debian_packages(*, with_node: bool = True) -> tuple[str, ...]:
    """Every language's Debian packages, in table order, each once."""
    seen: dict[str, None] = {}
    for lang in LANGUAGES.values():
        seen.update(dict.fromkeys(p for p in lang.debian_packages if with_node or p not in NODE_PACKAGES))
    return tuple(seen)


def main(argv: list[str]) -> int:
    """``debian-packages [--without-node]``: the packages, space-separated (for setup.sh)."""
    if not argv or argv[0] != "debian-packages" or argv[1:] not in ([], ["--without-node"]):
        print("usage: languages.py debian-packages [--without-node]", file=sys.stderr)
        return 2
    print(" ".join(debian_packages(with_node="--without-node" not in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
