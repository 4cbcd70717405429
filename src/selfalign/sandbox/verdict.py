"""The outcome of running one sample: what the execution stage records and counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "timeout", "error"]
STATUSES: tuple[str, ...] = ("pass", "fail", "timeout", "error")


@dataclass(frozen=True)
class Verdict:
    """One sample's verdict.

    ``status`` is ``pass`` only when the whole module ran to its end (the runner saw the
    per-sample nonce); ``fail`` when the code ended otherwise (an assertion, an exception, an exit,
    a signal, too much output); ``timeout`` when the wall-clock limit (or the CPU limit) hit;
    ``error`` when the sandbox itself broke, so the sample's own merit is unknown.

    ``reason`` is short and countable (``assertion``, ``exception:NameError``, ``exit:1``,
    ``early_exit``, ``memory``, ``signal:SIGSEGV``, ``output_limit``, ``timeout``,
    ``watchdog``, ``sandbox_died``, ...), so a funnel can be tallied by reason. The tails are
    the last few KB of the sample's stdout and stderr, for debugging only.
    """

    status: Status
    reason: str
    seconds: float
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Verdict:
        status = str(obj.get("status", "error"))
        if status not in STATUSES:
            status = "error"
        return cls(
            status=status,  # type: ignore[arg-type]
            reason=str(obj.get("reason", "unknown")),
            seconds=float(obj.get("seconds", 0.0)),
            stdout_tail=str(obj.get("stdout_tail", "")),
            stderr_tail=str(obj.get("stderr_tail", "")),
        )
