"""Run HumanEvalPack test programs in the sandbox, and the self-check that proves the executors.

``run_programs`` runs (language, program) pairs over a pool of sandboxes (gVisor by default),
each program one sample under the sandbox's confinement (no network, read-only root, uid 65534,
limits, watchdog). ``self_check`` runs every task's canonical solution (expected: pass) and its
buggy solution (expected: not pass) per language and writes the verdicts and a table; a
canonical solution that does not pass or a buggy one that does is listed with its cause.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import check_params
from ..execution import BUNDLED, resolve_sample_site
from ..records import JsonObj, iter_jsonl, sha256_file
from ..runtime import StageStats, UnitPlan, UnitRun, drive, finish_counts, merge_units
from ..sandbox import SandboxPool, Verdict, validate_backend_choice
from .executors import LIMITS, program
from .humanevalpack import LANGUAGES, Task, check_program, load_tasks, reference_generations
from .toolchains import Toolchains, load

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackSandboxParams:
    """How HumanEvalPack programs are run. ``timeouts``: seconds per program (compile and run
    together) per language, over the harness's (``humanevalpack.TIMEOUT_S``); ``memory_mb``:
    a Python program's RLIMIT_AS (the other languages' are in ``executors.LIMITS``);
    ``sandbox_memory_mb``: the whole sandbox's memory cap; ``toolchains``: the directory
    ``selfalign toolchains build`` made (``bundled``: ``<venv>/toolchains``); ``sample_site``:
    what Python programs may import (``bundled``: the venv's ``sample-release``, with numpy)."""

    backend: str = "gvisor"
    workers: int = 2
    memory_mb: int = 1024
    sandbox_memory_mb: int = 8192
    timeouts: dict[str, float] = field(default_factory=dict)
    toolchains: str = BUNDLED
    sample_site: str | None = BUNDLED
    allow_unsandboxed: bool = False
    gvisor_platform: str | None = None
    image: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PackSandboxParams:
        check_params(cls, data, "octopack.sandbox")
        made = cls(**dict(data))
        unknown = sorted(set(made.timeouts) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"octopack.sandbox.timeouts: unknown languages {unknown}: expected {LANGUAGES}")
        validate_backend_choice(made.backend, made.allow_unsandboxed, "octopack.sandbox", made.image)
        return made

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def timeout_s(self, language: str) -> float:
        return float(self.timeouts.get(language, LIMITS[language].timeout_s))

    def toolchain_dir(self) -> Path:
        if self.toolchains == BUNDLED:
            return Path(sys.prefix) / "toolchains"
        return Path(self.toolchains).expanduser()

    def site_dir(self) -> str | None:
        return resolve_sample_site(self.sample_site)


def run_programs(
    items: Sequence[tuple[str, str]],
    params: PackSandboxParams,
    tc: Toolchains | None = None,
    on_result: Callable[[int, Verdict], None] | None = None,
) -> list[Verdict]:
    """The verdict of each (language, whole program), in input order."""
    tc = tc if tc is not None else load(params.toolchain_dir())
    pool = SandboxPool(
        min(params.workers, max(1, len(items))),
        params.backend,
        memory_bytes=params.memory_mb << 20,
        sandbox_memory_bytes=params.sandbox_memory_mb << 20,
        extra_ro_paths=tc.ro_paths,
        sample_site=params.site_dir(),
        allow_unsandboxed=params.allow_unsandboxed,
        gvisor_platform=params.gvisor_platform,
        image=params.image,
    )

    def work(sandbox: Any, item: tuple[str, str]) -> Verdict:
        language, source = item
        limits = LIMITS[language]
        timeout = params.timeout_s(language)
        if language == "python":
            return sandbox.run(source, timeout)
        return sandbox.run_program(
            program(language, source, tc), timeout, memory_bytes=limits.memory_bytes, nproc=limits.nproc
        )

    with pool:
        return pool.map(work, list(items), on_result)


# -- self-check --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRow:
    language: str
    task_id: str
    variant: str  # canonical | buggy
    verdict: Verdict

    @property
    def expected(self) -> bool:
        return self.verdict.passed if self.variant == "canonical" else not self.verdict.passed

    def to_dict(self) -> dict[str, Any]:
        """Its line in ``verdicts.jsonl`` (keys sorted, as they have always been written)."""
        row = {
            "language": self.language,
            "task_id": self.task_id,
            "variant": self.variant,
            "expected": "pass" if self.variant == "canonical" else "not pass",
            "as_expected": self.expected,
            **self.verdict.to_dict(),
        }
        return dict(sorted(row.items()))

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> CheckRow:
        verdict = Verdict.from_dict({k: row[k] for k in ("status", "reason", "seconds", "stdout_tail", "stderr_tail")})
        return cls(row["language"], row["task_id"], row["variant"], verdict)


def self_check(
    task_files: Mapping[str, str | Path],
    out_dir: str | Path,
    params: PackSandboxParams,
    *,
    limit: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run each language's canonical and buggy solutions; write ``verdicts.jsonl`` (one line
    per program, language then task order), ``table.md`` and return the summary. A language is
    a unit of :func:`selfalign.runtime.drive`: a killed self-check keeps the languages it
    finished."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started, started_wall = time.monotonic(), time.time()
    check = _SelfCheck(task_files, params, limit)
    drive(check, out / "verdicts.jsonl", show_progress=show_progress)
    rows = [CheckRow.from_dict(record) for _, record in iter_jsonl(out / "verdicts.jsonl")]
    summary = summarize(rows, check.wall, check.seconds)
    summary["workers"] = params.workers
    summary["backend"] = params.backend
    summary["wall_s"] = round(time.monotonic() - started, 1)
    summary["toolchains"] = {k: v["version"] for k, v in check.tc.manifest["tools"].items()}
    (out / "table.md").write_text(render_table(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    entries = summary["languages"].values()
    finish_counts(
        out / "verdicts.jsonl",
        stage="octopack.selfcheck",
        inputs=[task_files[lang] for lang in check.tasks],
        counts={"programs": len(rows), "tasks": sum(e["tasks"] for e in entries),
                "canonical_pass": sum(e["canonical_pass"] for e in entries),
                "buggy_not_pass": sum(e["buggy_not_pass"] for e in entries),
                "unexpected": sum(len(e["exceptions"]) for e in entries)},
        params={"sandbox": params.to_dict(), "limit": limit},
        extra={"languages": list(check.tasks), "wall_s": summary["wall_s"], "toolchains": summary["toolchains"]},
        started=started_wall,
    )
    return summary


class _SelfCheck:
    """The self-check as a :class:`selfalign.runtime.UnitStage`: a unit is one language's
    programs (canonical and buggy per task), run one language at a time so the wall clock per
    language is its cost."""

    def __init__(self, task_files: Mapping[str, str | Path], params: PackSandboxParams, limit: int | None) -> None:
        self.task_files, self.params, self.limit = task_files, params, limit
        self.tc: Toolchains = load(params.toolchain_dir())
        self.tasks: dict[str, list[Task]] = {
            language: load_tasks(task_files[language], language, limit) for language in LANGUAGES
            if language in task_files
        }
        self.wall: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def plan(self) -> UnitPlan:
        sizes = {language: 2 * len(tasks) for language, tasks in self.tasks.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"HumanEvalPack languages hold different numbers of tasks: {sizes}")
        return UnitPlan(
            stage="octopack.selfcheck",
            version=1,
            key={"files": {k: sha256_file(v) for k, v in sorted(self.task_files.items()) if k in self.tasks},
                 "limit": self.limit, "sandbox": self.params.to_dict(), "toolchains": self.tc.manifest},
            total=sum(sizes.values()),
            per_unit=max(sizes.values(), default=1) or 1,
            drops=False,
            desc="HumanEvalPack self-check",
            item="prog",
        )

    def process(self, run: UnitRun) -> None:
        languages = list(self.tasks)
        for unit in run.pending or []:
            language = languages[unit]
            keys: list[tuple[str, str]] = []
            items: list[tuple[str, str]] = []
            for task in self.tasks[language]:
                for variant, generation in reference_generations(task).items():
                    items.append((language, check_program(task, generation)))
                    keys.append((task.task_id, variant))
            t0 = time.monotonic()
            verdicts = run_programs(items, self.params, self.tc, lambda _j, _v: run.advance(1))
            wall = time.monotonic() - t0
            rows = [CheckRow(language, k[0], k[1], v).to_dict() for k, v in zip(keys, verdicts, strict=True)]
            run.write(unit, rows, {"n_in": len(rows), "n_out": len(rows), "drops": {},
                                   "extra": {"wall_s": {language: wall},
                                             "program_s": {language: sum(v.seconds for v in verdicts)}}})

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        stats = merge_units(units)
        self.wall = dict(stats.extra.get("wall_s") or {})
        self.seconds = dict(stats.extra.get("program_s") or {})
        return stats


def summarize(rows: Sequence[CheckRow], wall: Mapping[str, float], seconds: Mapping[str, float]) -> dict[str, Any]:
    """Per language: tasks, canonical passed, buggy not passed, and every unexpected verdict."""
    languages: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = languages.setdefault(
            row.language,
            {"tasks": 0, "canonical_pass": 0, "buggy_not_pass": 0, "buggy_reasons": {}, "exceptions": []},
        )
        if row.variant == "canonical":
            entry["tasks"] += 1
            entry["canonical_pass"] += row.verdict.passed
        else:
            entry["buggy_not_pass"] += not row.verdict.passed
            reason = f"{row.verdict.status}:{row.verdict.reason}"
            entry["buggy_reasons"][reason] = entry["buggy_reasons"].get(reason, 0) + 1
        if not row.expected:
            entry["exceptions"].append(
                {
                    "task_id": row.task_id,
                    "variant": row.variant,
                    "status": row.verdict.status,
                    "reason": row.verdict.reason,
                    "stderr_tail": row.verdict.stderr_tail[-600:],
                    "stdout_tail": row.verdict.stdout_tail[-300:],
                }
            )
    for language, entry in languages.items():
        entry["wall_s"] = round(wall.get(language, 0.0), 1)
        entry["program_s"] = round(seconds.get(language, 0.0), 1)
        n = 2 * entry["tasks"]
        entry["s_per_program"] = round(entry["wall_s"] / n, 2) if n else 0.0
    return {"languages": languages}


def render_table(summary: Mapping[str, Any]) -> str:
    lines = [
        "# HumanEvalPack executor self-check",
        "",
        f"Backend {summary.get('backend')}, {summary.get('workers')} workers. Canonical solutions"
        " must pass, buggy ones must not.",
        "",
        "| language | tasks | canonical pass | buggy not pass | wall (s) | s / program (wall) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for language, e in summary["languages"].items():
        lines.append(
            f"| {language} | {e['tasks']} | {e['canonical_pass']}/{e['tasks']} | "
            f"{e['buggy_not_pass']}/{e['tasks']} | {e['wall_s']} | {e['s_per_program']} |"
        )
    lines += ["", "## Unexpected verdicts", ""]
    found = False
    for language, e in summary["languages"].items():
        for x in e["exceptions"]:
            found = True
            tail = " ".join((x["stderr_tail"] or x["stdout_tail"]).split())[-300:]
            lines.append(f"- {language} {x['task_id']} {x['variant']}: {x['status']}/{x['reason']}: `{tail}`")
    if not found:
        lines.append("None.")
    lines += ["", "## How the buggy solutions failed", ""]
    for language, e in summary["languages"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(e["buggy_reasons"].items()))
        lines.append(f"- {language}: {reasons}")
    return "\n".join(lines) + "\n"
