"""Progress bars (tqdm on stderr) and the cores a stage may use."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _disabled(enabled: bool) -> bool:
    return not enabled or bool(os.environ.get("SELFALIGN_NO_PROGRESS"))


def progress(
    iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "rec", enabled: bool = True
) -> Iterator[T]:
    """A tqdm bar on stderr with rate and ETA; quiet when disabled or SELFALIGN_NO_PROGRESS is set."""
    disable = _disabled(enabled)
    yield from tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        file=sys.stderr,
        disable=disable,
        mininterval=1.0,
        dynamic_ncols=True,
        smoothing=0.1,
    )


def progress_bar(
    *, desc: str, total: int | None, unit: str = "rec", initial: int = 0, enabled: bool = True
) -> tqdm:
    """A manually updated bar (``bar.update(n)``), for work that finishes in chunks."""
    return tqdm(
        desc=desc,
        total=total,
        unit=unit,
        initial=initial,
        file=sys.stderr,
        disable=_disabled(enabled),
        mininterval=1.0,
        dynamic_ncols=True,
        smoothing=0.1,
    )


def default_workers() -> int:
    """Cores this process may use (respects affinity masks, e.g. a SLURM allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
