"""The HumanEvalPack results table: every scored task x language, OctoCoder's published pass@1 beside.

Reads the ``summary.json`` of each ``octopack score`` run (one per task kind) and writes
``table.md`` and ``table.json``: one row per task and language with the tasks scored, samples per
task, our pass@1 (and pass@10 where the samples allow it), and OctoCoder's published pass@1, then
one average row per task (the mean over its languages, as the OctoPack paper averages).

OctoCoder's figures, each with where it was read (nothing else is claimed):

* HumanEvalSynthesize per language and their average: the ``model-index`` of the
  ``bigcode/octocoder`` model card (huggingface.co/bigcode/octocoder, README.md), which also gives
  the octopack repository README's 46.2 for Python.
* HumanEvalFix and HumanEvalExplain averages over the six languages (27.0 and 24.5; Synthesize
  35.5): the data of the OctoPack paper's Figure 1 in ``visuals/plots.ipynb`` of
  bigcode-project/octopack at e17a8f6. The paper's Fix is the *tests* variant (``fixtests``).
  Their per-language values (the paper's Table 2) could not be read from here: those cells stay
  empty rather than guessed.

OctoCoder's figures are pass@1 from n = 20 samples at temperature 0.2 (the paper's setting);
a greedy run's pass@1 is comparable but not the same estimator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluation.benchmarks import OCTOCODER, Published, benchmark
from .humanevalpack import LANGUAGE_NAME, LANGUAGES

#: The task kinds scored by running code, in the table's order.
TABLE_KINDS = ("synthesize", "fixtests", "fixdocs", "explainsynthesize")
TASK_NAME = {
    "synthesize": "HumanEvalSynthesize",
    "fixtests": "HumanEvalFix (tests)",
    "fixdocs": "HumanEvalFix (docs)",
    "explainsynthesize": "HumanEvalExplain",
}


def octocoder(kind: str, language: str) -> Published | None:
    """OctoCoder's published pass@1 for one task kind and language (``avg``: the six-language
    mean), from the benchmark registry; None where none was read."""
    if language == "avg":
        return OCTOCODER.get((kind, "avg"))
    figures = [p for p in benchmark(f"humaneval{kind}-{language}").published if p.model == "OctoCoder"]
    return figures[0] if figures else None


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def build_table(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``summaries``: task kind -> an ``octopack score`` summary.json. Rows in TABLE_KINDS then
    LANGUAGES order, an ``avg`` row per kind over the languages it scored."""
    unknown = sorted(set(summaries) - set(TABLE_KINDS))
    if unknown:
        raise ValueError(f"not a scored HumanEvalPack task: {unknown} (expected some of {TABLE_KINDS})")
    rows: list[dict[str, Any]] = []
    for kind in (k for k in TABLE_KINDS if k in summaries):
        languages = summaries[kind]["languages"]
        scored = [lang for lang in LANGUAGES if lang in languages]
        for language in scored:
            entry = languages[language]
            published = octocoder(kind, language)
            rows.append({
                "task": kind, "language": language, "tasks": entry["tasks"],
                "samples_per_task": entry["samples_per_task"], "missing_tasks": entry["missing_tasks"],
                "pass@1": _percent(entry["pass_at_k"].get("pass@1")),
                "pass@10": _percent(entry["pass_at_k"].get("pass@10")),
                "octocoder_pass@1": published.pass_at_1 if published else None,
                "octocoder_source": published.source if published else None,
            })
        if scored:
            ours = [r for r in rows if r["task"] == kind]
            published = octocoder(kind, "avg")
            p1 = [r["pass@1"] for r in ours if r["pass@1"] is not None]
            p10 = [r["pass@10"] for r in ours if r["pass@10"] is not None]
            rows.append({
                "task": kind, "language": "avg", "tasks": sum(r["tasks"] for r in ours),
                "samples_per_task": None, "missing_tasks": sum(r["missing_tasks"] for r in ours),
                "pass@1": round(sum(p1) / len(p1), 1) if len(p1) == len(ours) else None,
                "pass@10": round(sum(p10) / len(p10), 1) if p10 and len(p10) == len(ours) else None,
                "octocoder_pass@1": published.pass_at_1 if published else None,
                "octocoder_source": published.source if published else None,
                "languages": scored,
            })
    limits = sorted({s.get("limit") for s in summaries.values()}, key=lambda v: (v is None, v or 0))
    return {"rows": rows, "limits": limits, "backends": sorted({s.get("backend", "") for s in summaries.values()}),
            "sources": sorted({p.source for p in OCTOCODER.values()})}


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def render_table(table: Mapping[str, Any]) -> str:
    """Markdown of :func:`build_table`'s result."""
    limit = [v for v in table["limits"] if v is not None]
    scope = (f"the first {', '.join(map(str, limit))} tasks per language (octopack.eval.limit)" if limit
             else "all 164 tasks per language")
    lines = [
        "# HumanEvalPack", "",
        f"pass@1 in percent on {scope}, scored in the sandbox ({', '.join(table['backends'])}); OctoCoder's "
        "published pass@1 beside (n = 20 at temperature 0.2; '-' where no figure was read).", "",
        "| task | language | tasks | samples per task | pass@1 | pass@10 | OctoCoder pass@1 | missing tasks |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        language = "average" if row["language"] == "avg" else LANGUAGE_NAME[row["language"]]
        lines.append(f"| {TASK_NAME[row['task']]} | {language} | {row['tasks']} | {_cell(row['samples_per_task'])} "
                     f"| {_cell(row['pass@1'])} | {_cell(row['pass@10'])} | {_cell(row['octocoder_pass@1'])} "
                     f"| {row['missing_tasks']} |")
    lines += ["", "OctoCoder's figures: " + "; ".join(table["sources"]) + "."]
    return "\n".join(lines) + "\n"


def write_table(summary_paths: Sequence[str | Path], out_md: str | Path, out_json: str | Path) -> dict[str, Any]:
    """Read each summary.json (its ``kind`` says which task it scored; one per kind) and write
    the table as markdown and JSON."""
    summaries: dict[str, Mapping[str, Any]] = {}
    for path in summary_paths:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
        kind = summary.get("kind")
        if kind in summaries:
            raise ValueError(f"{path}: a second summary of task {kind!r}")
        summaries[str(kind)] = summary
    table = build_table(summaries)
    Path(out_md).write_text(render_table(table), encoding="utf-8")
    Path(out_json).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return table
