"""Serving the OpenAI completions API that every generating stage talks to.

Stages never load a model themselves: they send ``/v1/completions`` requests, so the same
stage code runs against vLLM on a GPU, the CPU server in :mod:`.cpu_server` (tiny profile,
CI), or an endpoint the user already runs. :mod:`.launch` starts and stops those servers.
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

__all__ = [
    "ServerError",
    "ServerProcess",
    "api_base",
    "cpu_server_command",
    "free_port",
    "vllm_command",
    "wait_ready",
]
