#!/usr/bin/env bash
# Rewrite envs/pipeline.txt from a fresh virtualenv that installs pyproject.toml's dependencies,
# so the pins are exactly what `pip install .` resolves today (minus the test tools).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip
# torch first, pinned to the CPU build: resolving a bare `torch` pulls several GB of CUDA wheels.
"$tmp/venv/bin/pip" install --quiet "torch==$(sed -n 's/^torch==//p' envs/pipeline.txt)"
"$tmp/venv/bin/pip" install --quiet .
{
    echo "# The pipeline image's and CI's environment, fully pinned (pip freeze of a working install)."
    echo "# Regenerate with scripts/freeze-env.sh after changing pyproject.toml's dependencies."
    "$tmp/venv/bin/pip" freeze --exclude selfalign | sed -e 's/^pyright==/pyright[nodejs]==/' -e 's/^torch==\([0-9.]*\)+cpu$/torch==\1/'
} > envs/pipeline.txt
echo "wrote envs/pipeline.txt ($(grep -vc '^#' envs/pipeline.txt) pins)"
