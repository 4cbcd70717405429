"""pass@k, the one estimator every benchmark's score uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models
    Trained on Code", eq. 1) for one task: ``1 - C(n-c, k) / C(n, k)``, with ``n`` samples of
    which ``c`` passed. ``k`` may not exceed ``n`` (the estimate would be undefined)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(results: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k over a benchmark: the mean over its tasks' ``(n, c)``; 0 for no tasks."""
    values = [pass_at_k(n, c, k) for n, c in results]
    return sum(values) / len(values) if values else 0.0


def pass_at_k_markdown(lead: Sequence[str], tail: Sequence[str],
                       rows: Iterable[tuple[Sequence[object], Mapping[str, float], Sequence[object]]]) -> list[str]:
    """A markdown table of pass@k in percent: the ``lead`` columns, one per ``pass@k`` any row
    has (in k order; ``-`` where a row has none), then the ``tail`` columns. Each row is its lead
    cells, its ``{"pass@k": fraction}`` and its tail cells; the first column left-aligned."""
    rows = list(rows)
    ks = sorted({k for _, values, _ in rows for k in values}, key=lambda s: int(s.split("@")[1]))
    lines = ["| " + " | ".join([*lead, *ks, *tail]) + " |",
             "|---|" + "---:|" * (len(lead) - 1 + len(ks) + len(tail))]
    for first, values, last in rows:
        cells = [f"{100 * values[k]:.1f}" if k in values else "-" for k in ks]
        lines.append("| " + " | ".join(str(c) for c in [*first, *cells, *last]) + " |")
    return lines
