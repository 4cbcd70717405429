"""Run untrusted Python samples so that they can neither get out nor hang the caller.

``Sandbox`` is one long-lived sandbox (gVisor by default, bubblewrap, or explicitly none) whose
runner forks a fresh, resource-limited process per sample; ``SandboxPool`` runs many samples over
several sandboxes and returns ``Verdict``s in input order. See ``runner.py`` for the per-sample
confinement and ``backends.py`` for what each backend mounts and why.
"""

from selfalign.sandbox.backends import (
    BACKENDS,
    SandboxUnavailable,
    check_backend,
    validate_backend_choice,
)
from selfalign.sandbox.core import DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_S, Sandbox, SandboxError
from selfalign.sandbox.pool import SandboxPool, run_many
from selfalign.sandbox.verdict import STATUSES, Verdict

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
