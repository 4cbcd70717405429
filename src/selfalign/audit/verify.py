"""Check a run against published hashes: which artifacts are byte-identical, and where it diverged.

``selfalign lock results/tiny --out tests/expected/tiny.lock.json`` writes the sha256 of every
artifact a run's sidecars describe (a directory's is the digest of its file manifest, as in the
sidecars), in chain order (each artifact after the artifacts its sidecar names as inputs), with
the hashes of the inputs from outside the run (the pinned benchmark files, ...).

``selfalign verify results/tiny --lock tests/expected/tiny.lock.json`` rehashes the run and says
``verified: N of N artifacts identical``, or ``not verified: M of N ...`` naming the first artifact
in chain order whose bytes differ, the files inside it that differ (a directory artifact's files
are locked one by one: the tokenizer or the weights), and whether its inputs matched: if they
did, that stage computed differently here (its code, its packages or the machine), and the
summary says what to run next and what to attach to a bug report; if not, it only inherited a
difference from upstream. A divergence is a result: ``verify`` exits non-zero only with
``--strict`` (config ``verify.strict``; CI and the end-to-end tests are strict).

The run report (``report/``) is not locked: it names the code commit it was made with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..provenance import SIDECAR_SUFFIX, directory_files, manifest_digest
from ..records import JsonObj, sha256_file

LOCK_VERSION = 2

#: Artifacts (relative to the run's directory) left out of the lock, with why.
UNLOCKED_PREFIXES = {"report/": "the run report names the code commit it was made with"}
#: Files left out of the lock by their ending, with why.
UNLOCKED_SUFFIXES = {".index.sqlite": "explain's index, derived from the artifact it indexes (and checked against it)"}
#: The verify rule's own report, in the run directory.
VERIFY_REPORT = "verify.json"
#: Directories of a run that hold no artifacts.
SKIPPED_DIRS = ("logs", "benchmarks", ".snakemake")


class VerifyError(ValueError):
    """A run or a lock file that cannot be compared (missing, malformed)."""


@dataclass
class Entry:
    path: str  # relative to the run directory
    stage: str
    sha256: str
    inputs: list[str] = field(default_factory=list)  # run-relative paths of inputs in the run
    external: dict[str, str | None] = field(default_factory=dict)  # inputs from outside the run
    files: dict[str, str] = field(default_factory=dict)  # a directory artifact's files and their sha256


def _relative(path: str, run_dir: Path) -> str | None:
    """A sidecar's input path as run-relative, or None when it lies outside the run."""
    marker = f"/{run_dir.parent.name}/{run_dir.name}/"
    text = path if path.startswith("/") else "/" + path
    if marker in text:
        return text.split(marker, 1)[1]
    candidate = Path(path)
    try:
        return candidate.resolve().relative_to(run_dir.resolve()).as_posix()
    except (ValueError, OSError):
        return None


def scan(run_dir: str | os.PathLike[str]) -> dict[str, Entry]:
    """Every artifact of the run with a sidecar, rehashed (not the sidecar's word for it)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise VerifyError(f"{root}: no such run directory")
    found: dict[str, Entry] = {}
    for meta_path in sorted(root.rglob(f"*{SIDECAR_SUFFIX}")):
        rel_meta = meta_path.relative_to(root).as_posix()
        if rel_meta.split("/", 1)[0] in SKIPPED_DIRS:
            continue
        rel = rel_meta[: -len(SIDECAR_SUFFIX)]
        if any(rel.startswith(prefix) for prefix in UNLOCKED_PREFIXES):
            continue
        artifact = root / rel
        if not artifact.exists():
            continue  # a shard's sidecar whose temp() artifact was removed
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise VerifyError(f"{meta_path}: not JSON ({exc})") from None
        # a directory's files are hashed once: for the lock's per-file rows and for its digest
        files = directory_files(artifact) if artifact.is_dir() else {}
        entry = Entry(path=rel, stage=str(meta.get("stage", "?")),
                      sha256=manifest_digest(files) if artifact.is_dir() else sha256_file(artifact), files=files)
        for item in meta.get("inputs", []):
            inside = _relative(str(item.get("path", "")), root)
            if inside is not None:
                entry.inputs.append(inside)
            else:
                name = Path(str(item.get("path", ""))).name
                entry.external[name] = item.get("sha256")
        found[rel] = entry
    # files the workflow writes beside an artifact without a sidecar of their own (the dataset
    # card, decontamination.json, the eval table, ...)
    artifact_dirs = [root / rel for rel in found if (root / rel).is_dir()]
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (not path.is_file() or rel.endswith(SIDECAR_SUFFIX) or rel in found or rel == VERIFY_REPORT
                or rel.split("/", 1)[0] in SKIPPED_DIRS or any(rel.startswith(p) for p in UNLOCKED_PREFIXES)
                or rel.endswith(tuple(UNLOCKED_SUFFIXES))
                or any(d in path.parents for d in artifact_dirs)):
            continue
        found[rel] = Entry(path=rel, stage="no sidecar", sha256=sha256_file(path))
    # an input inside an artifact directory (checkpoint/model.safetensors) is that artifact
    dirs = sorted((rel for rel in found if (root / rel).is_dir()), key=len, reverse=True)
    for entry in found.values():
        mapped = (next((d for d in dirs if i.startswith(d + "/")), i) if i not in found else i for i in entry.inputs)
        entry.inputs = [i for i in dict.fromkeys(mapped) if i != entry.path]
    return found


def chain_order(entries: Mapping[str, Entry]) -> list[str]:
    """Artifacts after their inputs (inputs outside the set ignored), ties by path; files
    without a sidecar as late as their consumers allow, so that a stage's own artifact, not a
    file written beside it (the dataset card beside sft.jsonl), is the first divergence named."""
    order: list[str] = []
    placed: set[str] = set()
    pending = sorted(entries)
    while pending:
        ready = [p for p in pending if all(i in placed or i not in entries for i in entries[p].inputs)]
        if not ready:  # a cycle cannot happen in a Snakemake DAG; keep going deterministically
            ready = pending[:1]
        with_sidecar = [p for p in ready if entries[p].stage != "no sidecar"]
        needed = {i for p in pending for i in entries[p].inputs}
        ready = with_sidecar or [p for p in ready if p in needed] or ready
        for path in ready:
            order.append(path)
            placed.add(path)
        pending = [p for p in pending if p not in placed]
    return order


def make_lock(run_dir: str | os.PathLike[str], run_name: str | None = None) -> JsonObj:
    entries = scan(run_dir)
    if not entries:
        raise VerifyError(f"{run_dir}: no artifact with a sidecar")
    return {
        "version": LOCK_VERSION,
        "run": run_name or Path(run_dir).name,
        "unlocked": UNLOCKED_PREFIXES,
        "artifacts": [
            {"path": p, "stage": entries[p].stage, "sha256": entries[p].sha256, "inputs": entries[p].inputs,
             "external": entries[p].external, **({"files": entries[p].files} if entries[p].files else {})}
            for p in chain_order(entries)
        ],
    }


def load_lock(path: str | os.PathLike[str]) -> JsonObj:
    try:
        lock = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VerifyError(f"{path}: cannot read the lock file ({exc})") from None
    if lock.get("version") != LOCK_VERSION or not isinstance(lock.get("artifacts"), list):
        raise VerifyError(f"{path}: not a version-{LOCK_VERSION} lock file (make one with `selfalign lock`)")
    return lock


def verify(run_dir: str | os.PathLike[str], lock: Mapping[str, Any]) -> JsonObj:
    """The comparison report: per artifact identical / differs / missing, and the first divergence."""
    current = scan(run_dir)
    locked = {a["path"]: a for a in lock["artifacts"]}
    rows: list[JsonObj] = []
    first: JsonObj | None = None
    for item in lock["artifacts"]:
        path = item["path"]
        ours = current.get(path)
        if ours is None:
            row: JsonObj = {"path": path, "stage": item["stage"], "status": "missing"}
        elif ours.sha256 == item["sha256"]:
            row = {"path": path, "stage": item["stage"], "status": "identical"}
        else:
            changed_inputs = [i for i in item.get("inputs", [])
                              if i in locked and (current.get(i) is None or current[i].sha256 != locked[i]["sha256"])]
            changed_external = sorted(name for name, sha in item.get("external", {}).items()
                                      if ours.external.get(name) != sha)
            row = {"path": path, "stage": item["stage"], "status": "differs", "sha256": ours.sha256,
                   "expected": item["sha256"], "inputs_matched": not changed_inputs and not changed_external,
                   "changed_inputs": changed_inputs + changed_external}
            if "files" in item:
                locked_files: dict[str, str] = item["files"]
                row["files_differ"] = sorted(name for name in set(locked_files) | set(ours.files)
                                             if locked_files.get(name) != ours.files.get(name))
        rows.append(row)
        if first is None and row["status"] != "identical":
            first = row
    extra = sorted(set(current) - set(locked))
    identical = sum(r["status"] == "identical" for r in rows)
    return {"run": str(run_dir), "lock_run": lock.get("run"), "artifacts": len(rows), "identical": identical,
            "ok": identical == len(rows), "first_divergence": first, "not_in_lock": extra, "rows": rows}


#: What a user runs when a stage computed differently from matching inputs, and what to attach.
NEXT_STEPS = (
    "next: `.venv/bin/python -m pytest tests/test_determinism.py` checks this machine's float kernels "
    "(the fixed-order BLAS, and with ../shared/tools/cpu_kernel_probe.py beside the checkout every "
    "operation against the published hashes in tests/data/determinism/); for a bug report attach "
    "{run}/verify.json, {meta}, the output of `lscpu` and `.venv/bin/pip freeze`"
)


def summary(report: Mapping[str, Any]) -> str:
    verdict = "verified" if report["ok"] else "not verified"
    lines = [f"{verdict}: {report['identical']} of {report['artifacts']} artifacts identical"]
    first = report["first_divergence"]
    if first is not None:
        files = first.get("files_differ")
        inside = f" (files: {', '.join(files[:8])})" if files else ""
        if first["status"] == "missing":
            lines.append(f"first divergence: {first['path']} ({first['stage']}) is missing")
        elif first["inputs_matched"]:
            lines.append(
                f"first divergence: {first['path']} ({first['stage']}){inside}: its inputs matched the lock, so "
                "this stage computed differently here (code, packages, or the machine's kernels: see the "
                "sidecar's 'determinism')"
            )
            lines.append(NEXT_STEPS.format(run=report["run"], meta=f"{report['run']}/{first['path']}.meta.json"))
        else:
            lines.append(f"first divergence: {first['path']} ({first['stage']}){inside}: inputs differ too: "
                         f"{', '.join(first['changed_inputs'])}")
    if report["not_in_lock"]:
        lines.append(f"not in the lock: {', '.join(report['not_in_lock'][:10])}")
    return "\n".join(lines)

