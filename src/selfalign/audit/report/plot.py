"""The report's plots: the funnel and the fine-tuning loss, as SVG documents with stable bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from .collect import sorted_drops


def loss_svg(curve: Sequence[Mapping[str, float]]) -> str:
    """The fine-tuning loss per logged step, as an SVG document with no date and stable ids."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(
        {"svg.hashsalt": "selfalign-loss", "svg.fonttype": "path", "font.size": 10, "font.family": "DejaVu Sans"}
    ):
        fig = Figure(figsize=(7, 3.2))
        ax = fig.add_subplot()
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], color="#2f6fad", marker="." if len(curve) < 60 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(color="#dddddd")
        ax.set_title("Fine-tuning loss (checkpoint)", fontsize=11)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()




def _short(n: int | float) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:,}"


def _note_lines(row: Mapping[str, Any], width: int = 62) -> list[tuple[str, str]]:
    """The text beside a funnel bar: in -> out (and the paper's figure), the drops by reason in
    at most two lines, and what was not passed on to the stage."""
    first = f"{row['in']:,} → {row['out']:,}" + (f"      paper: {row['paper']['text']}" if row["paper"] else "")
    lines = [(first, "paper")]
    drops = [f"{k} {v:,}" for k, v in sorted_drops(row["drops"]).items()]
    if drops:
        text = f"−{row['dropped']:,}: "
        wrapped: list[str] = []
        for i, item in enumerate(drops):
            sep = "" if text.endswith(": ") or not text.strip() else ", "
            if len(text) + len(sep) + len(item) > width and text.strip():
                if len(wrapped) == 1:
                    text += f", +{len(drops) - i} more"
                    break
                wrapped.append(text + ",")
                text, sep = "    ", ""
            text += sep + item
        wrapped.append(text)
        lines.extend((line, "drop") for line in wrapped)
    lines.extend((f"{count:,} not passed on: {reason}", "skip") for reason, count in row["skipped_before"].items())
    return lines


def funnel_svg(funnel: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars of what each stage passed on (log scale) beside the paper's figures, and
    what each stage dropped by reason; an SVG document with no date and stable ids."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colors = {"ours": "#2f6fad", "samples": "#d9822b", "paper": "#444444", "drop": "#a33a3a", "skip": "#666666"}
    n = len(funnel)
    with matplotlib.rc_context(
        {"svg.hashsalt": "selfalign-report", "svg.fonttype": "path", "font.size": 10, "font.family": "DejaVu Sans"}
    ):
        fig = Figure(figsize=(12, 0.62 * n + 1.2))
        grid = fig.add_gridspec(1, 2, width_ratios=[1.45, 1], wspace=0.03)
        ax = fig.add_subplot(grid[0])
        notes = fig.add_subplot(grid[1], sharey=ax)
        ys = [n - 1 - i for i in range(n)]
        floor = 0.8
        values = [max(row["out"], 1) for row in funnel] + [row["paper"]["out"] for row in funnel if row["paper"]]
        ax.set_xscale("log")
        ax.set_xlim(floor, max(values) * 8)
        for y, row in zip(ys, funnel, strict=True):
            if row["paper"]:
                ax.barh(y, row["paper"]["out"] - floor, left=floor, height=0.82, fill=False,
                        edgecolor=colors["paper"], linestyle=(0, (3, 2)), linewidth=1.0, zorder=1)
            color = colors["samples"] if row["unit"] == "samples" else colors["ours"]
            if row["out"] > 0:
                ax.barh(y, row["out"] - floor, left=floor, height=0.5, color=color, zorder=2)
            ax.text(max(row["out"], 1) * 1.12, y, f"{row['out']:,}", va="center", ha="left", fontsize=9, zorder=3)
        ax.set_yticks(ys, [f"{row['label']}\n{row['artifact']}" for row in funnel], fontsize=9)
        ax.set_ylim(-0.6, n - 0.4)
        ax.grid(axis="x", which="major", color="#dddddd", zorder=0)
        ax.set_axisbelow(True)
        ax.set_xlabel("passed on by the stage (log scale)")
        ax.legend(
            handles=[
                Patch(color=colors["ours"], label="this run: records"),
                Patch(color=colors["samples"], label="this run: response samples"),
                Patch(fill=False, edgecolor=colors["paper"], linestyle=(0, (3, 2)), label="paper / upstream"),
            ],
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncol=3,
            fontsize=8.5,
            frameon=False,
        )
        notes.set_xlim(0, 1)
        notes.axis("off")
        notes.text(0.0, n - 0.45, "in → out, and what the stage dropped (by reason)", fontsize=9,
                   fontweight="bold", va="bottom")
        for y, row in zip(ys, funnel, strict=True):
            lines = _note_lines(row)
            step = min(0.27, 0.84 / len(lines))
            top = y + step * (len(lines) - 1) / 2
            for i, (text, kind) in enumerate(lines):
                notes.text(0.0, top - i * step, text, fontsize=8.5, color=colors[kind], va="center", ha="left")
        fig.suptitle("The funnel: what each stage passed on, this run beside the paper", fontsize=12)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()
