#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: unit tests, the end-to-end tiny chain, the
# SLURM submission on a one-node SLURM started here, and the execution stage in the sandbox
# and CPU pipeline images built here with podman. Extra arguments go to pytest, e.g.
#   scripts/test.sh -m "not e2e and not slurm and not containers"   # the fast tests only
# The SLURM cluster and the images need root on Debian (apt-get). Where that is not possible,
# SELFALIGN_NO_SLURM=1 / SELFALIGN_NO_CONTAINERS=1 make those tests skip, saying so; without
# them a missing cluster or image is a test failure, not a silent pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${SELFALIGN_NO_SLURM:-0}" != 1 ]; then
    scripts/slurm-local.sh
fi
if [ "${SELFALIGN_NO_CONTAINERS:-0}" != 1 ]; then
    scripts/build-images.sh
fi
exec .venv/bin/python -m pytest "$@"
