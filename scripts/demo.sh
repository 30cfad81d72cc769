#!/usr/bin/env bash
# The quickstart on a fresh machine: environment, a tiny model, then the quickstart config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
[ -f .tiny/qwen2/config.json ] || tuneforge make-tiny --arch qwen2 --out .tiny/qwen2
tuneforge train examples/quickstart.yaml
