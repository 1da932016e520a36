#!/usr/bin/env bash
# The README's first command: set up, then run the whole chain on the embedded all-MiniLM-L6-v2 for
# the target that matches this CPU: convert every recipe, validate and bench each bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/edge-bert run "$@"
