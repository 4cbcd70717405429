# The fine-tuning image: the `train` rule runs in it (config.yaml: containers.train). CUDA 13.0
# torch, transformers, accelerate, datasets and flash-attention compiled for A100/H100, plus this
# package. Nothing but the GPU driver comes from the host (apptainer --nv / docker --gpus all).
#
# Build from the repository root (flash-attn compiles here: an hour or more; MAX_JOBS bounds the
# compiler's memory, ~4 GB per job):
#   docker build -f containers/train.Dockerfile -t selfalign/train .
#
# Base: NVIDIA's CUDA 13.0.3 devel image on Ubuntu 24.04 (nvcc for flash-attn; Python 3.12 from
# Ubuntu), because PyPI's torch 2.13.0 wheel is built for CUDA 13.0 (envs/train.txt). The digest
# is the one several public Dockerfiles and build scripts pin for this tag (found with a code
# search of public GitHub repositories); it could not be pulled from the machine this was written on.
ARG BASE=nvidia/cuda:13.0.3-devel-ubuntu24.04@sha256:b7ae301dea2c162444795462ce17a05f6a516e5a75944b57af5b88540a1a2266
FROM ${BASE}

# A100 = sm_80, H100 = sm_90: the only kernels compiled (flash-attn's default list adds sm_100/120
# and doubles the build time).
ARG FLASH_ATTN_CUDA_ARCHS="80;90"
ARG MAX_JOBS=8

ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 SELFALIGN_NO_PROGRESS=1 PYRIGHT_PYTHON_CACHE_DIR=/opt/pyright \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS} MAX_JOBS=${MAX_JOBS} \
    FLASH_ATTENTION_FORCE_BUILD=TRUE

# Ubuntu's packages are not version-pinned: the archive drops superseded versions, so a pinned
# apt line stops building; the base digest fixes the release and the toolchain. git: provenance
# records a mounted checkout's commit. bubblewrap: the execution sandbox when this image runs the
# whole workflow (profiles/a100-docker); under Apptainer those jobs run in the pipeline image.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv python3-dev git ca-certificates bubblewrap; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version'; \
    python3 -m venv /opt/venv

WORKDIR /opt/selfalign
COPY envs/pipeline.txt envs/train-build.txt envs/train.txt envs/
# 1. the pipeline's full freeze (PyPI's torch 2.13.0 is the CUDA 13.0 build, its CUDA libraries
#    held to envs/train.txt's versions by -c) and flash-attn's build requirements;
#    2. envs/train.txt: all there already but flash-attn, compiled against that torch
#    (--no-build-isolation). Pyright's npm package is
#    fetched now, as in the pipeline image, so the image also runs the seed stages offline.
RUN set -eux; \
    pip install -r envs/pipeline.txt -r envs/train-build.txt -c envs/train.txt; \
    pip install --no-build-isolation -r envs/train.txt; \
    pip check; \
    pyright --version; \
    python -c 'import torch, flash_attn; assert torch.version.cuda.startswith("13."), torch.version.cuda; print(torch.__version__, flash_attn.__version__)'
COPY pyproject.toml README.md ./
COPY src ./src
RUN set -eux; \
    pip install --no-deps --no-build-isolation .; \
    rm -rf src build ./*.egg-info; \
    selfalign --help >/dev/null

LABEL org.selfalign.role=train
WORKDIR /work
CMD ["selfalign", "--help"]
