#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, the end-to-end tiny chain included.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"` for the fast tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
