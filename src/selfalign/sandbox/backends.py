"""How each backend starts the long-lived runner: the command line and the files it needs.

A backend only knows how to *start* one runner process and clean up after it; everything
per-sample (fork, limits, verdict) happens in ``runner.py`` the same way for every backend, so
verdicts do not depend on the backend.

* ``gvisor`` (default): ``runsc --rootless --network=none run`` on an OCI bundle whose read-only
  root is an almost empty directory we build, with only ``/usr`` (and ``/lib*``, ``/bin``), the
  interpreter's prefix and a private tmpfs ``/tmp`` mounted. ``runsc do`` was rejected: it shows
  the host's whole filesystem (``/root`` included) to a root process. With the bundle, the
  host's home, ``/root`` and credentials are simply not in the sandbox's mount tree, and the
  sample additionally runs as uid 65534 with no capabilities.
* ``bubblewrap``: ``bwrap --unshare-all`` with the same mounts, no capabilities, pid 1 in its
  own pid namespace. Cheaper to start, but a kernel (not gVisor) boundary.
* ``podman``: ``podman run --runtime runsc --network=none --read-only`` of the sandbox image
  (``containers/sandbox.Dockerfile``), with the gvisor backend's tmpfs ``/tmp`` and ``/dev/shm``,
  capabilities, uid drop and memory cap; the runner is the package's own ``runner.py``, mounted
  read-only. Chosen over the gvisor backend on the image's unpacked rootfs because podman starts
  it reliably here (about a second) and the rootfs, mounts and cleanup stay podman's job.
* ``none``: the runner on the host, unsandboxed. Only for baselines and machines without either
  tool; needs ``allow_unsandboxed=True`` and warns.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

RUNNER_SOURCE = Path(__file__).with_name("runner.py")
RUNNER_IN_SANDBOX = "/opt/selfalign/runner.py"
NOBODY = 65534
BACKENDS = ("gvisor", "bubblewrap", "podman", "none")
DEFAULT_IMAGE = "localhost/selfalign/sandbox:latest"
"""The sandbox image ``scripts/build-images.sh`` builds (the podman backend's default)."""
RUNSC = "/usr/bin/runsc"
RUNNER_CAPS = ("CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE")
"""What the runner keeps (to chown/wipe per-sample dirs and drop to nobody); the sample loses
every capability with its setuid."""
HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
"""The whole environment given to runsc/bwrap: no host variable (no secret) reaches a sandbox."""


class SandboxUnavailable(RuntimeError):
    """The requested backend's tool is not installed or cannot run here."""


def real_python() -> str:
    """The interpreter the sandbox runs: the venv's base interpreter, with symlinks resolved.

    A venv's ``bin/python`` is a symlink, and a pyenv shim is a shell script; inside a sandbox
    only the real binary under its real prefix exists.
    """
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def python_prefix(python: str) -> str:
    """The installation prefix of ``python`` (where its stdlib and libpython live)."""
    if os.path.realpath(python) == real_python():
        return os.path.realpath(sys.base_prefix)
    out = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=HOST_ENV,
    )
    return os.path.realpath(out.stdout.strip())


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def read_only_paths(python: str, prefix: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Host directories the sandbox needs, read-only: /usr, the interpreter's prefix, extras."""
    paths = ["/usr"]
    for path in (prefix, os.path.dirname(python), *extra):
        path = os.path.realpath(path)
        if not any(_under(path, known) for known in paths):
            paths.append(path)
    return paths


def top_level_links() -> dict[str, str]:
    """Host top-level entries that are symlinks into /usr (merged-/usr systems: /bin -> usr/bin)."""
    links = {}
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            links[name] = os.readlink(host)
    return links


def top_level_dirs() -> list[str]:
    """Host top-level library dirs that are real directories (not merged into /usr)."""
    return [
        f"/{name}"
        for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
        if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}")
    ]


def require_tool(name: str, package: str) -> str:
    """Path of a tool, or a clear error naming the Debian package that provides it."""
    path = shutil.which(name, path=HOST_ENV["PATH"] + ":" + os.environ.get("PATH", ""))
    if path is None:
        raise SandboxUnavailable(
            f"`{name}` was not found: install it with `apt-get install -y {package}` "
            f"(or choose another sandbox backend)"
        )
    return path


@dataclass
class Backend:
    """Start-up recipe for one runner; subclasses fill in ``argv``."""

    python: str
    prefix: str
    extra_ro_paths: tuple[str, ...] = ()
    preload: tuple[str, ...] | None = None
    """Modules the runner imports once (None: runner.PRELOAD); see runner.PRELOAD for why."""
    preload_path: tuple[str, ...] = field(default=(), kw_only=True)
    """Host directories (mounted via ``extra_ro_paths``) the runner puts on its ``sys.path``
    before preloading, e.g. the site-packages the scorer's evalplus comes from."""
    memory_limit_bytes: int | None = None
    """Cap on the whole sandbox's memory (gVisor enforces it by killing the sandbox): RLIMIT_AS
    bounds one process, but a sample may fork up to RLIMIT_NPROC of them."""
    workdir: str = field(default="", init=False)

    name: ClassVar[str] = "abstract"
    drop_uid: ClassVar[int | None] = None
    """uid the sample's child switches to (only where the runner is root inside a sandbox)."""
    private_tmp: ClassVar[bool] = True
    """Whether /tmp is the sandbox's own (so the runner may wipe it after every sample)."""

    def tmp_root(self) -> str:
        return "/tmp"

    def runner_args(self) -> list[str]:
        """Arguments after the runner's path."""
        args = [f"--path={self.site_packages(path)}" for path in self.preload_path]
        if self.preload is not None:
            args.append(f"--preload={','.join(self.preload)}")
        return args

    def argv(self) -> list[str]:
        raise NotImplementedError

    def site_packages(self, host_site: str) -> str:
        """Where a host site-packages directory (mounted via ``extra_ro_paths``) is inside."""
        return host_site

    def sample_site(self, host_site: str) -> str:
        """Where the packages samples may import (``execution.sample_site``) are inside."""
        return host_site

    def prepare(self) -> None:
        """Create whatever the start needs on the host (a bundle, a state dir)."""
        self.workdir = tempfile.mkdtemp(prefix=f"selfalign-{self.name}-")

    def cleanup(self) -> None:
        """Remove what ``prepare`` created; called after the runner process is gone."""
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""


@dataclass
class GVisorBackend(Backend):
    """runsc (rootless, no network) on an OCI bundle with only the needed mounts."""

    name = "gvisor"
    drop_uid = NOBODY
    platform: str | None = None
    """runsc ``--platform`` (``ptrace``, ``kvm``); None keeps runsc's default."""
    container_id: str = field(default="", init=False)
    runsc: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.runsc = require_tool("runsc", "runsc")

    @property
    def state_dir(self) -> str:
        return os.path.join(self.workdir, "state")

    def prepare(self) -> None:
        super().prepare()
        self.container_id = f"selfalign-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        bundle = Path(self.workdir, "bundle")
        rootfs = bundle / "rootfs"
        ro_paths = read_only_paths(self.python, self.prefix, self.extra_ro_paths)
        for sub in ["proc", "dev", "tmp", "sys", "etc", *(p.lstrip("/") for p in ro_paths)]:
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        for name, target in top_level_links().items():
            (rootfs / name).symlink_to(target)
        for host_dir in top_level_dirs():
            (rootfs / host_dir.lstrip("/")).mkdir(exist_ok=True)
            ro_paths.append(host_dir)
        (rootfs / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n"
        )
        (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        (rootfs / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
        runner = rootfs / RUNNER_IN_SANDBOX.lstrip("/")
        runner.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RUNNER_SOURCE, runner)
        caps = list(RUNNER_CAPS)
        mounts: list[dict] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=755"],
            },
            # POSIX semaphores (multiprocessing's SemLock, used by e.g. evalplus) live here.
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "nodev", "noexec", "mode=1777"],
            },
        ]
        for path in ro_paths:
            mounts.append(
                {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}
            )
        config = {
            "ociVersion": "1.0.0",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": [self.python, "-I", "-S", "-B", RUNNER_IN_SANDBOX, *self.runner_args()],
                "env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
                "cwd": "/tmp",
                "capabilities": {
                    k: caps for k in ("bounding", "effective", "inheritable", "permitted")
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                **(
                    {"resources": {"memory": {"limit": self.memory_limit_bytes}}}
                    if self.memory_limit_bytes
                    else {}
                ),
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            },
        }
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        os.mkdir(self.state_dir)

    def argv(self) -> list[str]:
        return [
            self.runsc,
            "--rootless",
            "--network=none",
            *([f"--platform={self.platform}"] if self.platform else []),
            f"--root={self.state_dir}",
            "run",
            f"--bundle={os.path.join(self.workdir, 'bundle')}",
            self.container_id,
        ]

    def cleanup(self) -> None:
        if self.workdir and self.container_id:
            # Kill first: a frozen sandbox would make ``runsc delete`` wait.
            kill_processes_mentioning(self.state_dir)
            try:
                subprocess.run(
                    [
                        self.runsc,
                        f"--root={self.state_dir}",
                        "delete",
                        "--force",
                        self.container_id,
                    ],
                    capture_output=True,
                    timeout=5,
                    env=HOST_ENV,
                )
            except (OSError, subprocess.SubprocessError):
                pass
            kill_processes_mentioning(self.state_dir)
        super().cleanup()


@dataclass
class BubblewrapBackend(Backend):
    """bwrap with every namespace unshared, no capabilities, read-only system dirs."""

    name = "bubblewrap"
    bwrap: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.bwrap = require_tool("bwrap", "bubblewrap")

    def prepare(self) -> None:
        super().prepare()
        shutil.copyfile(RUNNER_SOURCE, os.path.join(self.workdir, "runner.py"))

    def argv(self) -> list[str]:
        cmd = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/dev/shm",
        ]
        for path in read_only_paths(self.python, self.prefix, self.extra_ro_paths):
            cmd += ["--ro-bind", path, path]
        for name, target in top_level_links().items():
            cmd += ["--symlink", target, f"/{name}"]
        for host_dir in top_level_dirs():
            cmd += ["--ro-bind", host_dir, host_dir]
        cmd += ["--ro-bind", os.path.join(self.workdir, "runner.py"), RUNNER_IN_SANDBOX]
        cmd += ["--chdir", "/tmp", self.python, "-I", "-S", "-B", RUNNER_IN_SANDBOX]
        cmd += self.runner_args()
        return cmd


def image_labels(podman: str, image: str) -> dict[str, str]:
    """The labels of a local image; SandboxUnavailable (with the build command) if it is absent."""
    try:
        out = subprocess.run(
            [podman, "image", "inspect", "--format", "{{json .Labels}}", image],
            capture_output=True,
            text=True,
            timeout=60,
            env=HOST_ENV,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"`podman image inspect {image}` failed: {exc}") from exc
    if out.returncode != 0:
        raise SandboxUnavailable(
            f"the sandbox image {image!r} is not in podman's local storage "
            f"({out.stderr.strip()[-300:]}): build it with `sudo scripts/build-images.sh`"
        )
    labels = json.loads(out.stdout or "null") or {}
    return {str(k): str(v) for k, v in labels.items()}


@dataclass
class PodmanBackend(Backend):
    """The sandbox image under gVisor: ``podman run --runtime runsc``, no network, read-only.

    The container gets what the gvisor backend's bundle gets: a read-only root (the image's, not
    the host's), private tmpfs ``/tmp`` and ``/dev/shm``, runsc's own loopback-only network, the
    same capabilities and uid drop, ``RLIMIT_NOFILE`` 4096 and the memory cap, and no host
    environment. ``python`` / ``extra_ro_paths`` are the host's and are not used: the image's
    interpreter (label ``org.selfalign.python``) runs the runner, and its site-packages (label
    ``org.selfalign.site-packages``) stands in for the host's.
    """

    name = "podman"
    drop_uid = NOBODY
    image: str = DEFAULT_IMAGE
    runtime: str = RUNSC
    platform: str | None = None
    """runsc ``--platform`` (``ptrace``, ``kvm``); None keeps runsc's default."""
    podman: str = field(default="", init=False)
    labels: dict[str, str] = field(default_factory=dict, init=False)
    container_name: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.podman = require_tool("podman", "podman")
        if not os.access(self.runtime, os.X_OK):
            raise SandboxUnavailable(
                f"`{self.runtime}` was not found: install it with `apt-get install -y runsc`"
            )
        self.labels = image_labels(self.podman, self.image)
        for key in ("org.selfalign.python", "org.selfalign.site-packages"):
            if key not in self.labels:
                raise SandboxUnavailable(
                    f"image {self.image!r} has no label {key}: not a selfalign sandbox image "
                    "(containers/sandbox.Dockerfile)"
                )

    def site_packages(self, host_site: str) -> str:
        return self.labels["org.selfalign.site-packages"]

    def sample_site(self, host_site: str) -> str:
        try:
            return self.labels["org.selfalign.sample-site"]
        except KeyError:
            raise SandboxUnavailable(
                f"image {self.image!r} has no label org.selfalign.sample-site (the release's "
                "sample packages): rebuild it from containers/sandbox.Dockerfile"
            ) from None

    @property
    def cidfile(self) -> str:
        return os.path.join(self.workdir, "cid")

    def prepare(self) -> None:
        super().prepare()
        self.container_name = f"selfalign-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # A private copy: the package may change on disk while the sandbox runs.
        shutil.copyfile(RUNNER_SOURCE, os.path.join(self.workdir, "runner.py"))
        os.chmod(os.path.join(self.workdir, "runner.py"), 0o444)
        os.chmod(self.workdir, 0o755)

    def argv(self) -> list[str]:
        cmd = [
            self.podman,
            "run",
            "--rm",
            "--interactive",
            "--pull=never",
            f"--runtime={self.runtime}",
            # runsc's own flags, as the gvisor backend passes them: no network stack but
            # loopback. Needed, not only belt and braces: podman's --network=none alone leaves
            # runsc in the root network namespace here, and runsc refuses to start.
            "--runtime-flag=network=none",
            *([f"--runtime-flag=platform={self.platform}"] if self.platform else []),
            "--network=none",
            f"--name={self.container_name}",
            f"--cidfile={self.cidfile}",
            "--log-driver=none",  # samples' output goes to us only, never to a container log
            "--read-only",
            "--read-only-tmpfs=false",  # no writable /run, /var/tmp: only /tmp and /dev/shm
            "--tmpfs=/tmp:rw,nosuid,nodev,mode=755",
            # gVisor's own tmpfs for POSIX semaphores, not podman's host-side shm directory.
            "--ipc=none",
            "--tmpfs=/dev/shm:rw,nosuid,nodev,noexec,mode=1777,size=64m",
            "--no-hosts",
            "--user=0:0",
            "--cap-drop=ALL",
            *(f"--cap-add={cap}" for cap in RUNNER_CAPS),
            "--security-opt=no-new-privileges",
            "--ulimit=nofile=4096:4096",
            "--hostname=sandbox",
            "--unsetenv-all",
            "--env=PATH=/usr/bin:/bin",
            "--env=LANG=C.UTF-8",
            "--workdir=/tmp",
            f"--volume={os.path.join(self.workdir, 'runner.py')}:{RUNNER_IN_SANDBOX}:ro",
        ]
        if self.memory_limit_bytes:
            cmd += [f"--memory={self.memory_limit_bytes}b", f"--memory-swap={self.memory_limit_bytes}b"]
        cmd += [
            "--entrypoint=[]",
            self.image,
            self.labels["org.selfalign.python"],
            "-I",
            "-S",
            "-B",
            RUNNER_IN_SANDBOX,
            *self.runner_args(),
        ]
        return cmd

    def cleanup(self) -> None:
        if self.workdir and self.container_name:
            # The container runs under conmon, not under the podman client we killed: remove it
            # explicitly, then kill anything (runsc, gofer) still naming it.
            try:
                cid = Path(self.cidfile).read_text().strip()
            except OSError:
                cid = ""
            # A paused (wedged) container whose client was killed can refuse the first removal
            # ("container state improper"); once its processes are gone a retry succeeds.
            for attempt in range(3):
                try:
                    removed = subprocess.run(
                        [self.podman, "rm", "--force", "--time=0", "--ignore", self.container_name],
                        capture_output=True,
                        timeout=60,
                        env=HOST_ENV,
                    )
                except (OSError, subprocess.SubprocessError):
                    removed = None
                if cid:
                    kill_processes_mentioning(cid)
                if removed is not None and removed.returncode == 0:
                    break
                time.sleep(0.2 * (attempt + 1))
            else:
                logging.getLogger(__name__).warning(
                    "podman could not remove sandbox container %s", self.container_name
                )
            self.container_name = ""
        super().cleanup()


@dataclass
class UnsandboxedBackend(Backend):
    """The runner directly on the host. Forks and limits still apply; isolation does not."""

    name = "none"
    private_tmp = False
    allow_unsandboxed: bool = False

    def __post_init__(self) -> None:
        if not self.allow_unsandboxed:
            raise ValueError(
                "backend 'none' runs untrusted code on the host without a sandbox; "
                "pass allow_unsandboxed=True to opt in explicitly"
            )
        warnings.warn(
            "selfalign.sandbox: running samples UNSANDBOXED on the host (backend 'none')",
            RuntimeWarning,
            stacklevel=5,
        )
        logging.getLogger(__name__).warning(
            "running samples UNSANDBOXED on the host (backend 'none', explicitly allowed)"
        )

    def tmp_root(self) -> str:
        return self.workdir

    def argv(self) -> list[str]:
        return [self.python, "-I", "-S", "-B", str(RUNNER_SOURCE), *self.runner_args()]


def validate_backend_choice(
    backend: str, allow_unsandboxed: bool, section: str, image: str | None = None
) -> None:
    """A config section's ``backend`` / ``allow_unsandboxed`` / ``image``, checked before any job
    runs: an unknown backend, ``none`` without the explicit opt-in, or an image given to a
    backend other than ``podman`` (or an empty one) names ``section``."""
    if backend not in BACKENDS:
        raise ValueError(f"{section}.backend must be {', '.join(BACKENDS[:-1])} or none, got {backend!r}")
    if backend == "none" and not allow_unsandboxed:
        raise ValueError(
            f"{section}.backend none runs generated code unsandboxed on this machine: "
            f"set {section}.allow_unsandboxed: true to accept that"
        )
    if image is not None:
        if backend != "podman":
            raise ValueError(
                f"{section}.image is only used by backend podman (backend is {backend!r})"
            )
        if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
            raise ValueError(f"{section}.image must be an image reference, got {image!r}")


def make_backend(
    name: str,
    *,
    python: str | None = None,
    extra_ro_paths: tuple[str, ...] = (),
    allow_unsandboxed: bool = False,
    gvisor_platform: str | None = None,
    preload: tuple[str, ...] | None = None,
    preload_path: tuple[str, ...] = (),
    memory_limit_bytes: int | None = None,
    image: str | None = None,
) -> Backend:
    """Build the backend called ``name`` (``gvisor``, ``bubblewrap``, ``podman`` or ``none``);
    ``image`` is the podman backend's sandbox image (default :data:`DEFAULT_IMAGE`)."""
    python = os.path.realpath(python) if python else real_python()
    prefix = python_prefix(python)
    preload_path = tuple(preload_path)
    if name == "gvisor":
        return GVisorBackend(
            python, prefix, extra_ro_paths, preload, memory_limit_bytes, gvisor_platform,
            preload_path=preload_path,
        )
    if name in ("bubblewrap", "bwrap"):
        return BubblewrapBackend(
            python, prefix, extra_ro_paths, preload, memory_limit_bytes, preload_path=preload_path
        )
    if name == "podman":
        return PodmanBackend(
            python,
            prefix,
            extra_ro_paths,
            preload,
            memory_limit_bytes,
            image or DEFAULT_IMAGE,
            RUNSC,
            gvisor_platform,
            preload_path=preload_path,
        )
    if name == "none":
        return UnsandboxedBackend(
            python, prefix, extra_ro_paths, preload, memory_limit_bytes, allow_unsandboxed,
            preload_path=preload_path,
        )
    raise ValueError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")


def check_backend(name: str) -> None:
    """Raise SandboxUnavailable (naming the apt package) if ``name``'s tool is missing."""
    if name == "gvisor":
        require_tool("runsc", "runsc")
    elif name in ("bubblewrap", "bwrap"):
        require_tool("bwrap", "bubblewrap")
    elif name == "podman":
        require_tool("podman", "podman")
        require_tool("runsc", "runsc")
    elif name != "none":
        raise ValueError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")


def kill_processes_mentioning(marker: str) -> None:
    """SIGKILL host processes whose command line contains ``marker`` (our private state dir).

    A safety net after killing runsc's process group: the sandbox and gofer processes run in
    sessions of their own, and must not outlive the runner we replaced.
    """
    needle = marker.encode()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if needle in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
