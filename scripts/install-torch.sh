#!/usr/bin/env bash
# torch for this machine, then (with --gpu-stack) the GPU-only stack. Called by scripts/setup.sh.
#
#   scripts/install-torch.sh --route            print the route this machine takes: cpu | cuda
#   scripts/install-torch.sh PYTHON             install torch==$TORCH_VERSION into PYTHON's env
#   scripts/install-torch.sh --dry-run PYTHON   what pip would install, as JSON (pip --report)
#   scripts/install-torch.sh --gpu-stack PYTHON vLLM (own venv) + flash-attn, from envs/gpu.txt
#
# Routes. cpu (no NVIDIA GPU, or SELFALIGN_TORCH=cpu): torch==2.13.0+cpu from PyTorch's CPU
# wheel index (a ~200 MB wheel; PyPI's torch==2.13.0 on Linux x86_64 is the CUDA 13 build,
# several GB with its nvidia-* wheels); if that index cannot be reached or has no such wheel,
# it falls back to whatever pip's own indexes give for torch==2.13.0, and says so. cuda (an
# NVIDIA GPU answers `nvidia-smi -L`, or SELFALIGN_TORCH=cuda): PyPI's torch==2.13.0.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
CPU_INDEX=${SELFALIGN_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

route() {
    case "${SELFALIGN_TORCH:-auto}" in
        cpu|cuda) echo "$SELFALIGN_TORCH"; return ;;
        auto) ;;
        *) echo "SELFALIGN_TORCH must be cpu, cuda or auto (got '$SELFALIGN_TORCH')" >&2; exit 2 ;;
    esac
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        echo cuda
    else
        echo cpu
    fi
}

say() { echo "install-torch: $*" >&2; }

install_torch() {  # PYTHON [pip options...]
    local python=$1; shift
    local r; r=$(route)
    if [ "$r" = cpu ]; then
        # One quick probe first: an unreachable index makes pip retry it for every package.
        local index=(--extra-index-url "$CPU_INDEX")
        if "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" \
            "$CPU_INDEX" 2>/dev/null; then
            say "route cpu: torch==${TORCH_VERSION}+cpu from the CPU wheel index ${CPU_INDEX}"
        else
            index=()
            say "route cpu: ${CPU_INDEX} not reachable; torch==${TORCH_VERSION}+cpu from pip's own indexes / find-links"
        fi
        if "$python" -m pip install --quiet ${index[@]+"${index[@]}"} "$@" "torch==${TORCH_VERSION}+cpu"; then
            return
        fi
        say "route cpu: no torch==${TORCH_VERSION}+cpu found; falling back to pip's torch==${TORCH_VERSION} (on Linux x86_64 PyPI's is the CUDA build)"
    else
        say "route cuda: torch==${TORCH_VERSION} from PyPI (the CUDA 13 build)"
    fi
    "$python" -m pip install --quiet "$@" "torch==${TORCH_VERSION}"
}

gpu_stack() {  # PYTHON
    local python=$1 venv=.venv-vllm
    local vllm; vllm=$(grep -E '^vllm==' envs/gpu.txt)
    local flash; flash=$(grep -E '^flash-attn==' envs/gpu.txt)
    # vLLM pins its own torch; in .venv it would replace the training torch, so it gets a venv
    # of its own and .venv/bin/vllm points at it (jobs find `vllm` on .venv/bin first).
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    say "gpu stack: $vllm in $venv"
    "$venv/bin/python" -m pip install --quiet "$vllm"
    ln -sf "$(pwd)/$venv/bin/vllm" "$(dirname "$python")/vllm"
    # flash-attn: PyPI has only the sdist. A prebuilt wheel for these pins (FLASH_ATTN_WHEEL: a
    # URL or path, e.g. from mjun0812/flash-attention-prebuild-wheels, matching torch 2.13, CUDA
    # 13 and this Python) is installed as it is; without one, the documented build (an hour,
    # needs nvcc: containers/train.Dockerfile does it) runs only when nvcc is here.
    if [ -n "${FLASH_ATTN_WHEEL:-}" ]; then
        say "gpu stack: flash-attn from the prebuilt wheel $FLASH_ATTN_WHEEL"
        "$python" -m pip install --quiet --no-deps "$FLASH_ATTN_WHEEL"
    elif "$python" -m pip install --quiet --only-binary=:all: --no-deps "$flash" 2>/dev/null; then
        say "gpu stack: $flash from a binary wheel on pip's indexes"
    elif command -v nvcc >/dev/null 2>&1; then
        say "gpu stack: no prebuilt $flash; building it (MAX_JOBS=${MAX_JOBS:-4}; about an hour)"
        "$python" -m pip install --quiet -r envs/train-build.txt -c envs/train.txt
        MAX_JOBS=${MAX_JOBS:-4} "$python" -m pip install --quiet --no-build-isolation "$flash"
    else
        say "gpu stack: no prebuilt $flash and no nvcc: skipped; training uses SDPA (training.attention: auto)"
    fi
}

case "${1:-}" in
    --route) route ;;
    --dry-run) shift; install_torch "$1" --dry-run --ignore-installed --report - ;;
    --gpu-stack) shift; gpu_stack "$1" ;;
    "") echo "usage: scripts/install-torch.sh --route | [--dry-run] PYTHON | --gpu-stack PYTHON" >&2; exit 2 ;;
    *) install_torch "$1" ;;
esac
