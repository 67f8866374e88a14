#!/usr/bin/env bash
# The main job, on the seed spec (specs/resnet_preact.yaml):
#   1. check it: every shape and parameter count, without any framework (extra arguments,
#      e.g. --set num_stages=8 or --json, go to this step);
#   2. compile it to generated/ for Keras and for PyTorch (each file verified before it is
#      written; unchanged files are left alone);
#   3. verify that the Keras and PyTorch models compute the same numbers, layer by layer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
spec=specs/resnet_preact.yaml
.venv/bin/archc check "$spec" "$@"
echo
.venv/bin/archc compile "$spec" --backend keras
.venv/bin/archc compile "$spec" --backend torch
echo
.venv/bin/archc verify "$spec"
