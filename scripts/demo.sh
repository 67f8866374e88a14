#!/usr/bin/env bash
# The main job: check the seed spec (shapes and counts, no framework needed) and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/archc check specs/resnet_preact.yaml "$@"
