"""Run untrusted programs (Python samples, and HumanEvalPack's six languages) so that they can
neither get out nor hang the caller.

``Sandbox`` is one long-lived sandbox (gVisor by default, bubblewrap, or explicitly none) whose
runner forks a fresh, resource-limited process per sample; ``SandboxPool`` runs many samples over
several sandboxes and returns ``Verdict``s in input order. See ``runner.py`` for the per-sample
confinement, ``backends.py`` for what each backend mounts and why, and ``languages.py`` for the
languages it compiles and runs.

The names below are imported when first used, so reading the language table
(:mod:`selfalign.sandbox.languages`) does not load the sandbox.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selfalign.sandbox.backends import (
        BACKENDS,
        SandboxUnavailable,
        check_backend,
        validate_backend_choice,
    )
    from selfalign.sandbox.core import (
        DEFAULT_MEMORY_BYTES,
        DEFAULT_TIMEOUT_S,
        Sandbox,
        SandboxError,
    )
    from selfalign.sandbox.pool import SandboxPool, run_many
    from selfalign.sandbox.verdict import STATUSES, Verdict

_WHERE = {
    "BACKENDS": "backends",
    "SandboxUnavailable": "backends",
    "check_backend": "backends",
    "validate_backend_choice": "backends",
    "DEFAULT_MEMORY_BYTES": "core",
    "DEFAULT_TIMEOUT_S": "core",
    "Sandbox": "core",
    "SandboxError": "core",
    "SandboxPool": "pool",
    "run_many": "pool",
    "STATUSES": "verdict",
    "Verdict": "verdict",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'selfalign.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"selfalign.sandbox.{module}"), name)


__all__ = [
    "BACKENDS",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_TIMEOUT_S",
    "STATUSES",
    "Sandbox",
    "SandboxError",
    "SandboxPool",
    "SandboxUnavailable",
    "Verdict",
    "check_backend",
    "run_many",
    "validate_backend_choice",
]
