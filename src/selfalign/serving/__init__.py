"""Serving the OpenAI completions API that every generating stage talks to.

Stages never load a model themselves: they send ``/v1/completions`` requests, so the same
stage code runs against vLLM on a GPU, the CPU server in :mod:`.cpu_server` (tiny profile,
CI), or an endpoint the user already runs. :mod:`.launch` starts and stops those servers.
:mod:`.server` is the interface every stage uses (:class:`ServingSettings`, :func:`serve`).
This module imports nothing heavy, so launching a server does not import torch.
"""

from selfalign.serving.launch import (
    ServerError,
    ServerProcess,
    api_base,
    cpu_server_command,
    free_port,
    vllm_command,
    wait_ready,
)
from selfalign.serving.server import (
    BATCH_INVARIANT_MIN_CC,
    CpuServerParams,
    ModelSpec,
    ServingError,
    ServingParams,
    ServingSettings,
    VllmParams,
    require_batch_invariant_gpu,
    serve,
)

__all__ = [
    "BATCH_INVARIANT_MIN_CC",
    "CpuServerParams",
    "ModelSpec",
    "ServingParams",
    "ServingError",
    "ServingSettings",
    "VllmParams",
    "require_batch_invariant_gpu",
    "serve",
    "ServerError",
    "ServerProcess",
    "api_base",
    "cpu_server_command",
    "free_port",
    "vllm_command",
    "wait_ready",
]
