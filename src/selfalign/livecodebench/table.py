"""LiveCodeBench's scenarios in one table, beside the model card's figures (the benchmark registry's
``lcb-<scenario>`` rows)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluation.benchmarks import benchmark
from .score import TITLES

SCENARIOS = tuple(TITLES)


def card_table(summaries: Sequence[str | Path], model: str = "StarCoder2-15B-Instruct-v0.1") -> dict[str, Any]:
    """One row per scored scenario, in LiveCodeBench's order: items, samples per item, pass@1
    (percent) and the card's pass@1 for ``model``."""
    found: dict[str, dict[str, Any]] = {}
    for path in summaries:
        summary = json.loads(Path(path).read_text())
        scenario = summary.get("scenario")
        if scenario not in SCENARIOS:
            raise ValueError(f"{path}: not a LiveCodeBench summary (scenario {scenario!r})")
        if scenario in found:
            raise ValueError(f"{path}: a second summary of {scenario}")
        found[scenario] = summary
    rows = []
    for scenario in SCENARIOS:
        if scenario not in found:
            continue
        summary, every = found[scenario], found[scenario]["groups"]["all"]
        pass1 = every["pass_at_k"].get("pass@1")
        rows.append({"scenario": scenario, "label": TITLES[scenario], "window": summary["window"],
                     "items": every["problems"], "samples_per_item": every["samples_per_problem"],
                     "missing": every["missing"], "pass@1": None if pass1 is None else round(100 * pass1, 1),
                     "card": benchmark(f"lcb-{scenario}").paper(model).get("base")})
    return {"model_card": model, "rows": rows}


def render(table: dict[str, Any]) -> str:
    lines = ["# LiveCodeBench", "", f"pass@1 in percent, scored in the sandbox; beside it, {table['model_card']}'s "
             "model card (made with LiveCodeBench's own runner on its April 2024 problems).", "",
             "| scenario | items | samples per item | pass@1 | model card | missing |", "|---|---:|---:|---:|---:|---:|"]
    for row in table["rows"]:
        cells = [row["label"], row["items"], row["samples_per_item"],
                 "-" if row["pass@1"] is None else f"{row['pass@1']:.1f}",
                 "-" if row["card"] is None else f"{row['card']:.1f}", row["missing"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Items: " + "; ".join(f"{row['label']}: {row['window']}" for row in table["rows"]) + "."]
    return "\n".join(lines) + "\n"
