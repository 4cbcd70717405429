"""The run's reproducibility report: ``results/<run>/report/``, in three parts: :mod:`.collect`
(the facts, from the artifacts and their sidecars), :mod:`.plot` (the SVG plots) and
:mod:`.render` (the HTML page).

``index.html`` is one self-contained page (inline CSS, the funnel plot as inline SVG, no
script, nothing fetched when it is opened): the funnel from the seed functions to the SFT set
with the drops per reason, the EvalPlus table beside the paper's numbers, every artifact's
hash and provenance (and whether the hashes its inputs were read with are the hashes of the
artifacts the run kept), and the run's config and package versions. ``report.json`` holds the
same facts for a program; ``funnel.svg`` is the plot alone.

Every number comes from the run's artifacts and their ``.meta.json`` sidecars; the only
constants are the paper's published figures (the funnel's in :mod:`selfalign.chain`, the
pass@1 from :mod:`selfalign.evaluation.score`). Nothing that changes between two runs
of the same config is on it (sidecars' wall times, timestamps and hosts, how much work was
resumed), so the same run gives the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ...records import atomic_writer
from .collect import (
    BEYOND_LIMIT,
    FUNNEL_STAGES,
    REPORT_DIR,
    ReportError,
    build_eval,
    build_examples,
    build_funnel,
    build_report,
    collect_artifacts,
    load_sidecar,
    loss_curve,
)
from .plot import funnel_svg, loss_svg
from .render import render_html


def write_report(
    report: Mapping[str, Any],
    *,
    html_out: str | os.PathLike[str],
    json_out: str | os.PathLike[str],
    svg_out: str | os.PathLike[str] | None = None,
) -> None:
    """Write the page, the JSON and (optionally) the plot, each atomically."""
    svg = funnel_svg(report["funnel"])
    with atomic_writer(json_out) as handle:
        json.dump(report, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    if svg_out is not None:
        with atomic_writer(svg_out) as handle:
            handle.write(svg)
    with atomic_writer(html_out) as handle:
        handle.write(render_html(report, svg))


__all__ = [
    "BEYOND_LIMIT",
    "FUNNEL_STAGES",
    "REPORT_DIR",
    "ReportError",
    "build_eval",
    "build_examples",
    "build_funnel",
    "build_report",
    "collect_artifacts",
    "funnel_svg",
    "load_sidecar",
    "loss_curve",
    "loss_svg",
    "render_html",
    "write_report",
]
