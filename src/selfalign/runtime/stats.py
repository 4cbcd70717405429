"""A stage's counts (:class:`StageStats`) and its drop records, their detail strings capped."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Environment variable holding the cap on a drop record's detail strings (config
#: ``drops.detail_chars``; the Snakefile sets it for every job).
DETAIL_CAP_ENV = "SELFALIGN_DROP_DETAIL_CHARS"
DEFAULT_DETAIL_CHARS = 2000


def detail_cap() -> int:
    """The longest a string in a drop record's detail may be (``drops.detail_chars``)."""
    value = os.environ.get(DETAIL_CAP_ENV, "")
    try:
        return max(16, int(value)) if value else DEFAULT_DETAIL_CHARS
    except ValueError:
        raise ValueError(f"{DETAIL_CAP_ENV}={value!r}: expected a number of characters") from None


def cap_detail(detail: Mapping[str, Any], cap: int) -> dict[str, Any]:
    """Strings longer than ``cap`` cut to ``cap`` characters: the end of a ``*_tail`` (where
    the error is), the start of anything else; nested mappings and lists alike."""

    def cut(key: str, value: Any) -> Any:
        if isinstance(value, str) and len(value) > cap:
            return "…" + value[-(cap - 1):] if key.endswith("tail") else value[: cap - 1] + "…"
        if isinstance(value, Mapping):
            return {k: cut(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(key, v) for v in value]
        return value

    return {k: cut(k, v) for k, v in detail.items()}


def drop_record(id: str, reason: str, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One line of a drop file: ``{id, reason, detail}``, detail strings capped (:func:`detail_cap`).
    :meth:`StageStats.drop` makes these; a stage that must order or count them itself (clean's
    input order, I->R's per-sample drops) makes them here too."""
    return {"id": id, "reason": reason, "detail": cap_detail(detail or {}, detail_cap())}


@dataclass
class StageStats:
    """Counts a stage reports; the CLI turns them into the artifact's sidecar.

    ``dropped`` holds a drop record ``{id, reason, detail}`` per dropped record, in input
    order, when the stage names what it dropped (:meth:`drop` with ``id``); the stage's drop
    file (:func:`selfalign.chain.dropped_path`) is written from them.
    """

    n_in: int = 0
    n_out: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    #: the drop file is already written (by :meth:`ResumableOutput.finalize` or a concat);
    #: otherwise the CLI writes it from ``dropped``
    dropped_written: bool = False

    def drop(self, reason: str, n: int = 1, *, id: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        """Count ``n`` records dropped for ``reason``; with ``id``, also keep the drop record
        (its detail strings capped at :func:`detail_cap`)."""
        self.drops[reason] += n
        if id is not None:
            if n != 1:
                raise ValueError("a drop record names one record: n must be 1 with an id")
            self.dropped.append(drop_record(id, reason, detail))

    def merge(self, other: StageStats) -> None:
        self.n_in += other.n_in
        self.n_out += other.n_out
        self.drops.update(other.drops)
        self.dropped.extend(other.dropped)

    def check_balance(self) -> None:
        """Every record in is either out or dropped for a named reason: nothing vanishes."""
        if self.n_in != self.n_out + sum(self.drops.values()):
            raise AssertionError(
                f"record accounting is off: {self.n_in} in != {self.n_out} out + {sum(self.drops.values())} dropped"
            )

    def counts(self) -> dict[str, int]:
        return {"in": self.n_in, "out": self.n_out, "dropped": sum(self.drops.values())}

    def to_json(self) -> dict[str, Any]:
        """The counts as JSON, with the drop records under ``dropped`` when there are any
        (:class:`selfalign.runtime.ResumableOutput` moves them to the unit's drop part)."""
        out = {"n_in": self.n_in, "n_out": self.n_out, "drops": dict(self.drops), "extra": self.extra}
        if self.dropped:
            out["dropped"] = self.dropped
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> StageStats:
        return cls(obj["n_in"], obj["n_out"], Counter(obj["drops"]), dict(obj.get("extra", {})), list(obj.get("dropped", [])))
