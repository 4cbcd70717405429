"""Start the completions server a generating stage talks to, wait for it, and always stop it.

A stage must fail fast and legibly when its server does not come up (wrong model path, port
taken, no GPU): :class:`ServerError` names the command, the URL, the timeout and the last lines
of the server's log. And it must never leave a server behind: the server runs in its own
process group, which is terminated as a whole (vLLM forks engine workers) with SIGTERM and,
after a grace period, SIGKILL. An endpoint the user already runs is only waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

#: Hosts whose readiness probe must not go through an HTTP proxy from the environment.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


class ServerError(RuntimeError):
    """The server exited early or never became ready; the message says which and why."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        timeout_s: float,
        command: Sequence[str] | None = None,
        returncode: int | None = None,
        log_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.url = url
        self.timeout_s = timeout_s
        self.command = list(command) if command is not None else None
        self.returncode = returncode
        self.log_tail = log_tail


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now, so parallel tests and stages never fight over a fixed one.

    Another process may take it before the server binds; the server then exits early and
    :class:`ServerProcess` reports that, so the race costs a clear error, not a hang.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def normalize_base_url(base_url: str) -> str:
    """``http://host:port`` without a trailing ``/`` or ``/v1``, so either spelling works."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def api_base(base_url: str) -> str:
    """The URL the `openai` client wants as its ``base_url`` (ends in ``/v1``)."""
    return normalize_base_url(base_url) + "/v1"


def _probe(url: str, timeout_s: float, api_key: str | None) -> None:
    """One GET of the models list; raises on anything but a 200 carrying JSON."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    host = urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK_HOSTS else []
    opener = urllib.request.build_opener(*handlers)
    with opener.open(request, timeout=timeout_s) as response:
        json.loads(response.read())


class _NotReady(Exception):
    """Internal: why polling stopped, before callers add their own context."""

    def __init__(self, reason: str, returncode: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.returncode = returncode


def _poll(
    url: str,
    timeout_s: float,
    interval_s: float,
    api_key: str | None,
    process: subprocess.Popen[bytes] | None,
) -> float:
    """Poll ``url`` until it answers; seconds waited, or :class:`_NotReady` with the reason."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_error = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            waited = time.monotonic() - started
            raise _NotReady(
                f"exited with code {process.returncode} after {waited:.1f} s, before {url} "
                f"answered (timeout {timeout_s:g} s)",
                process.returncode,
            )
        remaining = deadline - time.monotonic()
        try:
            _probe(url, max(0.1, min(5.0, remaining)), api_key)
            return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (OSError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _NotReady(
                f"did not answer {url} within the {timeout_s:g} s timeout "
                f"(last error: {last_error})"
            )
        time.sleep(min(interval_s, remaining))


def wait_ready(
    base_url: str,
    timeout_s: float,
    *,
    interval_s: float = 0.5,
    api_key: str | None = None,
) -> float:
    """Block until ``GET {base_url}/v1/models`` answers, or raise :class:`ServerError`.

    For endpoints someone else started: a stage should learn that the endpoint is down
    before it sends the first of many requests. Returns the seconds waited.
    """
    url = api_base(base_url) + "/models"
    try:
        return _poll(url, timeout_s, interval_s, api_key, None)
    except _NotReady as exc:
        raise ServerError(
            f"server at {base_url} {exc.reason}", url=url, timeout_s=timeout_s
        ) from None


def cpu_server_command(
    model: str | Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    threads: int | None = None,
    max_batch: int | None = None,
    slots: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Command line of the CPU server, run with this interpreter so it sees this environment."""
    command = [sys.executable, "-m", "selfalign.serving.cpu_server", "--model", str(model)]
    command += ["--host", host, "--port", str(port)]
    if served_model_name is not None:
        command += ["--served-model-name", served_model_name]
    if threads is not None:
        command += ["--threads", str(threads)]
    if max_batch is not None:
        command += ["--max-batch", str(max_batch)]
    if slots is not None:
        command += ["--slots", str(slots)]
    return command + list(extra_args)


def vllm_command(
    model: str,
    revision: str | None,
    port: int,
    extra_args: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
) -> list[str]:
    """``vllm serve`` with the revision pinned and ``--seed 0``, so runs name what they used.

    ``extra_args`` come last, so a profile can override anything (e.g. ``--max-model-len``).
    """
    command = ["vllm", "serve", model]
    if revision is not None:
        command += ["--revision", revision]
    command += ["--host", host, "--port", str(port), "--seed", "0"]
    if served_model_name is not None:
        command += ["--served-model-name", served_model_name]
    return command + list(extra_args)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (``PR_SET_PDEATHSIG``).

    A server runs in its own session so that stopping it reaches all its processes; that also
    puts it out of reach of a kill aimed at the job's process group, so without this a job
    killed with SIGKILL would leave its server running. Elsewhere than Linux: does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log, read from its end so huge logs cost nothing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


class ServerProcess:
    """Context manager: start a server command, wait until it serves, stop its process group.

    ``command=None`` means an endpoint that is already running: entering only waits for it and
    exiting leaves it alone. ``base_url`` is ``http://host:port`` (a trailing ``/v1`` is fine);
    hand :attr:`api_base` to the `openai` client.
    """

    def __init__(
        self,
        command: Sequence[str] | None,
        base_url: str,
        *,
        ready_timeout_s: float = 600.0,
        grace_s: float = 10.0,
        log_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        api_key: str | None = None,
        poll_interval_s: float = 0.5,
        tail_lines: int = 20,
    ) -> None:
        self.command = list(command) if command is not None else None
        self.base_url = normalize_base_url(base_url)
        self.ready_timeout_s = ready_timeout_s
        self.grace_s = grace_s
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.api_key = api_key
        self.poll_interval_s = poll_interval_s
        self.tail_lines = tail_lines
        self.log_path = Path(log_path) if log_path is not None else None
        self._owns_log = log_path is None
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.ready_after_s: float | None = None

    @classmethod
    def cpu(
        cls,
        model: str | Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        served_model_name: str | None = None,
        threads: int | None = None,
        max_batch: int | None = None,
        slots: int | None = None,
        extra_args: Sequence[str] = (),
        **options: Any,
    ) -> ServerProcess:
        """The CPU server on ``port`` (a free one by default)."""
        port = free_port(host) if port is None else port
        command = cpu_server_command(
            model,
            port,
            host=host,
            served_model_name=served_model_name,
            threads=threads,
            max_batch=max_batch,
            slots=slots,
            extra_args=extra_args,
        )
        return cls(command, f"http://{host}:{port}", **options)

    @classmethod
    def vllm(
        cls,
        model: str,
        revision: str | None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        served_model_name: str | None = None,
        extra_args: Sequence[str] = (),
        **options: Any,
    ) -> ServerProcess:
        """A vLLM OpenAI server on ``port`` (a free one by default)."""
        port = free_port(host) if port is None else port
        command = vllm_command(
            model, revision, port, extra_args, host=host, served_model_name=served_model_name
        )
        return cls(command, f"http://{host}:{port}", **options)

    @property
    def api_base(self) -> str:
        """``{base_url}/v1``, what the `openai` client takes as ``base_url``."""
        return api_base(self.base_url)

    @property
    def describe(self) -> str:
        """The command as a shell would show it, for messages."""
        return shlex.join(self.command) if self.command else f"(existing endpoint {self.base_url})"

    def log_tail(self, lines: int | None = None) -> str:
        """Last lines of the server's log ('' for an existing endpoint or before start)."""
        if self.log_path is None:
            return ""
        return _tail(self.log_path, self.tail_lines if lines is None else lines)

    def start(self) -> ServerProcess:
        """Launch (unless existing) and wait until ready; stops what it started on failure."""
        url = self.api_base + "/models"
        if self.command is None:
            self.ready_after_s = wait_ready(
                self.base_url,
                self.ready_timeout_s,
                interval_s=self.poll_interval_s,
                api_key=self.api_key,
            )
            return self
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="selfalign-server-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            except OSError as exc:
                raise ServerError(
                    f"server `{self.describe}` could not start: {exc}",
                    url=url,
                    timeout_s=self.ready_timeout_s,
                    command=self.command,
                ) from exc
        try:
            self.ready_after_s = _poll(
                url, self.ready_timeout_s, self.poll_interval_s, self.api_key, self.process
            )
        except _NotReady as exc:
            self.stop(keep_log=True)
            tail = self.log_tail()
            shown = "\n".join("    " + line for line in tail.splitlines()) or "    (empty)"
            raise ServerError(
                f"server `{self.describe}` {exc.reason}; last lines of its log "
                f"{self.log_path}:\n{shown}",
                url=url,
                timeout_s=self.ready_timeout_s,
                command=self.command,
                returncode=exc.returncode,
                log_tail=tail,
            ) from None
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    def stop(self, *, keep_log: bool = False) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after ``grace_s``.

        A temporary log is removed unless ``keep_log``, which failures set so the path in
        the error message still points at something.
        """
        process = self.process
        if process is not None:
            pgid = process.pid
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            _signal_group(pgid, signal.SIGKILL)
            self.returncode = process.wait()
            self.process = None
        if self._owns_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(keep_log=exc_type is not None)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (signal 0 only checks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
