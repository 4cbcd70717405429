"""Run snakemake on a private copy of the workflow, with a hard timeout that kills its process group."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "profiles", "recipes", "report", "src/selfalign/schemas",
                  "tests/expected")


#: The release's execution-filter output and what its curation scripts made of it (goldens).
RELEASE_CURATION = Path(__file__).parent / "data" / "release" / "curation"


def release_exec_parquet(path: Path) -> tuple[Path, list[dict]]:
    """The release's execution-filter output (``RELEASE_CURATION/input.jsonl.gz``) written as
    parquet, the published datasets' format: a stand-in for the published 500k raw set."""
    import gzip
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    with gzip.open(RELEASE_CURATION / "input.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path, rows


def snakemake_bin() -> str:
    return str(Path(sys.executable).with_name("snakemake"))


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (not of results/) so tests never touch the checkout's artifacts.

    ``../shared`` beside the copy points at the real shared folder, as it does beside a clone.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    # the Snakefile imports selfalign from src/ (the runtime, the config's checks, the
    # fixed-order BLAS's source it builds): the copy must import the real package
    shutil.copytree(REPO / "src" / "selfalign", dest / "src" / "selfalign", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shared = REPO.parent / "shared"
    if shared.exists() and not (dest.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(shared)
    return dest


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e.update(extra or {})
    e["SELFALIGN_NO_PROGRESS"] = "1"
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def run(
    args: list[str], cwd: Path, timeout: float = 600, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run snakemake to completion, or kill its whole process group after ``timeout`` seconds."""
    proc = subprocess.Popen(
        [snakemake_bin(), *args],
        cwd=cwd,
        env=env(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        raise AssertionError(f"snakemake {' '.join(args)} timed out after {timeout}s:\n{out[-5000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def start(args: list[str], cwd: Path, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - closed by the caller via kill_group / wait
    return subprocess.Popen(
        [snakemake_bin(), *args], cwd=cwd, env=env(extra_env), stdout=handle, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, grace: float = 10.0) -> None:
    """Signal the process group; escalate to SIGKILL if it is still alive after ``grace`` s."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def mkl_vendor_preload(build_dir: Path, vendor: str = "non_intel") -> str:
    """tests/data/mkl_<vendor>.c built into build_dir: the LD_PRELOAD value under which oneMKL
    takes its non-Intel dispatch (what it does on an AMD CPU), or with vendor="intel" its Intel
    one (what it does on an Intel CPU), whatever this machine's CPU is."""
    library = build_dir / f"mkl_{vendor}.so"
    if not library.exists():
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library),
                        str(Path(__file__).parent / "data" / f"mkl_{vendor}.c")], check=True)
    return str(library)
