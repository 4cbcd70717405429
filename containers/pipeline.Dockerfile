# The CPU pipeline image: every non-GPU rule runs in it (config.yaml: containers.pipeline).
# Fully pinned: envs/pipeline.txt (pip freeze of a working install) plus the base's digest.
#
# Build from the repository root (scripts/build-images.sh does this on a debootstrap base, with
# torch from a local wheel directory):
#   podman build -f containers/pipeline.Dockerfile -t localhost/selfalign/pipeline .
#
# Default base: the official python:3.11-slim-bookworm, pinned by digest (see
# containers/sandbox.Dockerfile for where the digest comes from).
ARG BASE=python:3.11-slim-bookworm@sha256:528257d48c1da0dcecc2e725d1ae34498d60c965f1241e39cd6a85a8859bdf84
FROM ${BASE}

# Behind a TLS-inspecting proxy: the proxy's CA bundle, mounted for the build only (build
# arguments without a default stay unset, and are not kept in the image's environment).
# scripts/build-images.sh passes the host's when pip there uses one (PIP_CERT).
ARG PIP_CERT
ARG NODE_EXTRA_CA_CERTS

# Where pip finds CPU torch: the official CPU index (an extra index beside PyPI) by default; a
# build without that index passes TORCH_INDEX= and a wheel directory in TORCH_FIND_LINKS (e.g.
# `podman build --volume /opt/wheels:/wheels:ro --build-arg TORCH_FIND_LINKS=/wheels`).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_FIND_LINKS=

ENV LANG=C.UTF-8 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    SELFALIGN_NO_PROGRESS=1 PYRIGHT_PYTHON_CACHE_DIR=/opt/pyright \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# python:3.11-slim has python3 (3.11, /usr/local); the bare Debian base gets bookworm's python3
# (3.11) from apt. runsc (gVisor) is the execution stage's default sandbox; git lets provenance
# record a checkout's commit when the repository is mounted. Versions: the bookworm mirror's on
# 2026-12-01; a Debian point release that replaces one fails the build here (bump them then).
RUN set -eux; \
    apt-get update; \
    if command -v python3 >/dev/null; then \
        apt-get install -y --no-install-recommends runsc=0.0~20221219.0-2+b3 \
            git=1:2.39.5-0+deb12u3 ca-certificates=20230311+deb12u1; \
    else \
        apt-get install -y --no-install-recommends runsc=0.0~20221219.0-2+b3 \
            git=1:2.39.5-0+deb12u3 ca-certificates=20230311+deb12u1 \
            python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1; \
    fi; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'; \
    python3 -m venv /opt/venv

WORKDIR /opt/selfalign
COPY envs/pipeline.txt envs/sample-release.txt envs/sample-livecodebench.txt envs/
# torch first, alone, from the CPU wheels (PyPI's torch of the same version is the CUDA build);
# then the pins (its dependencies among them), which its installed version satisfies. An empty
# PIP_* variable adds nothing.
RUN set -eux; \
    PIP_EXTRA_INDEX_URL="$TORCH_INDEX" PIP_FIND_LINKS="$TORCH_FIND_LINKS" \
        pip install --no-deps "torch==2.13.0+cpu"; \
    pip install -r envs/pipeline.txt; \
    pip check; \
    pip install --no-deps --only-binary=:all: --target /opt/venv/sample-release -r envs/sample-release.txt; \
    pip install --no-deps --only-binary=:all: --target /opt/venv/sample-livecodebench \
        -r envs/sample-livecodebench.txt; \
    pyright --version
COPY pyproject.toml README.md ./
COPY src ./src
RUN set -eux; \
    pip install --no-deps .; \
    rm -rf ./src ./build ./*.egg-info; \
    selfalign --help >/dev/null

LABEL org.selfalign.role=pipeline
WORKDIR /work
CMD ["selfalign", "--help"]
