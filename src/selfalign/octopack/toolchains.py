"""The compilers and libraries HumanEvalPack's programs need, prepared once for the sandbox.

HumanEvalPack's tests run JavaScript under Node.js (``js-md5`` required by two tasks), Java,
Go with testify, C++ with boost and OpenSSL's md5, and Rust with the rand, regex and md5 crates.
The toolchains are Debian packages (``DEBIAN_PACKAGES``); what Debian ships as sources is
built here, offline, into one directory the sandbox mounts read-only:

* ``go/gopath``: testify and its dependencies (copied from ``/usr/share/gocode``, Debian's
  golang-github-*-dev packages) installed as compiled packages (GOPATH mode, GO111MODULE=off);
  ``go/cache``: a build cache warmed by a test importing every package HumanEvalPack's Go
  programs may use, so ``go test``'s vet step does not analyse the standard library per sample.
  Each sample gets its own copy (a shared writable cache would let one sample poison another's).
* ``rust/deps``: the rlibs of rand, regex and md5 (and their dependencies), built by ``cargo
  --offline`` from Debian's crate registry (``/usr/share/cargo/registry``) with Debian's rustc,
  the compiler the sandbox runs (an rlib only links with the rustc that built it).
* ``node/node_modules``: js-md5 from the npm registry by ``selfalign/data/octopack-node/package-lock.json``
  (Debian has no js-md5); the only step that needs a network.

``toolchains.json`` in the directory records each tool's real path (inside the sandbox only
real paths exist: ``/usr/bin/java`` is an ``/etc/alternatives`` link), its version, the rlibs to
pass as ``--extern``, the extra read-only paths a tool needs (the JDK's ``/etc`` config), and
the sha256 of every file built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sandbox.languages import debian_packages

log = logging.getLogger(__name__)

MANIFEST = "toolchains.json"
SYSTEM_PATH = "/usr/bin:/bin"
DEBIAN_PACKAGES = debian_packages()
"""What ``scripts/setup.sh`` installs with apt: every sandbox language's (:mod:`selfalign.sandbox.languages`)."""

TOOLS = {
    "node": ("node", "nodejs"),
    "javac": ("javac", "default-jdk-headless"),
    "java": ("java", "default-jdk-headless"),
    "go": ("go", "golang-go"),
    "g++": ("g++", "g++"),
    "gcc": ("gcc", "gcc"),
    "rustc": ("rustc", "rustc"),
    "cargo": ("cargo", "cargo"),
}
"""Tool -> (command on the system PATH, Debian package that provides it)."""

GO_PACKAGES = (
    "github.com/stretchr/testify",
    "github.com/stretchr/objx",
    "github.com/davecgh/go-spew",
    "github.com/pmezard/go-difflib",
    "gopkg.in/yaml.v3",
)
GO_SOURCE = Path("/usr/share/gocode/src")
GO_WARM_IMPORTS = (
    "math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand",
    "crypto/md5", "testing", "github.com/stretchr/testify/assert",
)  # fmt: skip
"""The bigcode-evaluation-harness's Go ``IMPORT_HELPER`` plus what every test file imports."""

RUST_CRATES = {"rand": "0.8", "regex": "1", "md5": "0.7"}
"""The crates HumanEvalPack's Rust declarations ``use``; versions are Debian bookworm's."""
CARGO_REGISTRY = Path("/usr/share/cargo/registry")
#: package data, so a non-editable install finds it too
NODE_LOCK_DIR = Path(__file__).resolve().parent.parent / "data" / "octopack-node"


class ToolchainError(RuntimeError):
    """A toolchain is missing or its libraries could not be built."""


@dataclass(frozen=True)
class Toolchains:
    """A built toolchain directory and its manifest."""

    root: Path
    manifest: dict[str, Any]

    def tool(self, name: str) -> str:
        return str(self.manifest["tools"][name]["path"])

    @property
    def ro_paths(self) -> tuple[str, ...]:
        """Host paths the sandbox must mount read-only besides /usr: this directory and the
        tools' own configuration outside /usr."""
        return (str(self.root), *self.manifest.get("ro_paths", ()))

    @property
    def rust_externs(self) -> dict[str, str]:
        return {k: str(self.root / v) for k, v in self.manifest["rust"]["externs"].items()}


def load(root: str | Path) -> Toolchains:
    """The toolchains built in ``root``, or a clear error saying how to build them."""
    root = Path(root).resolve()
    path = root / MANIFEST
    if not path.is_file():
        raise ToolchainError(
            f"{path} not found: build the HumanEvalPack toolchains with "
            f"`selfalign toolchains build {root}` (scripts/setup.sh does, after installing "
            f"the Debian packages {' '.join(DEBIAN_PACKAGES)})"
        )
    return Toolchains(root, json.loads(path.read_text()))


def _run(argv: list[str], **kwargs: Any) -> str:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": kwargs.pop("home", "/nonexistent")}
    env.update(kwargs.pop("env", {}))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, **kwargs)
    if proc.returncode != 0:
        raise ToolchainError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def find_tools() -> dict[str, dict[str, str]]:
    """Each tool's real path and version, or an error naming every missing Debian package."""
    found: dict[str, dict[str, str]] = {}
    missing = []
    for name, (command, package) in TOOLS.items():
        path = shutil.which(command, path=SYSTEM_PATH)
        if path is None:
            missing.append(package)
            continue
        real = os.path.realpath(path)
        flag = "-version" if name in ("java", "javac") else ("version" if name == "go" else "--version")
        version = _run([real, flag]).strip().splitlines()[0]
        found[name] = {"path": real, "version": version}
    if missing:
        raise ToolchainError(
            "missing toolchains for HumanEvalPack: apt-get install " + " ".join(sorted(set(missing)))
        )
    return found


def _java_ro_paths(java: str) -> list[str]:
    """Directories outside /usr that the JDK's files link to (Debian: /etc/java-17-openjdk)."""
    home = Path(java).parent.parent
    out: set[str] = set()
    for dirpath, _, files in os.walk(home):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = os.path.realpath(path)
                if not target.startswith("/usr/"):
                    out.add(os.path.dirname(target))  # e.g. /etc/java-17-openjdk/security
    kept: list[str] = []
    for where in sorted(out):  # only the links' own dirs: /etc/ssl/certs/java, not /etc/ssl
        if not any(where == k or where.startswith(k + "/") for k in kept):
            kept.append(where)
    return kept


def _build_go(root: Path, go: str) -> None:
    gopath = root / "go" / "gopath"
    for package in GO_PACKAGES:
        source = GO_SOURCE / package
        if not source.is_dir():
            raise ToolchainError(f"{source} missing: apt-get install golang-github-stretchr-testify-dev")
        shutil.copytree(source, gopath / "src" / package, symlinks=False)
    env = {"GO111MODULE": "off", "GOPATH": str(gopath), "CGO_ENABLED": "0", "GOFLAGS": ""}
    with tempfile.TemporaryDirectory() as tmp:
        env_build = {**env, "GOCACHE": f"{tmp}/build-cache", "TMPDIR": tmp}
        _run([go, "install", *(p + "/..." for p in GO_PACKAGES)], env=env_build, home=tmp)
        warm = Path(tmp) / "warm"
        warm.mkdir()
        imports = "\n".join(f'    "{p}"' for p in GO_WARM_IMPORTS)
        uses = "\n".join(
            f"    var _ = {p.rsplit('/', 1)[-1]}.{sym}"
            for p, sym in (
                ("math", "Pi"), ("strings", "ToUpper"), ("fmt", "Sprint"), ("strconv", "Itoa"),
                ("time", "Now"), ("bytes", "Equal"), ("regexp", "MustCompile"), ("sort", "Ints"),
                ("math/rand", "Intn"), ("crypto/md5", "Sum"), ("assert", "New"),
            )
        )  # fmt: skip
        (warm / "main_test.go").write_text(
            f"package main\n\nimport (\n{imports}\n)\n\n{uses}\n\n"
            "func TestWarm(t *testing.T) { assert.New(t).True(true) }\n"
        )
        cache = root / "go" / "cache"
        env_warm = {**env, "GOCACHE": str(cache), "TMPDIR": tmp}
        _run([go, "test", "main_test.go"], cwd=warm, env=env_warm, home=tmp)
        _run([go, "clean", "-testcache"], cwd=warm, env=env_warm, home=tmp)


def _build_rust(root: Path, rustc: str, cargo: str) -> dict[str, str]:
    if not CARGO_REGISTRY.is_dir():
        raise ToolchainError(f"{CARGO_REGISTRY} missing: apt-get install librust-rand-dev ...")
    deps = root / "rust" / "deps"
    with tempfile.TemporaryDirectory() as tmp:
        crate = Path(tmp) / "crate"
        (crate / "src").mkdir(parents=True)
        (crate / ".cargo").mkdir()
        lines = "\n".join(f'{k} = "{v}"' for k, v in RUST_CRATES.items())
        (crate / "Cargo.toml").write_text(
            '[package]\nname = "humanevalpack-crates"\nversion = "0.0.0"\nedition = "2021"\n\n'
            f"[dependencies]\n{lines}\n"
        )
        (crate / "src" / "lib.rs").write_text("")
        (crate / ".cargo" / "config.toml").write_text(
            '[source.crates-io]\nreplace-with = "debian"\n\n'
            f'[source.debian]\ndirectory = "{CARGO_REGISTRY}"\n'
        )
        env = {"RUSTC": rustc, "CARGO_HOME": f"{tmp}/cargo-home", "CARGO_TARGET_DIR": f"{tmp}/target"}
        _run([cargo, "build", "--offline", "--quiet"], cwd=crate, env=env, home=tmp)
        built = Path(tmp) / "target" / "debug" / "deps"
        deps.mkdir(parents=True)
        externs = {}
        for path in sorted(built.glob("*.rlib")):
            shutil.copy2(path, deps / path.name)
            stem = path.name[len("lib") :].rsplit("-", 1)[0]
            if stem in RUST_CRATES:
                externs[stem] = str(Path("rust") / "deps" / path.name)
    if sorted(externs) != sorted(RUST_CRATES):
        raise ToolchainError(f"cargo built {sorted(externs)}, expected {sorted(RUST_CRATES)}")
    return externs


def _build_node(root: Path, lock_dir: Path) -> None:
    npm = shutil.which("npm", path=SYSTEM_PATH)
    if npm is None:
        raise ToolchainError("npm not found: apt-get install npm (it fetches js-md5 once)")
    node = root / "node"
    node.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(lock_dir / name, node / name)
    with tempfile.TemporaryDirectory() as tmp:
        _run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--cache", f"{tmp}/npm"],
            cwd=node,
            home=tmp,
        )


def _tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def build(root: str | Path, *, lock_dir: Path = NODE_LOCK_DIR, force: bool = False) -> Toolchains:
    """Build the toolchain directory (idempotent: an existing manifest whose tools still have
    the recorded versions is kept unless ``force``)."""
    root = Path(root).resolve()
    tools = find_tools()
    if (root / MANIFEST).is_file() and not force:
        current = load(root)
        if current.manifest.get("tools") == tools and current.manifest.get("lock") == _lock_hash(lock_dir):
            log.info("toolchains in %s are current", root)
            return current
    # Built in place, the manifest last (a directory without one is rebuilt): Go's cache keys
    # and installed packages name their source directory, so the tree cannot move afterwards.
    if root.exists():
        shutil.rmtree(root)
    staging = root
    staging.mkdir(parents=True)
    log.info("building Go packages, Rust crates and js-md5 in %s", staging)
    _build_go(staging, tools["go"]["path"])
    externs = _build_rust(staging, tools["rustc"]["path"], tools["cargo"]["path"])
    _build_node(staging, lock_dir)
    manifest = {
        "tools": tools,
        "ro_paths": _java_ro_paths(tools["java"]["path"]),
        "rust": {"externs": externs, "crates": RUST_CRATES},
        "go": {"gopath": "go/gopath", "cache": "go/cache", "packages": list(GO_PACKAGES)},
        "node": {"node_path": "node/node_modules"},
        "lock": _lock_hash(lock_dir),
        "files": _tree_hashes(staging),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return load(root)


def _lock_hash(lock_dir: Path) -> str:
    return hashlib.sha256((lock_dir / "package-lock.json").read_bytes()).hexdigest()
