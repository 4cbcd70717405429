#!/usr/bin/env bash
# Set up selfalign on a fresh Debian/Ubuntu machine or in CI: a virtualenv in .venv with the
# pinned pipeline and test requirements, the package installed editable, and Pyright's npm
# package fetched once (so the first quality job doesn't). Idempotent: rerunning is cheap.
#
#   scripts/setup.sh          torch's CPU build where there is no NVIDIA GPU, its CUDA build where
#                             there is one (SELFALIGN_TORCH=cpu|cuda overrides the detection)
#   scripts/setup.sh --gpu    also the GPU stack (envs/gpu.txt): vLLM in .venv-vllm (its own torch,
#                             linked as .venv/bin/vllm) and flash-attn (see scripts/install-torch.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

GPU_STACK=0
for arg in "$@"; do
    case "$arg" in
        --gpu) GPU_STACK=1 ;;
        *) echo "usage: scripts/setup.sh [--gpu]" >&2; exit 2 ;;
    esac
done

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "selfalign needs Python >= 3.10 (found $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

# gVisor (runsc) runs untrusted generated code; bubblewrap is the lighter alternative backend.
# Both are Debian packages: install them when missing and apt is at hand (root, or sudo).
if ! command -v runsc >/dev/null || ! command -v bwrap >/dev/null; then
    if command -v apt-get >/dev/null; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq runsc bubblewrap >/dev/null
    else
        echo "selfalign: install gVisor (runsc) and bubblewrap for the execution sandbox" >&2
    fi
fi

# HumanEvalPack's programs (OctoPack) compile and run in the sandbox with Debian's toolchains:
# Node.js, a JDK, Go with testify, g++ with boost and OpenSSL, rustc with the rand/regex/md5
# crates: every language's packages in the sandbox's language table (run as a plain script: it
# needs no virtualenv), Node.js only where none is installed.
if command -v node >/dev/null; then
    OCTOPACK_DEBS=$("$PYTHON" src/selfalign/sandbox/languages.py debian-packages --without-node)
else
    OCTOPACK_DEBS=$("$PYTHON" src/selfalign/sandbox/languages.py debian-packages)
fi
# shellcheck disable=SC2086
if ! dpkg -s $OCTOPACK_DEBS >/dev/null 2>&1; then
    if command -v apt-get >/dev/null; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq >/dev/null
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            $OCTOPACK_DEBS >/dev/null
    else
        echo "selfalign: install $OCTOPACK_DEBS for HumanEvalPack's executors" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.selfalign-requirements.sha256
TORCH_ROUTE=$(scripts/install-torch.sh --route)
want=$(cat envs/pipeline.txt envs/test.txt envs/sample-release.txt envs/sample-livecodebench.txt pyproject.toml scripts/install-torch.sh \
    | sha256sum | cut -d' ' -f1)-$TORCH_ROUTE
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # The editable install below builds without isolation (no network needed for it), so the
    # build backend is pinned here: a fresh venv's setuptools (65 on Python 3.11) has no bdist_wheel.
    .venv/bin/python -m pip install --quiet "setuptools==84.2.1"
    # torch first, by the route for this machine; envs/pipeline.txt's torch==2.13.0 is then
    # satisfied by it (a local label such as +cpu matches ==2.13.0) and not replaced.
    scripts/install-torch.sh .venv/bin/python
    .venv/bin/python -m pip install --quiet -r envs/pipeline.txt -r envs/test.txt
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
    # What generated samples may import under execution.exec_mode: release (config.yaml): the
    # release's numpy, in a directory of its own that the sandbox mounts read-only.
    rm -rf .venv/sample-release
    .venv/bin/python -m pip install --quiet --no-deps --only-binary=:all: \
        --target .venv/sample-release -r envs/sample-release.txt
    # What LiveCodeBench's code-execution checks import (numpy, pandas), likewise.
    rm -rf .venv/sample-livecodebench
    .venv/bin/python -m pip install --quiet --no-deps --only-binary=:all: \
        --target .venv/sample-livecodebench -r envs/sample-livecodebench.txt
    echo "$want" > "$stamp"
fi
if [ "$GPU_STACK" = 1 ]; then
    scripts/install-torch.sh --gpu-stack .venv/bin/python
fi
# The Go packages, Rust crates and js-md5 HumanEvalPack's programs use, built offline once
# (kept while the tools' versions and the npm lock are unchanged).
.venv/bin/selfalign toolchains build .venv/toolchains >/dev/null
# The portable CPU kernels' fixed-order BLAS (selfalign.determinism), built once with the C
# compiler; the workflow would build it on first use, here a missing compiler shows at once.
.venv/bin/python -m selfalign.determinism portable >/dev/null
# Pyright's PyPI wrapper installs the matching npm package on first use.
.venv/bin/pyright --version >/dev/null
echo "selfalign: environment ready in .venv ($(.venv/bin/selfalign --version))"
