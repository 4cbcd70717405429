"""The images the ``containers`` tests run in: found, else built, else a clear failure.

CI runs ``scripts/build-images.sh`` before pytest, so the tests normally just find the images.
Where they are missing, the first test that needs them builds them with that script (root only).
Nothing is skipped silently: without podman or the images a test fails saying what to run,
unless ``SELFALIGN_NO_CONTAINERS=1`` is set, and then it skips saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "scripts" / "build-images.sh"
NO_CONTAINERS = "SELFALIGN_NO_CONTAINERS"
IMAGES = {
    "sandbox": "localhost/selfalign/sandbox:latest",
    "pipeline": "localhost/selfalign/pipeline:latest",
}


def image_id(podman: str, image: str) -> str | None:
    out = subprocess.run(
        [podman, "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def require_images(*names: str) -> dict[str, str]:
    """``{name: image reference}`` for ``names``, building missing ones; fail or skip otherwise."""
    if os.environ.get(NO_CONTAINERS) == "1":
        pytest.skip(f"{NO_CONTAINERS}=1: container tests skipped on request")
    hint = (
        f"run `sudo {BUILD_SCRIPT.relative_to(REPO)}` first, or set {NO_CONTAINERS}=1 to skip "
        "the container tests"
    )
    podman = shutil.which("podman")
    missing = [name for name in names if podman is None or image_id(podman, IMAGES[name]) is None]
    if missing:
        if os.geteuid() != 0:
            pytest.fail(f"images {missing} are missing and building them needs root: {hint}")
        env = {**os.environ, "IMAGES": " ".join(missing)}
        built = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1500, env=env
        )
        if built.returncode != 0:
            pytest.fail(
                f"{BUILD_SCRIPT.name} failed ({built.returncode}): {built.stderr[-3000:]}\n{hint}"
            )
        podman = shutil.which("podman")
        if podman is None:
            pytest.fail(f"podman is still missing after {BUILD_SCRIPT.name}: {hint}")
        still = [name for name in names if image_id(podman, IMAGES[name]) is None]
        if still:
            pytest.fail(f"images {still} are missing after {BUILD_SCRIPT.name}: {hint}")
    return {name: IMAGES[name] for name in names}


def recorded_ids() -> dict[str, str]:
    """The image IDs scripts/build-images.sh recorded in results/images/images.json."""
    path = REPO / "results" / "images" / "images.json"
    data = json.loads(path.read_text())
    return {name: data[name]["id"] for name in IMAGES if name in data}
