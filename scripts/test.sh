#!/usr/bin/env bash
# Install the dev extras and run the whole test suite: the fast tier, then the slow end-to-end tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pytest -q -m "not slow" "$@"
python -m pytest -q -m slow "$@" || [ $? -eq 5 ]  # 5: no slow test selected
