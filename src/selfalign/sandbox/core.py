"""The host side of one sandbox: start the runner, send samples, and never wait forever.

The runner inside the sandbox enforces each sample's wall-clock limit itself. The host still
keeps its own watchdog (the sample's timeout plus a margin) on every answer, because the runner
(or the sandbox around it) can itself be wedged or killed. A sandbox that does not answer in time
is killed as a whole (its process group, then anything still mentioning its private state dir),
the sample gets a ``timeout``/``watchdog`` verdict, and the next sample starts a fresh sandbox.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import select
import signal
import subprocess
import threading
import time
from types import TracebackType
from typing import Any, Literal, TypedDict

from selfalign.config import check_choice
from selfalign.sandbox import runner as protocol
from selfalign.sandbox.backends import HOST_ENV, Backend, make_backend
from selfalign.sandbox.verdict import Verdict

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 4.0
DEFAULT_MEMORY_BYTES = 1 << 30


class SandboxError(RuntimeError):
    """The sandbox could not be started (repeatedly): the environment is broken, not a sample."""


class _Wedged(Exception):
    """No answer before the watchdog deadline."""


EXEC_MODES = ("module", "function", "release")
"""How a sample's code is executed (see :class:`Sandbox`)."""


class _StepOptions(TypedDict, total=False):
    fail_on_output: bool  # any output fails the step (HumanEval-X's JavaScript rule)


class Step(_StepOptions):
    """One command of a :class:`Program`: its ``argv`` and whether it compiles or runs (a failing
    ``compile`` step is ``fail``/``compile_error``)."""

    argv: list[str]
    stage: Literal["compile", "run"]


class Program(TypedDict):
    """A program for :meth:`Sandbox.run_program`, sent to the runner as JSON: ``files``
    {relative name: text}, ``copy`` [[read-only source dir, relative target]], ``env``
    {name: value} and its ``steps`` in order; ``{workdir}`` in env values and argv is the work
    dir. :func:`selfalign.octopack.executors.program` builds them from the language table."""

    files: dict[str, str]
    copy: list[list[str]]
    env: dict[str, str]
    steps: list[Step]


class _Died(Exception):
    """The runner's pipe closed: the sandbox is gone."""


class Sandbox:
    """One long-lived sandbox running many samples, one forked process per sample.

    Use as a context manager::

        with Sandbox("gvisor") as sb:
            verdict = sb.run(code, timeout_s=4.0)

    ``backend``: ``"gvisor"`` (default), ``"bubblewrap"``, ``"podman"`` (the sandbox image
    ``image`` under gVisor) or ``"none"`` (unsandboxed; requires ``allow_unsandboxed=True`` and
    warns).

    ``exec_mode``: ``module`` (default) runs the sample as one module (``exec`` in a fresh
    ``__main__`` module's globals), like ``python sample.py``, and it passes only if it ran to its
    end. ``release`` reproduces the release's execution filter (starcoder2-self-align 0b19dbc,
    see ``runner.release_run``): ``exec(code)`` inside a function, after evalplus's
    ``reliability_guard``, with the script's module globals, output swallowed, an alarm after
    ``release_alarm_s`` and the process given ``timeout_s`` in all (the release joined it for
    10 s), and any exit status 0 a pass. ``function`` is the scoping rule alone (the old
    ``upstream_exec_in_function=True``). ``sample_site``: a directory of packages samples may
    import (mounted read-only; backend podman uses its image's own).

    Limits per sample: ``timeout_s`` wall clock (the runner kills the sample's processes; the
    host's watchdog allows ``watchdog_margin_s`` more before it replaces the whole sandbox),
    RLIMIT_CPU ``timeout+2`` s, ``memory_bytes`` RLIMIT_AS, ``nproc`` RLIMIT_NPROC (enforced for
    the uid-65534 sample under gVisor), ``fsize_bytes`` RLIMIT_FSIZE, ``output_limit_bytes`` of
    stdout+stderr (then ``fail``/``output_limit``). ``sandbox_memory_bytes`` caps the whole gVisor
    sandbox (default ``memory_bytes`` + 512 MiB), since a sample may fork.
    """

    def __init__(
        self,
        backend: str = "gvisor",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        nproc: int = 32,
        fsize_bytes: int = 64 << 20,
        output_limit_bytes: int = 4 << 20,
        tail_bytes: int = 4096,
        upstream_exec_in_function: bool = False,
        exec_mode: str | None = None,
        release_alarm_s: float | None = None,
        sample_site: str | None = None,
        allow_unsandboxed: bool = False,
        python: str | None = None,
        extra_ro_paths: tuple[str, ...] = (),
        gvisor_platform: str | None = None,
        preload: tuple[str, ...] | None = None,
        preload_path: tuple[str, ...] = (),
        sandbox_memory_bytes: int | None = None,
        image: str | None = None,
        startup_timeout_s: float = 60.0,
        watchdog_margin_s: float = 5.0,
        max_start_failures: int = 3,
    ) -> None:
        self.backend_name = backend
        self.timeout_s = float(timeout_s)
        self.memory_bytes = int(memory_bytes)
        self.nproc = int(nproc)
        self.fsize_bytes = int(fsize_bytes)
        self.output_limit_bytes = int(output_limit_bytes)
        self.tail_bytes = int(tail_bytes)
        self.exec_mode = exec_mode or ("function" if upstream_exec_in_function else "module")
        check_choice("exec_mode", self.exec_mode, EXEC_MODES)
        self.release_alarm_s = release_alarm_s
        if sample_site is not None and backend != "podman":  # podman: the image's own
            sample_site = os.path.realpath(sample_site)
            if not os.path.isdir(sample_site):
                raise SandboxError(
                    f"sample packages directory {sample_site} does not exist: scripts/setup.sh "
                    "installs envs/sample-release.txt there, or set execution.sample_site: null"
                )
            extra_ro_paths = (*extra_ro_paths, sample_site)
        self._sample_site = sample_site
        self.startup_timeout_s = float(startup_timeout_s)
        self.watchdog_margin_s = float(watchdog_margin_s)
        self.max_start_failures = int(max_start_failures)
        self._backend_args: dict[str, Any] = {
            "python": python,
            "extra_ro_paths": tuple(extra_ro_paths),
            "allow_unsandboxed": allow_unsandboxed,
            "gvisor_platform": gvisor_platform,
            "preload": None if preload is None else tuple(preload),
            "preload_path": tuple(preload_path),
            "image": image,
            # Default: one sample's full allowance plus room for the runner and gVisor itself.
            "memory_limit_bytes": (
                int(sandbox_memory_bytes)
                if sandbox_memory_bytes is not None
                else self.memory_bytes + (512 << 20)
            ),
        }
        # Built now so a missing tool or a missing opt-in fails at construction, not mid-run.
        self.backend: Backend = make_backend(backend, **self._backend_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=64)
        self._stderr_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._start_failures = 0
        self.starts = 0
        self.restarts = 0
        self.runner_info: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def host_pid(self) -> int | None:
        """Host pid of the sandbox's top process (runsc/bwrap/runner); its tree is the sandbox."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the sandbox and wait for the runner's hello; raise SandboxError on failure."""
        if self.alive:
            return
        self._teardown()
        self.backend.prepare()
        try:
            self._proc = subprocess.Popen(
                self.backend.argv(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(HOST_ENV),
                cwd=self.backend.workdir,
                start_new_session=True,  # one process group to kill, whatever runsc spawns
                close_fds=True,
            )
        except OSError as exc:
            self._teardown()
            raise SandboxError(f"could not start the {self.backend_name} sandbox: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._stderr = collections.deque(maxlen=64)
        self._stderr_thread = threading.Thread(
            target=_drain_stderr, args=(self._proc, self._stderr), daemon=True
        )
        self._stderr_thread.start()
        try:
            hello = self._receive(time.monotonic() + self.startup_timeout_s)
        except (_Wedged, _Died, ValueError) as exc:
            detail = self.stderr_text()
            self._teardown()
            raise SandboxError(
                f"the {self.backend_name} sandbox did not start ({type(exc).__name__}): {detail}"
            ) from exc
        if not hello.get("ready"):
            self._teardown()
            raise SandboxError(f"unexpected hello from the runner: {hello!r}")
        self.runner_info = hello
        self.starts += 1

    def close(self) -> None:
        """Stop the runner (EOF on its stdin), kill what remains, remove the backend's files."""
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._teardown()

    def _teardown(self) -> None:
        """Kill the sandbox's whole process group and clean up; safe to call repeatedly."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("sandbox process %s did not die after SIGKILL", proc.pid)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)
            self._stderr_thread = None
        self.backend.cleanup()

    def stderr_text(self) -> str:
        """The last bytes the sandbox process (runsc/bwrap/runner) wrote to its stderr."""
        return b"".join(self._stderr).decode("utf-8", "replace")[-2000:]

    # -- samples -----------------------------------------------------------------------------

    def run_program(
        self,
        program: Program,
        timeout_s: float | None = None,
        *,
        memory_bytes: int | None = None,
        nproc: int | None = None,
    ) -> Verdict:
        """Run a program in another language: its files written to a fresh work dir, its seed
        trees copied there, then its steps (compile, run) in order, all as the sample, under the
        same confinement as a Python sample and one wall-clock limit for all steps together.
        ``pass`` when every step exited 0 (the runner saw the nonce after the last); a failing
        ``compile`` step is ``fail``/``compile_error``, another step ``exit:N`` or
        ``signal:NAME``. ``memory_bytes``/``nproc`` override the sandbox's per-sample limits
        (a JVM reserves far more address space than it uses)."""
        return self.run(
            "", timeout_s, program=program, memory_bytes=memory_bytes, nproc=nproc
        )

    def run(
        self,
        code: str,
        timeout_s: float | None = None,
        *,
        program: Program | None = None,
        memory_bytes: int | None = None,
        nproc: int | None = None,
    ) -> Verdict:
        """Run ``code`` as one module in a fresh process inside the sandbox; never hangs.

        Returns ``pass`` only if the whole module ran to its end. A wedged or dead sandbox is
        replaced, and the sample that met it gets a ``timeout`` (``watchdog``) or ``error``
        (``sandbox_died``) verdict. ``program``: see :meth:`run_program`.
        """
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._lock:
            started = time.monotonic()
            if not self.alive:
                if self._proc is not None or self.starts:
                    self.restarts += 1
                try:
                    self.start()
                    self._start_failures = 0
                except SandboxError as exc:
                    self._start_failures += 1
                    if self._start_failures >= self.max_start_failures:
                        raise
                    log.warning("sandbox start failed (%s); will retry", exc)
                    return Verdict("error", "sandbox_start", time.monotonic() - started)
            request = {
                "nonce": secrets.token_hex(16),
                "code": code,
                "timeout": timeout,
                "memory_bytes": self.memory_bytes if memory_bytes is None else int(memory_bytes),
                "nproc": self.nproc if nproc is None else int(nproc),
                "fsize_bytes": self.fsize_bytes,
                "output_limit": self.output_limit_bytes,
                "tail_bytes": self.tail_bytes,
                "exec_mode": "program" if program is not None else self.exec_mode,
                "program": program,
                "alarm_s": self.release_alarm_s,
                "sample_site": (
                    self.backend.sample_site(self._sample_site) if self._sample_site else None
                ),
                "drop_uid": self.backend.drop_uid,
                "tmp_root": self.backend.tmp_root(),
                "wipe_tmp": self.backend.private_tmp,
            }
            deadline = time.monotonic() + timeout + self.watchdog_margin_s
            try:
                self._send(request, deadline)
                answer = self._receive(deadline)
            except _Wedged:
                log.warning("sandbox did not answer within %.1f s; replacing it", timeout)
                self._teardown()
                return Verdict("timeout", "watchdog", time.monotonic() - started)
            except (_Died, ValueError):
                detail = self.stderr_text()
                self._teardown()
                return Verdict("error", "sandbox_died", time.monotonic() - started, "", detail)
            verdict = Verdict.from_dict(answer)
            if verdict.status == "error" and verdict.reason == "setup":
                # The confinement could not be set up (e.g. the uid drop failed): never ignore.
                log.error("sandbox setup failed for a sample: %s", verdict.stderr_tail)
            return verdict

    # -- framing with a deadline -------------------------------------------------------------

    def _send(self, obj: dict[str, Any], deadline: float) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise _Died()
        body = protocol.json.dumps(obj).encode("utf-8")
        data = memoryview(protocol.HEADER.pack(len(body)) + body)
        fd = proc.stdin.fileno()
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Wedged()
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError) as exc:
                raise _Died() from exc
            data = data[written:]

    def _read_exact(self, n: int, deadline: float) -> bytes:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise _Died()
        fd = proc.stdout.fileno()
        parts: list[bytes] = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Wedged()
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            try:
                chunk = os.read(fd, n)
            except BlockingIOError:
                continue
            if not chunk:
                raise _Died()
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _receive(self, deadline: float) -> dict[str, Any]:
        (length,) = protocol.HEADER.unpack(self._read_exact(protocol.HEADER.size, deadline))
        if length > protocol.MAX_MESSAGE:
            raise ValueError(f"runner message of {length} bytes")
        obj = protocol.json.loads(self._read_exact(length, deadline).decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("runner message is not an object")
        return obj


def _drain_stderr(proc: subprocess.Popen[bytes], sink: collections.deque[bytes]) -> None:
    """Keep reading the sandbox's stderr so it can never block on a full pipe; keep the tail."""
    stream = proc.stderr
    if stream is None:
        return
    try:
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                return
            sink.append(chunk)
    except (OSError, ValueError):
        return
