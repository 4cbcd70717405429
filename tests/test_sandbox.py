"""The sandbox layer: samples run as one module, hostile samples are contained, nothing hangs.

gVisor is the default backend and CI installs it (``apt-get install -y runsc bubblewrap``), so a
missing ``runsc`` fails these tests with that instruction instead of skipping them silently.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfalign.sandbox import (
    Sandbox,
    SandboxPool,
    SandboxUnavailable,
    Verdict,
    check_backend,
)
from selfalign.sandbox import backends as backends_mod

pytestmark = pytest.mark.sandbox

HANG_S = 1.5  # wall limit for the samples that would run forever
MARGIN_S = 6.0  # what a hostile case may take beyond its limit, start-up and cleanup included


def _require(backend: str) -> None:
    try:
        check_backend(backend)
    except SandboxUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def gvisor() -> Iterator[Sandbox]:
    """One long-lived gVisor sandbox shared by the sequential tests (it heals itself)."""
    _require("gvisor")
    with Sandbox("gvisor", timeout_s=4.0) as sb:
        yield sb


@pytest.fixture
def host_secret() -> Iterator[tuple[Path, str]]:
    """A secret file in the host's home (``/root`` here), readable only by its owner."""
    token = secrets.token_hex(16)
    path = Path.home() / ".ssh-selfalign-test-secret"
    path.write_text(f"-----BEGIN FAKE KEY----- {token}\n")
    path.chmod(0o600)
    try:
        yield path, token
    finally:
        path.unlink(missing_ok=True)


def _parents() -> dict[int, int]:
    """pid -> parent pid for every live (non-zombie) host process."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":  # dead, waiting for the host's init to reap it
                parents[int(entry)] = int(ppid)
    return parents


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _strays(*sandboxes: Sandbox) -> set[int]:
    """Host processes this test process started that are not inside a live sandbox's tree.

    (gVisor's ptrace platform keeps stopped stub processes under its sandbox process; they are
    the sandbox's, and die with it.)
    """
    parents = _parents()
    ours = _descendants(os.getpid(), parents)
    for sb in sandboxes:
        if sb.host_pid is not None:
            ours -= {sb.host_pid} | _descendants(sb.host_pid, parents)
    # multiprocessing's own helpers, started by earlier tests' process pools, live on by design.
    return {pid for pid in ours if not _is_multiprocessing_helper(pid)}


def _is_multiprocessing_helper(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"multiprocessing.resource_tracker" in cmdline or b"multiprocessing.forkserver" in cmdline


def _describe(pids: set[int]) -> str:
    """The command lines of ``pids``, for a failure message that says what was left behind."""
    found = []
    for pid in sorted(pids):
        try:
            found.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ').decode()}")
        except OSError:
            found.append(f"{pid}: (gone)")
    return "; ".join(found)


def _timed(sb: Sandbox, code: str, timeout_s: float = HANG_S) -> tuple[Verdict, float]:
    start = time.monotonic()
    verdict = sb.run(code, timeout_s=timeout_s)
    return verdict, time.monotonic() - start


RECURSIVE = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def helper(xs):
    return [fib(x) for x in xs]

from dataclasses import dataclass

@dataclass
class Point:
    x: int

assert helper([0, 1, 10]) == [0, 1, 55]
assert Point(3).x == 3
print("done")
"""


# ---------------------------------------------------------------------------------------------
# Positive cases and semantics
# ---------------------------------------------------------------------------------------------


def test_recursion_and_helpers_pass_as_one_module(gvisor: Sandbox) -> None:
    verdict = gvisor.run(RECURSIVE)
    assert verdict.status == "pass", verdict
    assert verdict.reason == "ok"
    assert verdict.stdout_tail == "done\n"
    assert verdict.seconds > 0


def test_failing_assert_fails_with_reason_assertion(gvisor: Sandbox) -> None:
    verdict = gvisor.run("def f(x):\n    return x + 1\nassert f(1) == 3\n")
    assert (verdict.status, verdict.reason) == ("fail", "assertion")
    assert "AssertionError" in verdict.stderr_tail
    assert "runner.py" not in verdict.stderr_tail  # the runner's frames are not the sample's


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("x = undefined_name", "exception:NameError"),
        ("def broken(:\n    pass", "exception:SyntaxError"),
        ("import sys\nsys.exit(3)", "exit:3"),
        ("import sys\nsys.exit(0)\nassert False", "exit:0"),
    ],
)
def test_other_failures_have_countable_reasons(gvisor: Sandbox, code: str, reason: str) -> None:
    verdict = gvisor.run(code)
    assert (verdict.status, verdict.reason) == ("fail", reason)


def test_upstream_exec_in_function_switch_reproduces_upstream() -> None:
    _require("gvisor")
    with Sandbox("gvisor", upstream_exec_in_function=True) as sb:
        verdict = sb.run(RECURSIVE)
        assert (verdict.status, verdict.reason) == ("fail", "exception:NameError")
        assert sb.run("assert sum([1, 2]) == 3").status == "pass"


def test_sequential_samples_do_not_see_each_others_files(gvisor: Sandbox) -> None:
    first = gvisor.run(
        "import os\nopen('leftover.txt', 'w').write('x')\nprint(os.path.abspath('leftover.txt'))"
    )
    assert first.status == "pass", first
    leftover = first.stdout_tail.strip()
    second = gvisor.run(
        "import os\n"
        f"assert not os.path.exists({leftover!r})\n"
        "assert os.listdir('/tmp') == [os.path.basename(os.getcwd())], os.listdir('/tmp')\n"
        "assert os.listdir('.') == []\n"
    )
    assert second.status == "pass", second


def test_sample_environment_is_scrubbed(gvisor: Sandbox) -> None:
    verdict = gvisor.run(
        "import os\n"
        "assert os.getuid() == 65534 and os.geteuid() == 65534\n"
        "assert sorted(os.environ) == ['HOME', 'LANG', 'PATH', 'TMPDIR'], dict(os.environ)\n"
        "assert os.getcwd() == os.environ['HOME']\n"
    )
    assert verdict.status == "pass", verdict


# ---------------------------------------------------------------------------------------------
# The hostile suite: a failing verdict, the host untouched, back within the limit
# ---------------------------------------------------------------------------------------------

HOSTILE = {
    "infinite_loop": ("while True:\n    pass\n", {"timeout"}),
    "ignore_sigterm": (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(1)\n",
        {"timeout"},
    ),
    "endless_thread": (
        "import threading\n"
        "def spin():\n    while True:\n        pass\n"
        "threading.Thread(target=spin).start()\n"
        "assert True\n",
        {"timeout"},
    ),
    "fork_bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        {"timeout", "fail"},
    ),
    "memory_bomb": ("x = bytearray(4 * 1024 ** 3)\nassert len(x)\n", {"fail"}),
    "gigabyte_stdout": (
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n",
        {"fail"},
    ),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", {"fail"}),
    "exit_before_tests": ("import os\nos._exit(0)\nassert 1 == 2\n", {"fail"}),
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", {"fail"}),
}
EXPECTED_REASON = {
    "memory_bomb": "memory",
    "gigabyte_stdout": "output_limit",
    "segfault": "signal:SIGSEGV",
    "exit_before_tests": "early_exit",
    "infinite_loop": "timeout",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_sample_is_contained(gvisor: Sandbox, case: str) -> None:
    code, statuses = HOSTILE[case]
    verdict, elapsed = _timed(gvisor, code)
    assert verdict.status in statuses, verdict
    assert verdict.status != "pass"
    if case in EXPECTED_REASON:
        assert verdict.reason == EXPECTED_REASON[case], verdict
    assert elapsed < HANG_S + MARGIN_S, f"{case} took {elapsed:.1f}s"
    assert len(verdict.stdout_tail) <= 4096 and len(verdict.stderr_tail) <= 4096
    # Nothing of the sample lives on: not on the host, not inside the sandbox.
    strays = _strays(gvisor)
    assert not strays, _describe(strays)
    alone = gvisor.run(
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "assert len(pids) == 2, pids  # the runner and this sample\n"
    )
    assert alone.status == "pass", (case, alone)


#: Hostile cases the release's rules pass, and the reason (containment is still asserted).
RELEASE_PASSES = {"exit_before_tests": "exit_0", "gigabyte_stdout": "ok"}


@pytest.mark.timeout(300)
def test_hostile_samples_are_contained_in_release_mode(gvisor: Sandbox) -> None:
    """The release's emulation (exec_mode release) runs inside the same confinement: every
    hostile case ends within the limit and leaves nothing behind. Only its verdicts follow the
    release's rules: an exit status 0 passes (os._exit(0) before the tests), as the release's
    p.exitcode == 0 did, and output goes to swallow_io's in-memory buffer (a gigabyte of one
    repeated chunk costs it nothing), so the output limit is not reached."""
    with Sandbox("gvisor", timeout_s=4.0, exec_mode="release", release_alarm_s=4.0) as release:
        for case in sorted(HOSTILE):
            code, _ = HOSTILE[case]
            verdict, elapsed = _timed(release, code)
            if case in RELEASE_PASSES:
                assert (verdict.status, verdict.reason) == ("pass", RELEASE_PASSES[case]), verdict
            else:
                assert verdict.status != "pass", (case, verdict)
            assert elapsed < HANG_S + MARGIN_S, f"{case} took {elapsed:.1f}s"
            assert not _strays(gvisor, release), case
            alone = release.run("pids = [p for p in os.listdir('/proc') if p.isdigit()]\nassert len(pids) == 2, pids\n")
            assert alone.status == "pass", (case, alone)


@pytest.mark.timeout(90)
def test_memory_bomb_spread_over_processes_is_contained(gvisor: Sandbox) -> None:
    # RLIMIT_AS bounds each process; the sandbox-wide memory cap bounds the sum.
    code = (
        "import os, time\n"
        "for _ in range(6):\n"
        "    if os.fork() == 0:\n"
        "        block = b'x' * (900 * 1024 * 1024)\n"
        "        time.sleep(30)\n"
        "time.sleep(30)\n"
    )
    verdict, elapsed = _timed(gvisor, code, timeout_s=10)
    assert verdict.status in {"error", "timeout", "fail"}, verdict
    assert elapsed < 10 + MARGIN_S
    assert gvisor.run("assert True").status == "pass"


@pytest.mark.timeout(60)
def test_nothing_outlives_a_closed_sandbox() -> None:
    _require("gvisor")
    with Sandbox("gvisor") as sb:
        state_dir = sb.backend.state_dir  # type: ignore[attr-defined]
        bomb, _ = _timed(sb, HOSTILE["fork_bomb"][0])
        assert bomb.status != "pass"
        assert sb.host_pid is not None
        tree = {sb.host_pid} | _descendants(sb.host_pid, _parents())
        assert len(tree) > 2
    assert not tree & set(_parents()), "sandbox processes survived close()"
    assert not _pids_mentioning(state_dir)
    assert not os.path.exists(state_dir)


def test_grandchildren_that_escape_the_group_do_not_survive(gvisor: Sandbox) -> None:
    leaver = gvisor.run(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "assert True\n"
    )
    assert leaver.status == "pass", leaver
    alone = gvisor.run(
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nassert len(pids) == 2, pids\n"
    )
    assert alone.status == "pass", alone


def test_network_is_unreachable_including_host_localhost(gvisor: Sandbox) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        for host, target_port in (("1.1.1.1", 53), ("127.0.0.1", port)):
            verdict, elapsed = _timed(
                gvisor,
                "import socket\n"
                f"s = socket.create_connection(({host!r}, {target_port}), timeout=1)\n"
                "s.sendall(b'escaped')\n",
                timeout_s=3,
            )
            assert verdict.status != "pass", (host, verdict)
            assert elapsed < 3 + MARGIN_S
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_writes_outside_the_sample_dir_do_not_reach_the_host(gvisor: Sandbox, repo: Path) -> None:
    nonce = secrets.token_hex(8)
    targets = [
        f"/tmp/selfalign-escape-{nonce}",
        str(Path.home() / f"selfalign-escape-{nonce}"),
        str(repo / f"selfalign-escape-{nonce}"),
    ]
    for target in targets:
        verdict = gvisor.run(
            f"open({target!r}, 'w').write('escaped')\nassert open({target!r}).read() == 'escaped'\n"
        )
        assert verdict.status == "fail", (target, verdict)
        assert not os.path.exists(target), target


def test_host_home_and_environment_secrets_are_unreadable(
    gvisor: Sandbox, host_secret: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, token = host_secret
    monkeypatch.setenv("SELFALIGN_SECRET", token)
    _require("gvisor")
    # A sandbox started after the secret is in the host environment.
    with Sandbox("gvisor") as fresh:
        attempts = {
            "home_file": f"data = open({str(path)!r}).read()\nprint(data)\nassert {token!r} in data\n",
            "ssh_key": "import os\nprint(open('/root/.ssh/id_rsa').read())\n",
            "listdir_home": "import os\nprint(os.listdir('/root'))\nassert '.ssh' in os.listdir('/root')\n",
            "env": f"import os\nassert os.environ.get('SELFALIGN_SECRET') == {token!r}\n",
            "proc_environ": (
                "import os\nfound = False\n"
                "for pid in os.listdir('/proc'):\n"
                "    try:\n"
                "        found |= b'SELFALIGN_SECRET' in open(f'/proc/{pid}/environ', 'rb').read()\n"
                "    except OSError:\n"
                "        pass\n"
                "assert found\n"
            ),
        }
        for name, code in attempts.items():
            verdict = fresh.run(code)
            assert verdict.status == "fail", (name, verdict)
            assert token not in verdict.stdout_tail + verdict.stderr_tail, name


@pytest.mark.timeout(120)
def test_wedged_sandbox_is_replaced_by_the_watchdog() -> None:
    _require("gvisor")
    with Sandbox("gvisor", watchdog_margin_s=2.0) as sb:
        state_dir = sb.backend.state_dir  # type: ignore[attr-defined]
        frozen = _pids_mentioning(state_dir)
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        verdict, elapsed = _timed(sb, "assert True", timeout_s=1.0)
        assert (verdict.status, verdict.reason) == ("timeout", "watchdog")
        assert elapsed < 1.0 + 2.0 + MARGIN_S
        assert not _pids_mentioning(state_dir), "the wedged sandbox was not killed"
        assert sb.run("assert 1 + 1 == 2").status == "pass"
        assert sb.restarts == 1


def _pids_mentioning(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


# ---------------------------------------------------------------------------------------------
# Pool, other backends, availability
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_pool_returns_verdicts_in_input_order_and_recovers() -> None:
    _require("gvisor")
    codes = []
    for i in range(12):
        if i == 4:
            codes.append("while True:\n    pass\n")
        elif i % 3 == 2:
            codes.append(f"print({i})\nassert False\n")
        else:
            codes.append(f"import time\ntime.sleep({(12 - i) * 0.01})\nprint({i})\n")
    with SandboxPool(3, "gvisor", timeout_s=HANG_S) as pool:  # more workers than cores
        verdicts = pool.run_many(codes)
    assert len(verdicts) == len(codes)
    for i, verdict in enumerate(verdicts):
        if i == 4:
            assert verdict.status == "timeout"
            continue
        assert verdict.stdout_tail.strip() == str(i), (i, verdict)
        assert verdict.status == ("fail" if i % 3 == 2 else "pass"), (i, verdict)


@pytest.mark.timeout(120)
def test_pool_throughput_on_trivial_samples() -> None:
    _require("gvisor")
    code = "def f(n):\n    return 1 if n < 2 else n * f(n - 1)\nassert f(10) == 3628800\n"
    with SandboxPool(2, "gvisor") as pool:
        pool.run_many([code] * 4)  # warm
        start = time.monotonic()
        verdicts = pool.run_many([code] * 50)
        rate = 50 / (time.monotonic() - start)
    print(f"\ngvisor, 2 workers: {rate:.1f} samples/s on 50 trivial passing samples")
    assert all(v.status == "pass" for v in verdicts)
    assert rate > 10  # a floor that catches a per-sample sandbox start, not a benchmark


def test_bubblewrap_backend_contains_the_basics(host_secret: tuple[Path, str]) -> None:
    _require("bubblewrap")
    path, token = host_secret
    nonce = secrets.token_hex(8)
    with Sandbox("bubblewrap") as sb:
        assert sb.run(RECURSIVE).status == "pass"
        assert sb.run("assert 1 == 2").reason == "assertion"
        assert sb.run(f"assert {token!r} in open({str(path)!r}).read()").status == "fail"
        assert (
            sb.run("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)").status
            == "fail"
        )
        sb.run(f"open('/tmp/selfalign-escape-{nonce}', 'w').write('x')")
        assert not os.path.exists(f"/tmp/selfalign-escape-{nonce}")
        assert sb.run("import os\nos._exit(0)\nassert False").reason == "early_exit"
        assert sb.run("while True:\n    pass", timeout_s=1.0).status == "timeout"


def test_unsandboxed_backend_needs_explicit_opt_in_and_warns() -> None:
    with pytest.raises(ValueError, match="allow_unsandboxed"):
        Sandbox("none")
    with pytest.warns(RuntimeWarning, match="UNSANDBOXED"):
        sb = Sandbox("none", allow_unsandboxed=True)
    with sb:
        assert sb.run(RECURSIVE).status == "pass"
        assert sb.run("import os\nos._exit(0)\nassert False").reason == "early_exit"


@pytest.mark.timeout(60)
def test_killed_runner_is_replaced_and_the_next_sample_runs() -> None:
    # Outside gVisor the sample shares the runner's uid, so it really can kill its parent.
    with pytest.warns(RuntimeWarning):
        sb = Sandbox("none", allow_unsandboxed=True, watchdog_margin_s=2.0)
    with sb:
        verdict, elapsed = _timed(sb, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
        assert (verdict.status, verdict.reason) == ("error", "sandbox_died")
        assert elapsed < MARGIN_S
        assert sb.run("assert 2 + 2 == 4").status == "pass"
        assert sb.restarts == 1
        stopped, elapsed = _timed(
            sb,
            "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nwhile True:\n    pass\n",
            timeout_s=1.0,
        )
        assert (stopped.status, stopped.reason) == ("timeout", "watchdog")
        assert elapsed < 1.0 + 2.0 + MARGIN_S
        assert sb.run("assert True").status == "pass"
        assert sb.restarts == 2


def test_missing_tool_names_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod.shutil, "which", lambda *a, **k: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install -y runsc"):
        Sandbox("gvisor")
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap"):
        check_backend("bubblewrap")
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        check_backend("docker-ish")


def test_verdict_is_frozen_and_round_trips() -> None:
    verdict = Verdict("fail", "assertion", 0.5, "out", "err")
    with pytest.raises(AttributeError):
        verdict.status = "pass"  # type: ignore[misc]
    assert Verdict.from_dict(verdict.to_dict()) == verdict
    assert Verdict.from_dict({"status": "weird"}).status == "error"


def test_config_backend_choice_is_checked_before_any_job() -> None:
    from selfalign.sandbox import validate_backend_choice

    validate_backend_choice("gvisor", False, "execution")
    validate_backend_choice("none", True, "execution")
    with pytest.raises(ValueError, match=r"evaluation\.sandbox\.backend must be gvisor, bubblewrap, podman or none, got 'docker'"):
        validate_backend_choice("docker", False, "evaluation.sandbox")
    with pytest.raises(ValueError, match=r"set execution\.allow_unsandboxed: true"):
        validate_backend_choice("none", False, "execution")


# ---------------------------------------------------------------------------------------------
# The podman backend: the sandbox image under gVisor gives the gvisor backend's verdicts
# ---------------------------------------------------------------------------------------------

PARITY_SAMPLES = {
    "passes": "def f(n):\n    return 1 if n < 2 else n * f(n - 1)\nassert f(5) == 120\n",
    "failing_assert": "assert sorted([3, 1, 2]) == [3, 2, 1]\n",
    "network_dns": "import socket\nsocket.create_connection(('pypi.org', 443), timeout=1)\n",
    "network_ip": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\n",
    "write_root": "open('/escaped', 'w').write('x')\n",
    "write_etc": "open('/etc/passwd', 'a').write('x')\n",
    "write_runner": "open('/opt/selfalign/runner.py', 'w').write('x')\n",
    "write_dev_shm_exec": "import os\nassert os.statvfs('/dev/shm').f_bsize > 0\n",
    "semaphores": "import multiprocessing as mp\nlock = mp.Lock()\nwith lock:\n    pass\n",
    "uid_env_caps": (
        "import os\n"
        "assert os.getuid() == 65534 and os.geteuid() == 65534\n"
        "assert sorted(os.environ) == ['HOME', 'LANG', 'PATH', 'TMPDIR'], dict(os.environ)\n"
        "caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
        "assert caps == ['CapEff:\\t0000000000000000\\n'], caps\n"
    ),
    "exception": "raise KeyError('x')\n",
    "early_exit": "import os\nos._exit(0)\n",
    "infinite_loop": "while True:\n    pass\n",
    "memory_bomb": "x = bytearray(4 * 1024 ** 3)\nassert len(x)\n",
}


@pytest.fixture(scope="module")
def podman_image() -> str:
    from container_images import require_images

    return require_images("sandbox")["sandbox"]


@pytest.fixture(scope="module")
def podman(podman_image: str) -> Iterator[Sandbox]:
    _require("podman")
    with Sandbox("podman", timeout_s=4.0, image=podman_image) as sb:
        yield sb


@pytest.mark.containers
@pytest.mark.timeout(300)
def test_podman_backend_gives_the_gvisor_verdicts(gvisor: Sandbox, podman: Sandbox) -> None:
    assert podman.runner_info["uid"] == 0 and podman.runner_info["pid"] == 1
    for name, code in PARITY_SAMPLES.items():
        expected = gvisor.run(code, timeout_s=HANG_S)
        got, elapsed = _timed(podman, code, timeout_s=HANG_S)
        assert (got.status, got.reason) == (expected.status, expected.reason), (name, got, expected)
        assert elapsed < HANG_S + MARGIN_S, name
    verdicts = {name: podman.run(code, timeout_s=HANG_S) for name, code in PARITY_SAMPLES.items()}
    assert {n for n, v in verdicts.items() if v.status == "pass"} == {
        "passes",
        "write_dev_shm_exec",
        "semaphores",
        "uid_env_caps",
    }
    assert verdicts["failing_assert"].reason == "assertion"
    assert verdicts["infinite_loop"].status == "timeout"
    assert verdicts["memory_bomb"].reason == "memory"
    for name in ("network_dns", "network_ip", "write_root", "write_etc", "write_runner"):
        assert verdicts[name].status == "fail", (name, verdicts[name])
    # The same sandbox-wide memory cap (the sample's allowance + 512 MiB), as gVisor sees it.
    meminfo = "print(open('/proc/meminfo').readline().split()[1])\n"
    assert podman.run(meminfo).stdout_tail == gvisor.run(meminfo).stdout_tail == f"{(1 << 20) + (1 << 19)}\n"  # kB


@pytest.mark.containers
def test_podman_network_and_host_files_are_out_of_reach(podman: Sandbox, repo: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    nonce = secrets.token_hex(8)
    try:
        verdict = podman.run(
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'escaped')\n",
            timeout_s=3,
        )
        assert verdict.status == "fail", verdict
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    for target in (str(repo / f"selfalign-escape-{nonce}"), str(Path.home() / f"x-{nonce}")):
        verdict = podman.run(f"open({target!r}, 'w').write('escaped')\n")
        assert verdict.status == "fail", (target, verdict)
        assert not os.path.exists(target)
    # The host's home and checkout are simply not there; the image's root is.
    look = podman.run(
        "import os\n"
        f"assert not os.path.exists({str(repo)!r}) and not os.path.exists('/root/.ssh')\n"
        "assert os.path.exists('/opt/venv/bin/python3')\n"
    )
    assert look.status == "pass", look


def _podman_containers(name: str) -> str:
    return subprocess.run(
        ["podman", "ps", "--all", "--quiet", "--filter", f"name={name}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


@pytest.mark.containers
@pytest.mark.timeout(180)
def test_podman_sandbox_leaves_nothing_behind_and_heals(podman_image: str) -> None:
    _require("podman")
    with Sandbox("podman", image=podman_image, watchdog_margin_s=2.0) as sb:
        backend = sb.backend
        name = backend.container_name  # type: ignore[attr-defined]
        cid = Path(backend.cidfile).read_text().strip()  # type: ignore[attr-defined]
        assert _podman_containers(name)
        # The podman client dies (the container lives on under conmon): the next sample gets a
        # fresh container, and the old one is removed with everything that ran it.
        proc = sb._proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert sb.run("assert True").status == "pass"
        assert sb.restarts == 1
        assert not _podman_containers(name)
        assert not _pids_mentioning(cid)
        assert backend.container_name != name  # type: ignore[attr-defined]
        name = backend.container_name  # type: ignore[attr-defined]
        cid = Path(backend.cidfile).read_text().strip()  # type: ignore[attr-defined]
        # A wedged sandbox (the runner stopped) is replaced by the watchdog.
        subprocess.run(["podman", "pause", name], capture_output=True, timeout=60, check=True)
        wedged, elapsed = _timed(sb, "assert True", timeout_s=1.0)
        assert (wedged.status, wedged.reason) == ("timeout", "watchdog"), wedged
        assert elapsed < 1.0 + 2.0 + MARGIN_S
        assert not _podman_containers(name)
        name = ""
        assert sb.run("assert True").status == "pass"
        name = backend.container_name  # type: ignore[attr-defined]
        cid = Path(backend.cidfile).read_text().strip()  # type: ignore[attr-defined]
    assert not _podman_containers(name)
    assert not _pids_mentioning(cid)


@pytest.mark.containers
def test_podman_backend_reads_the_image_and_runs_its_evalplus(podman_image: str) -> None:
    _require("podman")
    with Sandbox("podman", image=podman_image, timeout_s=30.0, memory_bytes=5 << 30) as sb:
        site = sb.backend.site_packages("/host/site-packages/not-mounted")
        assert site == "/opt/venv/lib/python3.11/site-packages"
        verdict = sb.run(
            "import sys\n"
            f"sys.path.insert(0, {site!r})\n"
            "from importlib import metadata\n"
            "assert metadata.version('evalplus') == '0.2.1'\n"
            "from evalplus.eval import untrusted_check\n"
            "status, details = untrusted_check('humaneval', 'def add(a, b):\\n    return a + b\\n',"
            " [[1, 2], [3, 4]], 'add', expected=[3, 7], atol=0, ref_time=[0.01, 0.01],"
            " fast_check=True, min_time_limit=1.0, gt_time_limit_factor=4.0)\n"
            "assert status == 'pass', (status, details)\n",
            timeout_s=30.0,
        )
        assert verdict.status == "pass", verdict


def test_podman_backend_config_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from selfalign.evaluation.score import ScoreParams
    from selfalign.execution import ExecutionParams
    from selfalign.sandbox import validate_backend_choice

    validate_backend_choice("podman", False, "execution", "localhost/selfalign/sandbox:latest")
    validate_backend_choice("podman", False, "execution")
    with pytest.raises(ValueError, match=r"execution\.image is only used by backend podman"):
        validate_backend_choice("gvisor", False, "execution", "localhost/selfalign/sandbox")
    with pytest.raises(ValueError, match=r"evaluation\.sandbox\.image must be an image reference"):
        validate_backend_choice("podman", False, "evaluation.sandbox", "two words")
    params = ExecutionParams.from_dict({"backend": "podman", "image": "localhost/x:1"})
    assert params.image == "localhost/x:1"
    with pytest.raises(ValueError, match="only used by backend podman"):
        ScoreParams.from_dict({"backend": "gvisor", "image": "localhost/x:1"})
    assert ScoreParams.from_dict({"backend": "podman"}).image is None
    # A missing image names the script that builds it (podman itself may be absent here).
    monkeypatch.setattr(
        backends_mod,
        "image_labels",
        lambda podman, image: (_ for _ in ()).throw(
            SandboxUnavailable(f"{image}: build it with `sudo scripts/build-images.sh`")
        ),
    )
    monkeypatch.setattr(backends_mod, "require_tool", lambda name, package: f"/usr/bin/{name}")
    monkeypatch.setattr(backends_mod.os, "access", lambda path, mode: True)
    with pytest.raises(SandboxUnavailable, match="build-images.sh"):
        Sandbox("podman", image="localhost/selfalign/none:0")


@pytest.mark.timeout(180)
def test_a_read_only_mount_below_tmp_is_not_walked_after_every_sample(tmp_path: Path) -> None:
    """A virtualenv under /tmp (a clone there, evalplus or the sample packages mounted from it)
    is a read-only mount below the sandbox's /tmp. The per-sample wipe of /tmp must neither walk
    it (30,000 files made a trivial sample take 4 s) nor remove it; what a sample writes on the
    tmpfs itself is still gone before the next one."""
    _require("gvisor")
    assert str(tmp_path).startswith("/tmp/")
    mounted = tmp_path / "venv" / "site-packages"
    for i in range(300):
        (mounted / f"pkg{i}").mkdir(parents=True)
        for j in range(100):
            (mounted / f"pkg{i}" / f"m{j}.py").write_text("")
    with Sandbox("gvisor", extra_ro_paths=(str(mounted),)) as sb:
        assert sb.run("assert True").status == "pass"
        started = time.monotonic()
        for _ in range(5):
            verdict = sb.run("open('left.txt', 'w').write('x')\nassert True")
            assert verdict.status == "pass", verdict
        per_sample = (time.monotonic() - started) / 5
        after = sb.run(
            f"import os\nassert len(os.listdir({str(mounted)!r})) == 300\n"
            "assert not any(n.endswith('left.txt') for _, _, f in os.walk('/tmp') for n in f)\n"
        )
        assert after.status == "pass", after
    assert per_sample < 1.0, f"{per_sample:.2f} s per trivial sample"
