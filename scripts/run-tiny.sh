#!/usr/bin/env bash
# Set up (idempotent) and run the tiny chain end to end on this machine (CPU only).
# Extra arguments go to snakemake, e.g. `scripts/run-tiny.sh seeds_dedup` for one target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/snakemake --profile profiles/tiny "$@"
