"""The long-lived runner that lives inside one sandbox and executes samples, one fork each.

This file is executed by the sandboxed interpreter as a script (``python -I -S runner.py``),
never imported inside the sandbox as part of ``selfalign``: it must depend on the standard
library only, so the sandbox needs nothing but the interpreter's prefix mounted read-only.
(The host may import it for its constants; it has no import-time side effects.)

Why a runner at all: starting a gVisor sandbox costs ~0.25 s, far more than a typical sample.
One sandbox per worker stays up; for every sample the runner forks a fresh child, so samples
never share a process, and the fork is the only per-sample start-up cost.

Protocol (binary, on the runner's stdin/stdout): every message is a 4-byte big-endian length
followed by that many bytes of UTF-8 JSON. The runner first sends ``{"ready": true, ...}``;
then for each request ``{"nonce", "code", "timeout", ...}`` it answers one verdict object
``{"status", "reason", "seconds", "stdout_tail", "stderr_tail"}``. EOF on stdin ends it.

How a sample passes: the child writes ``"<nonce> ok"`` on a private pipe (fd 3) only after
the whole module was executed and its non-daemon threads finished. The nonce is random per
sample and sent only with the request, so ``os._exit(0)`` half-way through (exit status 0,
no message) reads as ``early_exit``, not as a pass. This guards against accidents and
ordinary early exits, not against code that digs the nonce out of its own interpreter's memory.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the runner imports nothing it does not need
    from collections.abc import Iterator

HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 * 1024 * 1024
RESULT_FD = 3
_READ_CHUNK = 65536

PRELOAD: tuple[str, ...] = ("traceback", "typing")
"""Stdlib modules imported once by the runner so every forked sample inherits them.

Under gVisor (ptrace platform) every import is many intercepted system calls: in a child,
``import typing`` costs ~13 ms and ``traceback`` (used on every failing sample) ~12 ms, against
~25 ms for the whole fork-run-exit of a trivial sample. But a bigger runner also makes every
fork slower, so preloading a long list (unittest ~45 ms, dataclasses ~20 ms, ...) lost on a
realistic mix; these two won. ``random`` reseeds itself in forked children
(``os.register_at_fork``), so preloading it would not make samples share random sequences.
"""


def _freeze() -> None:
    """Move everything the runner has allocated out of the GC's reach (``gc.freeze``): a
    forked sample's collections then do not write to those objects' headers, so their pages
    stay shared instead of being copied on write, and a page fault under gVisor's ptrace
    platform is expensive (measured: 27 -> 24 ms per trivial sample in release mode)."""
    import gc

    gc.collect()
    gc.freeze()


def preload(names: tuple[str, ...]) -> None:
    """Import ``names``, ignoring modules this interpreter lacks."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional module only costs speed
            pass


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes | None:
    """Blocking read of exactly n bytes; None on EOF (the host went away)."""
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send(fd: int, obj: dict) -> None:
    """Write one length-prefixed JSON message."""
    body = json.dumps(obj).encode("utf-8")
    _write_all(fd, HEADER.pack(len(body)) + body)


def receive(fd: int) -> dict | None:
    """Read one length-prefixed JSON message; None on a clean EOF."""
    head = _read_exact(fd, HEADER.size)
    if head is None:
        return None
    (length,) = HEADER.unpack(head)
    if length > MAX_MESSAGE:
        raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    body = _read_exact(fd, length)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


# ---------------------------------------------------------------------------------------------
# The release's execution filter, reproduced (exec_mode "release")
# ---------------------------------------------------------------------------------------------
#
# starcoder2-self-align 0b19dbc, src/star_align/execution_filter.py, ``_run(code)`` in a forked
# ``multiprocessing.Process`` of the script run as ``__main__``: evalplus's ``create_tempdir``,
# then ``reliability_guard(1 GiB)``, then ``exec(code)`` under ``swallow_io`` and
# ``time_limit(4)``, then the saved os/shutil functions restored. A sample passed when the
# process exited 0. What follows is a stdlib-only port of those pieces (evalplus 25e195e0's
# eval/utils.py), so that a sample passes or fails here as it did there: ``exec`` with the
# script's globals and ``_run``'s locals (top-level names of the sample land in the locals:
# recursion and helpers called from functions fail), ``open``, ``os.getcwd``, ``subprocess``
# and the rest disabled, output swallowed, stdin unreadable, and an exception (SystemExit
# too) failing in the temporary directory's clean-up, where ``os.chdir`` is gone.

#: Modules the release's pieces use, imported once by the runner so forked samples inherit them.
RELEASE_PRELOAD = (
    "ast", "contextlib", "faulthandler", "io", "json", "platform", "re", "shutil", "subprocess",
)

#: Modules the release's process had imported before its guard (numpy and tqdm from the sample
#: packages), each imported in a sample's child before the guard when the sample's code names
#: it. Imported after the guard, numpy fails (os.putenv is gone); imported in the runner, they
#: would make every fork under gVisor slower (a bigger address space to copy), though only a
#: sample that names them can tell they are there.
RELEASE_LAZY = {"numpy": "numpy", "tqdm": "tqdm.auto", "multiprocessing": "multiprocessing",
                "concurrent": "concurrent.futures", "Process": "multiprocessing",
                "cpu_count": "multiprocessing", "ProcessPoolExecutor": "concurrent.futures",
                "as_completed": "concurrent.futures"}

#: ``os`` functions evalplus's reliability_guard sets to None.
_GUARDED_OS = (
    "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
    "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
    "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
)


class TimeoutException(Exception):
    """evalplus's ``time_limit`` raises this (name kept: a sample may catch it by name)."""


def _reliability_guard(maximum_memory_bytes: int) -> None:
    import builtins
    import faulthandler
    import platform
    import shutil
    import subprocess

    kinds = [resource.RLIMIT_AS, resource.RLIMIT_DATA]
    if platform.uname().system != "Darwin":
        kinds.append(resource.RLIMIT_STACK)
    for kind in kinds:
        _soft, hard = resource.getrlimit(kind)
        value = maximum_memory_bytes if hard == resource.RLIM_INFINITY else min(maximum_memory_bytes, hard)
        resource.setrlimit(kind, (value, value))  # never above the sandbox's own limit
    faulthandler.disable()
    builtins.exit = None  # type: ignore[assignment]
    builtins.quit = None  # type: ignore[assignment]
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in _GUARDED_OS:
        setattr(os, name, None)
    builtins.open = None  # type: ignore[assignment]
    shutil.rmtree = None  # type: ignore[assignment]
    shutil.move = None  # type: ignore[assignment]
    shutil.chown = None  # type: ignore[assignment]
    subprocess.Popen = None  # type: ignore[assignment,misc]
    builtins.help = None  # type: ignore[assignment]
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None  # type: ignore[assignment]


def _release_globals(namespace: dict, code: str) -> None:
    """The names execution_filter.py's module held, which its ``exec(code)`` let a sample use
    unimported: the standard-library ones (those from multiprocessing and concurrent.futures
    only where the code names them, see RELEASE_LAZY); its third-party imports (``Fire``,
    ``tqdm``, evalplus's helpers) and its own functions are not provided here."""
    import ast
    import json
    import re
    import shutil

    namespace.update(
        __name__="__main__", __file__="src/star_align/execution_filter.py", __doc__=None,
        ast=ast, json=json, os=os, re=re, shutil=shutil, sys=sys,
    )
    for name, module in (("ProcessPoolExecutor", "concurrent.futures"), ("as_completed", "concurrent.futures"),
                         ("Process", "multiprocessing"), ("cpu_count", "multiprocessing")):
        if name in code:
            namespace[name] = getattr(__import__(module, fromlist=[name]), name)


def _release_imports(code: str) -> None:
    """What the release's process had imported before its guard, where the code can tell."""
    import importlib

    for trigger, module in RELEASE_LAZY.items():
        if trigger in code and module not in sys.modules:
            try:
                importlib.import_module(module)
            except ImportError:  # not in the sample packages: the sample's own import fails later
                pass


def release_run(compiled: object, code: str, namespace: dict, alarm_s: float, memory_bytes: int) -> None:
    """``_run(code)`` of the release's execution filter (see above); raises what it raised."""
    import contextlib
    import io
    import shutil

    class _WriteOnly(io.StringIO):
        def read(self, *args: object, **kwargs: object) -> str:
            raise OSError

        def readline(self, *args: object, **kwargs: object) -> str:  # type: ignore[override]
            raise OSError

        def readlines(self, *args: object, **kwargs: object) -> list[str]:  # type: ignore[override]
            raise OSError

        def readable(self, *args: object, **kwargs: object) -> bool:
            return False

    @contextlib.contextmanager
    def swallow_io() -> Iterator[None]:
        stream = _WriteOnly()
        saved = sys.stdin
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            sys.stdin = stream
            try:
                yield
            finally:
                sys.stdin = saved

    @contextlib.contextmanager
    def time_limit(seconds: float) -> Iterator[None]:
        def handler(signum: int, frame: object) -> None:
            raise TimeoutException("Timed out!")

        signal.setitimer(signal.ITIMER_REAL, seconds)
        signal.signal(signal.SIGALRM, handler)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    _release_imports(code)
    _release_globals(namespace, code)
    # evalplus's create_tempdir: a fresh empty directory as the working directory. The runner's
    # own per-sample directory is one already (making another costs ~5 ms under gVisor).
    tempdir = os.getcwd()
    rmtree, rmdir, chdir_, getcwd = shutil.rmtree, os.rmdir, os.chdir, os.getcwd
    maximum_memory_bytes = 1 << 30
    _reliability_guard(min(maximum_memory_bytes, memory_bytes))
    frame_locals = {
        "code": code, "rmtree": rmtree, "rmdir": rmdir, "chdir": chdir_, "getcwd": getcwd,
        "maximum_memory_bytes": maximum_memory_bytes,
    }
    # An exception here fails the sample, as in the release (whose create_tempdir clean-up then
    # raised a TypeError over it: os.chdir was None); the runner reports the sample's own.
    with swallow_io(), time_limit(alarm_s):
        exec(compiled, namespace, frame_locals)  # type: ignore[arg-type]
    shutil.rmtree, os.rmdir, os.chdir, os.getcwd = rmtree, rmdir, chdir_, getcwd
    # Then TemporaryDirectory removed the directory with shutil.rmtree, whose os.unlink was
    # still None: it succeeded only if the sample had left nothing but (empty) directories.
    _release_rmtree_check(tempdir)


def _release_rmtree_check(path: str) -> None:
    """Raise what the release's clean-up raised if ``path`` holds anything but directories."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _release_rmtree_check(entry.path)
        else:
            raise TypeError("'NoneType' object is not callable (shutil.rmtree: os.unlink is None)")


# ---------------------------------------------------------------------------------------------
# The child: one sample, one process
# ---------------------------------------------------------------------------------------------


def _exception_reason(exc: BaseException) -> str:
    """A short, countable reason for an exception that ended the sample."""
    if isinstance(exc, AssertionError):
        return "assertion"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or code is False:
            code = 0
        elif code is True:
            code = 1
        return f"exit:{code if isinstance(code, int) else 1}"
    if isinstance(exc, RecursionError):
        return "exception:RecursionError"
    name = type(exc).__name__
    name = "".join(c for c in name if c.isalnum() or c == "_")[:64] or "Exception"
    return f"exception:{name}"


def _child(req: dict, out_w: int, err_w: int, res_w: int, workdir: str) -> None:
    """Set up the confinement a sample runs under, execute it, report on fd 3. Never returns.

    Order matters: new session first (so the runner can kill the whole group), then fds (so
    nothing of the runner's protocol pipes leaks in), then limits, then privileges (RLIMIT_NPROC
    is only enforced for non-root), then the working directory and a scrubbed environment.
    """
    _exit = os._exit
    _write = os.write
    nonce = str(req["nonce"])
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(res_w, RESULT_FD)
        os.closerange(RESULT_FD + 1, 65536)

        timeout = float(req["timeout"])
        cpu = int(timeout) + 2
        limits = [
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, int(req["memory_bytes"])),
            (resource.RLIMIT_FSIZE, int(req["fsize_bytes"])),
            (resource.RLIMIT_NPROC, int(req["nproc"])),
            (resource.RLIMIT_NOFILE, 256),
        ]
        for kind, value in limits:
            resource.setrlimit(kind, (value, value))

        uid = req.get("drop_uid")
        if uid is not None:
            os.setgroups([])
            os.setgid(int(uid))
            os.setuid(int(uid))
            if os.getuid() == 0 or os.geteuid() == 0:
                raise RuntimeError("privilege drop did not take effect")
        os.chdir(workdir)
        os.environ.clear()  # also unsetenv()s, so subprocesses inherit nothing either
        os.environ.update(
            {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        )
        sys.argv = ["<sample>"]
        import builtins
        import types

        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        # pickle and dataclasses look a class's module up in sys.modules: give them the sample.
        sys.modules["__main__"] = module
        code = req["code"]
        exec_mode = str(req.get("exec_mode") or ("function" if req.get("exec_in_function") else "module"))
        program = req.get("program") if exec_mode == "program" else None
        alarm_s = float(req.get("alarm_s") or timeout)
        memory_bytes = int(req["memory_bytes"])
        site = req.get("sample_site")
        if site:
            sys.path.insert(0, str(site))  # packages the sample may import (read-only mount)
        del req
        if program is not None:
            _prepare_program(program, workdir)
    except BaseException as exc:  # noqa: BLE001 - the setup itself failed: the sandbox is broken
        try:
            _write(RESULT_FD, f"{nonce} setup {type(exc).__name__}: {exc}"[:400].encode())
        finally:
            _exit(70)

    if program is not None:
        reason = _run_program(program, workdir)
        _write(RESULT_FD, f"{nonce} {'ok' if reason is None else 'fail ' + reason}".encode())
        _exit(0 if reason is None else 1)

    try:
        compiled = compile(code, "<sample>", "exec")
        if exec_mode == "release":
            release_run(compiled, code, module.__dict__, alarm_s, memory_bytes)
        elif exec_mode == "function":
            # ``exec(code)`` inside a function body binds top-level names in that function's
            # locals dict, so functions that call a helper or themselves fail with NameError.
            exec(compiled, module.__dict__, {})
        else:
            exec(compiled, module.__dict__)
        # A module is finished when the interpreter would exit: non-daemon threads are joined.
        threading = sys.modules.get("threading")
        if threading is not None:
            for thread in threading.enumerate():
                if thread is not threading.main_thread() and not thread.daemon:
                    thread.join()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed stream must not turn a pass into a crash
                pass
        _write(RESULT_FD, f"{nonce} ok".encode())
        _exit(0)
    except BaseException as exc:  # noqa: BLE001 - every way a sample can end is a verdict
        reason = _exception_reason(exc)
        try:
            sys.stdout.flush()  # what the sample printed before failing helps debugging
        except BaseException:  # noqa: BLE001
            pass
        try:
            import traceback

            if exec_mode != "release":
                tb = exc.__traceback__
                tb = tb.tb_next if tb is not None else None  # drop the runner's own frame
                traceback.print_exception(type(exc), exc, tb, limit=8)
            else:
                # release mode: from the sample's own first frame (formatting the emulation's
                # frames would make traceback read more source files, at a cost under gVisor)
                tb = exc.__traceback__
                while tb is not None and tb.tb_frame.f_code.co_filename != "<sample>":
                    tb = tb.tb_next
                traceback.print_exception(type(exc), exc, tb, limit=8, chain=False)
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        try:
            _write(RESULT_FD, f"{nonce} fail {reason}".encode())
        finally:
            _exit(1)
    _exit(71)


# ---------------------------------------------------------------------------------------------
# Programs in other languages (exec_mode "program"): files, a seeded tree, then steps
# ---------------------------------------------------------------------------------------------


def _prepare_program(program: dict, workdir: str) -> None:
    """Write the program's files and copy its seed trees (e.g. a warm Go build cache) into the
    sample's own work dir. Names are plain relative paths; nothing is written outside."""
    for name, text in dict(program.get("files") or {}).items():
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"program file name {name!r} is not a plain relative path")
        path = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(str(text))
    for source, dest in program.get("copy") or ():
        if str(dest).startswith("/") or ".." in str(dest).split("/"):
            raise ValueError(f"program copy target {dest!r} is not a plain relative path")
        _copy_tree(str(source), os.path.join(workdir, str(dest)))


def _copy_tree(source: str, dest: str) -> None:
    """Copy a read-only tree into the sample's dir, owned by the sample (stdlib only, no shutil:
    each import costs under gVisor)."""
    for root, _dirs, files in os.walk(source):
        target = os.path.join(dest, os.path.relpath(root, source))
        os.makedirs(target, exist_ok=True)
        for name in files:
            with open(os.path.join(root, name), "rb") as src, open(
                os.path.join(target, name), "wb"
            ) as out:
                out.write(src.read())


def _run_program(program: dict, workdir: str) -> str | None:
    """Run each step in order, in the work dir, with the program's environment (on top of the
    sample's scrubbed one). None when every step exited 0; else the countable reason of the first
    that did not: ``compile_error`` for a step of stage ``compile``, ``exit:N`` / ``signal:NAME``
    for the others. The runner's deadline covers all steps together."""
    env = dict(os.environ)
    env.update({str(k): str(v).replace("{workdir}", workdir) for k, v in (program.get("env") or {}).items()})
    for number, step in enumerate(program.get("steps") or ()):
        argv = [str(a).replace("{workdir}", workdir) for a in step["argv"]]
        # fail_on_output: the step's output is the verdict (HumanEval-X's JavaScript rule: any
        # byte on stdout or stderr fails, e.g. console.assert's message, which exits 0).
        captured = (
            [os.path.join(workdir, f".step{number}.{n}") for n in ("out", "err")]
            if step.get("fail_on_output")
            else []
        )
        try:
            pid = os.fork()
        except OSError as exc:
            os.write(2, f"cannot start {argv[0]}: {exc}\n".encode())
            return f"fork_failed:{type(exc).__name__}"
        if pid == 0:
            try:
                for fd, path in zip((1, 2)[: len(captured)], captured, strict=True):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
                os.execve(argv[0], argv, env)
            except BaseException as exc:  # noqa: BLE001 - report, never return into the runner
                try:
                    os.write(2, f"cannot execute {argv[0]}: {exc}\n".encode())
                finally:
                    os._exit(127)
        _, status = os.waitpid(pid, 0)
        if captured:
            sizes = []
            for fd, path in zip((1, 2), captured, strict=True):
                with open(path, "rb") as fh:
                    data = fh.read()
                sizes.append(len(data))
                os.write(fd, data)  # the tails show what the step printed
            if sizes[1] or sizes[0]:
                return "output:stderr" if sizes[1] else "output:stdout"
            continue  # no output: a pass, whatever the exit status (the rule it reproduces)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            continue
        if step.get("stage") == "compile":
            return "compile_error"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                return "timeout"
            try:
                return f"signal:{signal.Signals(sig).name}"
            except ValueError:
                return f"signal:{sig}"
        return f"exit:{os.WEXITSTATUS(status)}"
    return None


# ---------------------------------------------------------------------------------------------
# The runner's side of one sample
# ---------------------------------------------------------------------------------------------


class _Tail:
    """Keep the last ``keep`` bytes of a stream and count all of them."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.total = 0
        self.buf = bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > 2 * self.keep:
            del self.buf[: len(self.buf) - self.keep]

    def text(self) -> str:
        return bytes(self.buf[-self.keep :]).decode("utf-8", "replace") if self.keep else ""


def _set_subreaper() -> bool:
    """Make orphaned descendants reparent to us (not to host init), so we can find and kill them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001
        return False


def _children(me: int) -> list[int]:
    """Our direct children, from /proc (used only outside a private pid namespace)."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def kill_everything(pid: int) -> None:
    """Kill the sample's process group and every descendant that escaped it, then reap them all.

    Inside a sandbox the runner is pid 1 of its own pid namespace, so ``kill(-1)`` reaches every
    other process there (grandchildren that called setsid, fork bombs). Outside one it relies on
    being a child subreaper and kills its children until none is left.
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    me = os.getpid()
    give_up = time.monotonic() + 5.0
    while True:
        if me == 1:
            try:
                os.kill(-1, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            while True:
                reaped, _ = os.waitpid(-1, os.WNOHANG)
                if reaped == 0:
                    break
        except ChildProcessError:
            return  # no children left at all: nothing of the sample survives
        if me != 1:
            for child in _children(me):
                for target in (lambda c: os.killpg(c, signal.SIGKILL), lambda c: os.kill(c, 9)):
                    try:
                        target(child)
                    except (ProcessLookupError, PermissionError):
                        pass
        if time.monotonic() > give_up:
            return
        time.sleep(0.001)


def _wipe(path: str, keep_root: bool) -> None:
    """Remove a directory tree without following symlinks or entering other mounts; errors are
    ignored. A read-only host directory mounted below /tmp (a virtualenv under /tmp holding
    evalplus or the sample packages) stays, and is not walked: a plain rmtree walked all of it
    after every sample, failing on every file (seconds per sample for a venv)."""
    try:
        device = os.lstat(path).st_dev
    except OSError:
        return
    _wipe_below(path, device)
    if not keep_root:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _wipe_below(path: str, device: int) -> None:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_dev != device:
                    continue  # another mount (read-only host directory): leave it alone
                _wipe_below(entry.path, device)
                os.rmdir(entry.path)  # fails, harmlessly, where a mount point is below
            else:
                os.unlink(entry.path)
        except OSError:
            pass


class Runner:
    """State kept across samples: the SIGCHLD wake-up pipe and a counter for work dirs."""

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.count = 0
        self.release_ready = False
        if os.getpid() != 1:
            _set_subreaper()

    def run(self, req: dict) -> dict:
        """Execute one sample in a fresh child and return its verdict."""
        if req.get("exec_mode") == "release" and not self.release_ready:
            preload(RELEASE_PRELOAD)
            _freeze()
            self.release_ready = True
        start = time.monotonic()
        self.count += 1
        tmp_root = req.get("tmp_root") or "/tmp"
        workdir = os.path.join(tmp_root, f"sample-{os.getpid()}-{self.count}")
        tail_bytes = int(req.get("tail_bytes", 4096))
        out, err = _Tail(tail_bytes), _Tail(tail_bytes)
        try:
            os.mkdir(workdir, 0o700)
            if req.get("drop_uid") is not None:
                os.chown(workdir, int(req["drop_uid"]), int(req["drop_uid"]))
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            res_r, res_w = os.pipe()
        except OSError as exc:
            return _verdict("error", f"setup:{type(exc).__name__}", start, out, err)

        try:
            pid = os.fork()
        except OSError as exc:  # e.g. EAGAIN: report it and keep serving
            for fd in (out_r, out_w, err_r, err_w, res_r, res_w):
                os.close(fd)
            _wipe(workdir, keep_root=False)
            return _verdict("error", f"setup:{type(exc).__name__}", start, out, err)
        if pid == 0:
            try:
                _child(req, out_w, err_w, res_w, workdir)
            finally:
                os._exit(72)

        for fd in (out_w, err_w, res_w):
            os.close(fd)
        result = bytearray()
        streams = {out_r: out, err_r: err}
        for fd in (out_r, err_r, res_r):
            os.set_blocking(fd, False)
        poller = select.poll()
        for fd in (out_r, err_r, res_r, self.wake_r):
            poller.register(fd, select.POLLIN)
        deadline = start + float(req["timeout"])
        output_limit = int(req.get("output_limit", 4 * 1024 * 1024))
        status_code: int | None = None
        outcome = None  # "timeout" | "output_limit" | None (the child ended by itself)

        def drain(fd: int) -> bool:
            """Read what is there; False once the write side is closed."""
            while True:
                try:
                    data = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    return True
                except OSError:
                    return False
                if not data:
                    return False
                if fd == res_r:
                    if len(result) < 1024:
                        result.extend(data[: 1024 - len(result)])
                else:
                    streams[fd].add(data)
                    if out.total + err.total > output_limit:
                        return True

        open_fds = {out_r, err_r, res_r}
        while True:
            now = time.monotonic()
            if now >= deadline:
                outcome = "timeout"
                break
            events = poller.poll(min(deadline - now, 0.5) * 1000)
            for fd, _ in events:
                if fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif fd in open_fds and not drain(fd):
                    poller.unregister(fd)
                    open_fds.discard(fd)
            if out.total + err.total > output_limit:
                outcome = "output_limit"
                break
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                status_code = status
                break

        kill_everything(pid)
        for fd in list(open_fds):
            drain(fd)
        for fd in (out_r, err_r, res_r):
            os.close(fd)
        if req.get("wipe_tmp"):
            _wipe(tmp_root, keep_root=True)
        else:
            _wipe(workdir, keep_root=False)

        if outcome == "timeout":
            return _verdict("timeout", "timeout", start, out, err)
        if outcome == "output_limit":
            return _verdict("fail", "output_limit", start, out, err)
        exit0_passes = req.get("exec_mode") == "release"
        return _classify(str(req["nonce"]), bytes(result), status_code, start, out, err, exit0_passes)


def _classify(
    nonce: str,
    result: bytes,
    status: int | None,
    start: float,
    out: _Tail,
    err: _Tail,
    exit0_passes: bool = False,
) -> dict:
    """Turn the child's report and exit status into a verdict. ``exit0_passes``: the release's
    rule (``p.exitcode == 0``), so ``os._exit(0)`` half-way through passes too."""
    text = result.decode("utf-8", "replace")
    head, _, rest = text.partition(" ")
    mine = head == nonce
    kind, _, detail = rest.partition(" ")
    if mine and kind == "ok" and status is not None and os.WIFEXITED(status):
        if os.WEXITSTATUS(status) == 0:
            return _verdict("pass", "ok", start, out, err)
    if mine and kind == "setup":
        return _verdict("error", "setup", start, out, err, detail=detail)
    if mine and kind == "fail" and detail == "timeout":  # a program step's CPU limit
        return _verdict("timeout", "timeout", start, out, err)
    if mine and kind == "fail" and detail:
        return _verdict("fail", detail[:80], start, out, err)
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return _verdict("timeout", "timeout", start, out, err)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return _verdict("fail", f"signal:{name}", start, out, err)
    if status is not None and os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == 0 and exit0_passes:
            return _verdict("pass", "exit_0", start, out, err)
        return _verdict("fail", "early_exit" if code == 0 else f"exit:{code}", start, out, err)
    return _verdict("error", "unknown", start, out, err)


def _verdict(
    status: str, reason: str, start: float, out: _Tail, err: _Tail, detail: str = ""
) -> dict:
    return {
        "status": status,
        "reason": reason,
        "seconds": round(time.monotonic() - start, 6),
        "stdout_tail": out.text(),
        "stderr_tail": (err.text() + detail)[-max(err.keep, len(detail)) :]
        if detail
        else err.text(),
    }


def main(argv: list[str]) -> int:
    """Serve requests until the host closes our stdin. ``--preload=a,b`` overrides PRELOAD;
    each ``--path=DIR`` goes on ``sys.path`` first (the runner starts with ``-I -S``)."""
    names: tuple[str, ...] = PRELOAD
    for arg in argv:
        if arg.startswith("--preload="):
            names = tuple(n for n in arg.split("=", 1)[1].split(",") if n)
        elif arg.startswith("--path="):
            sys.path.insert(0, arg.split("=", 1)[1])
    preload(names)
    _freeze()
    runner = Runner()
    send(1, {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "python": sys.version})
    while True:
        req = receive(0)
        if req is None:
            return 0
        try:
            verdict = runner.run(req)
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            verdict = {
                "status": "error",
                "reason": f"runner:{type(exc).__name__}",
                "seconds": 0.0,
                "stdout_tail": "",
                "stderr_tail": str(exc)[:400],
            }
        send(1, verdict)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
