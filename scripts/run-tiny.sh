#!/usr/bin/env bash
# Set up (idempotent) and run the tiny chain end to end on this machine (CPU only). It ends with
# its bytes checked against tests/expected/tiny.lock.json ("verified: N of N artifacts
# identical", or "not verified: ..." naming the first divergence, exit 0). --strict makes a
# divergence fail the run (CI and the end-to-end tests). Other arguments go to snakemake, e.g.
# `scripts/run-tiny.sh seeds_dedup` for one target.
set -euo pipefail
cd "$(dirname "$0")/.."
strict=()
if [ "${1:-}" = "--strict" ]; then
    shift
    strict=(--configfile config.yaml profiles/tiny/recipe.yaml profiles/tiny/strict.yaml)
fi
scripts/setup.sh
exec .venv/bin/snakemake --profile profiles/tiny "${strict[@]}" "$@"
