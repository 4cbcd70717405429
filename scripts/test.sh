#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: unit tests, the end-to-end tiny chain, the
# SLURM submission on a one-node SLURM started here, and the execution stage in the sandbox
# and CPU pipeline images built here with podman. Extra arguments go to pytest.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --fast     the fast tier: every test that needs no image, no SLURM, no tiny
#                              chain and is not marked slow, on 2 workers (a few minutes); no
#                              SLURM start, no image build
#
# The SLURM cluster and the images need root on Debian (apt-get). Where that is not possible,
# SELFALIGN_NO_SLURM=1 / SELFALIGN_NO_CONTAINERS=1 make those tests skip, saying so; without
# them a missing cluster or image is a test failure, not a silent pass.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fast" ]; then
    shift
    scripts/setup.sh
    exec .venv/bin/python -m pytest -n 2 -m "not e2e and not slurm and not containers and not slow" "$@"
fi
scripts/setup.sh
if [ "${SELFALIGN_NO_SLURM:-0}" != 1 ]; then
    started=$SECONDS
    scripts/slurm-local.sh
    echo "test.sh: SLURM started in $((SECONDS - started)) s"
fi
if [ "${SELFALIGN_NO_CONTAINERS:-0}" != 1 ]; then
    started=$SECONDS
    scripts/build-images.sh
    echo "test.sh: images ready in $((SECONDS - started)) s"
fi
exec .venv/bin/python -m pytest "$@"
