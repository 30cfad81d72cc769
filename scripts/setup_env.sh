#!/usr/bin/env bash
# Create .venv (if missing) and install tuneforge with the given extras.
# torch comes first, pinned to the CPU build these machines carry; set TUNEFORGE_TORCH to choose another.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "${TUNEFORGE_TORCH:-torch==2.13.0}"
python -m pip install -q -e ".${extras:+[$extras]}"
echo "tuneforge installed in $(pwd)/.venv"
