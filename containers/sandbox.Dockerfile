# The sandbox image: where untrusted generated code runs (execution filter and EvalPlus scoring),
# started by selfalign.sandbox's `podman` backend under gVisor (runsc), with no network, a
# read-only root, private tmpfs /tmp and /dev/shm. It holds only an interpreter and the scorer's
# imports (envs/sandbox.txt); the runner (src/selfalign/sandbox/runner.py) is bind-mounted
# read-only at start, so image and package never drift.
#
# Build (scripts/build-images.sh does this on a debootstrap base, without any registry):
#   podman build -f containers/sandbox.Dockerfile -t localhost/selfalign/sandbox .
#
# Default base: the official python:3.11-slim-bookworm, pinned by digest. The digest is the one
# public Dockerfiles pin and one build log shows resolved (found with a code search of public
# GitHub repositories); it could not be checked against Docker Hub from the build machine.
ARG BASE=python:3.11-slim-bookworm@sha256:528257d48c1da0dcecc2e725d1ae34498d60c965f1241e39cd6a85a8859bdf84
FROM ${BASE}

# Behind a TLS-inspecting proxy: the proxy's CA bundle, mounted for the build only (build
# arguments without a default stay unset, and are not kept in the image's environment).
# scripts/build-images.sh passes the host's when pip there uses one (PIP_CERT).
ARG PIP_CERT

ENV LANG=C.UTF-8 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

# python:3.11-slim has python3 (3.11, /usr/local); the bare Debian base gets bookworm's python3
# (3.11) from apt (versions: the bookworm mirror's on 2026-12-01; a point release that replaces
# one fails the build, bump them then). Either way the packages go into a venv at /opt/venv.
RUN set -eux; \
    if ! command -v python3 >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3=3.11.2-1+b1 \
            python3-venv=3.11.2-1+b1 ca-certificates=20230311+deb12u1; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi; \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'; \
    python3 -m venv /opt/venv; \
    getent passwd 65534 >/dev/null

COPY envs/sandbox.txt /opt/selfalign/sandbox.txt
COPY envs/sample-release.txt /opt/selfalign/sample-release.txt
# The runner starts with -I -S (no site-packages on sys.path); the scorer's program puts the
# image's site-packages (the label below) on sys.path itself. The import check runs the same way.
# pip and setuptools leave afterwards: nothing installs at run time.
RUN set -eux; \
    /opt/venv/bin/pip install --no-deps -r /opt/selfalign/sandbox.txt; \
    /opt/venv/bin/pip install --no-deps --only-binary=:all: --target /opt/sample-release \
        -r /opt/selfalign/sample-release.txt; \
    /opt/venv/bin/python3 -I -S -c "import sys; sys.path.insert(0, '/opt/venv/lib/python3.11/site-packages'); \
from evalplus.eval import untrusted_check; from evalplus.gen.util import trusted_exec; \
from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS"; \
    /opt/venv/bin/python3 -m pip uninstall -y -q pip setuptools

LABEL org.selfalign.role=sandbox \
      org.selfalign.python=/opt/venv/bin/python3 \
      org.selfalign.site-packages=/opt/venv/lib/python3.11/site-packages \
      org.selfalign.sample-site=/opt/sample-release
# No USER: the runner starts as root (the podman backend says --user=0:0) so that it can drop
# every sample to uid 65534 with no capabilities.
WORKDIR /tmp
CMD ["/opt/venv/bin/python3", "-I", "-S", "-c", "import sys; print(sys.version)"]
