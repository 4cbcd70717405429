"""Shared fixtures: paths to the checkout, the shared data folder, and real stdlib functions."""

from __future__ import annotations

import ast
import os
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """../shared/data beside the checkout (CI and developer machines), or $SELFALIGN_SHARED_DATA."""
    env = os.environ.get("SELFALIGN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def evalplus_dir() -> Path:
    path = shared_data() / "evalplus"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: set SELFALIGN_SHARED_DATA to the shared data folder")
    return path


def stdlib_functions(modules: tuple[str, ...] = ("bisect", "textwrap", "colorsys", "heapq", "fnmatch")) -> list[dict]:
    """Real top-level functions with docstrings from the running interpreter's stdlib."""
    root = Path(sysconfig.get_paths()["stdlib"])
    records = []
    for name in modules:
        path = root / f"{name}.py"
        source = path.read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
                text = ast.get_source_segment(source, node)
                assert text is not None
                records.append({"id": f"stdlib/{name}.py#L{node.lineno:06d}", "content": text})
    return sorted(records, key=lambda r: r["id"])


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFALIGN_NO_PROGRESS", "1")
