"""The one way a job gets a model server: :class:`ServingSettings` (which model, which server,
how the client talks to it) and :func:`serve` (start it, wait until it answers, stop it).

Generation (:mod:`selfalign.generation.stages`) and evaluation
(:mod:`selfalign.evaluation.generate`) both take their server from here; :mod:`.launch` holds
the process handling and the readiness check, :mod:`.cpu_server` the CPU server.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from ..config import check_params
from .launch import ServerProcess, free_port, vllm_command

if TYPE_CHECKING:  # generation.client imports serving.launch: import it only when called
    from ..generation.client import ClientParams

log = logging.getLogger(__name__)


class ServingError(RuntimeError):
    """The server the settings ask for cannot be started on this machine (before starting it)."""


@dataclass(frozen=True)
class VllmParams:
    """How a job launches vLLM: ``launcher`` goes in front of ``vllm serve`` (e.g. ``apptainer
    exec --nv docker://vllm/vllm-openai@sha256:...``), ``args`` after it."""

    launcher: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    batch_invariant: bool = True  # VLLM_BATCH_INVARIANT=1 for the server

    def server_env(self) -> dict[str, str]:
        return {"VLLM_BATCH_INVARIANT": "1"} if self.batch_invariant else {}


@dataclass(frozen=True)
class CpuServerParams:
    """The CPU server's settings; ``slots`` requests run at once (one process each)."""

    threads: int = 1
    slots: int = 1
    max_batch: int = 8
    dtype: str = "float32"


@dataclass(frozen=True)
class ServingParams:
    """Which server answers a generation job.

    ``backend``: ``vllm`` (the job starts ``vllm serve <model> --revision <rev>``), ``cpu``
    (the job starts :mod:`selfalign.serving.cpu_server` on the model directory) or ``endpoint``
    (a running OpenAI-compatible server at ``endpoint``; the job only waits for it).
    """

    backend: Literal["vllm", "cpu", "endpoint"]
    served_model_name: str
    endpoint: str | None = None
    ready_timeout_s: float = 1800.0
    vllm: VllmParams = field(default_factory=VllmParams)
    cpu: CpuServerParams = field(default_factory=CpuServerParams)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingParams:
        check_params(cls, data, "serving")  # types, choices, the endpoint's form: the schema's
        values = dict(data)
        vllm = dict(values.pop("vllm", None) or {})
        check_params(VllmParams, vllm, "serving.vllm")
        cpu = dict(values.pop("cpu", None) or {})
        check_params(CpuServerParams, cpu, "serving.cpu")
        made = cls(
            **values,
            vllm=VllmParams(tuple(vllm.get("launcher") or ()), tuple(vllm.get("args") or ()),
                            bool(vllm.get("batch_invariant", True))),
            cpu=CpuServerParams(**cpu),
        )
        if made.backend not in ("vllm", "cpu", "endpoint"):
            raise ValueError(f"serving.backend must be vllm, cpu or endpoint, got {made.backend!r}")
        if made.backend == "endpoint" and not made.endpoint:
            raise ValueError("serving.backend endpoint needs serving.endpoint (the server's URL)")
        return made


@dataclass(frozen=True)
class ModelSpec:
    """The base model: a Hub name at a pinned revision, or a local directory."""

    name: str
    revision: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        values = {k: v for k, v in data.items() if k in ("name", "revision")}
        return cls(**values)


@dataclass(frozen=True)
class ServingSettings:
    """What a job needs to get a server and talk to it: the config's ``model``, ``serving``
    and ``client`` sections."""

    model: ModelSpec
    serving: ServingParams
    client: Mapping[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingSettings:
        unknown = sorted(set(data) - {"model", "serving", "client"})
        if unknown:
            raise ValueError(f"serving settings take model, serving and client; unknown: {', '.join(unknown)}")
        for key in ("model", "serving", "client"):
            if key not in data:
                raise ValueError(f"serving settings need the {key!r} section")
        return cls(ModelSpec.from_dict(data["model"]), ServingParams.from_dict(data["serving"]), dict(data["client"]))

    @property
    def batch_invariant(self) -> bool:
        """Whether the server answers batch-invariant (vLLM's mode; the CPU server always is:
        it decodes each request's rows alone)."""
        return self.serving.backend != "vllm" or self.serving.vllm.batch_invariant

    def client_params(self, base_url: str) -> ClientParams:
        from ..generation.client import ClientParams

        return ClientParams.from_dict({**self.client, "base_url": base_url, "model": self.serving.served_model_name})


#: vLLM's batch-invariant kernels need this NVIDIA compute capability or higher (its docs).
BATCH_INVARIANT_MIN_CC = (8, 0)


def require_batch_invariant_gpu() -> None:
    """Stop before starting vLLM where ``nvidia-smi`` reports a GPU too old for its
    batch-invariant mode; where there is no ``nvidia-smi`` (a container launcher, a fake in
    tests) vLLM itself decides."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return
    try:
        caps = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return
    for line in caps:
        name, _, cap = line.rpartition(",")
        try:
            major, minor = (int(x) for x in cap.strip().split("."))
        except ValueError:
            continue
        if (major, minor) < BATCH_INVARIANT_MIN_CC:
            raise ServingError(
                f"serving.vllm.batch_invariant: {name.strip()} has compute capability {major}.{minor}; vLLM's "
                f"batch-invariant mode needs >= {BATCH_INVARIANT_MIN_CC[0]}.{BATCH_INVARIANT_MIN_CC[1]}. "
                "Set serving.vllm.batch_invariant: false (outputs then depend on what is batched together)."
            )


@contextlib.contextmanager
def serve(
    settings: ServingSettings, *, model_dir: str | Path | None = None, log_path: Path | None = None,
    base_url: str | None = None,
) -> Iterator[str]:
    """The server for a job, ready, as its ``http://host:port``; stopped when the block ends.

    ``model_dir`` (the tiny profile's built model) stands in for ``model.name`` on the CPU
    server. An ``endpoint`` is only waited for and left running. ``base_url``: a server the
    caller already runs, used as it is (nothing started, nothing waited for here).
    """
    if base_url is not None:
        yield base_url
        return
    serving = settings.serving
    options: dict[str, Any] = {"ready_timeout_s": serving.ready_timeout_s}
    if log_path is not None:
        options["log_path"] = log_path
    if serving.backend == "endpoint":
        server = ServerProcess(None, cast(str, serving.endpoint), **options)
    elif serving.backend == "cpu":
        cpu = serving.cpu
        server = ServerProcess.cpu(
            model_dir or settings.model.name,
            served_model_name=serving.served_model_name,
            threads=cpu.threads,
            max_batch=cpu.max_batch,
            slots=cpu.slots,
            extra_args=["--dtype", cpu.dtype],
            **options,
        )
    else:
        port = free_port()
        command = [
            *serving.vllm.launcher,
            *vllm_command(
                str(model_dir or settings.model.name),
                None if model_dir else settings.model.revision,
                port,
                serving.vllm.args,
                served_model_name=serving.served_model_name,
            ),
        ]
        if serving.vllm.batch_invariant:
            require_batch_invariant_gpu()
        server = ServerProcess(command, f"http://127.0.0.1:{port}", env=serving.vllm.server_env(), **options)
    with server:
        log.info("server ready at %s (%s)", server.base_url, server.describe)
        yield server.base_url
