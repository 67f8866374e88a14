#!/usr/bin/env bash
# Creates .venv and installs archc with its backends and dev tools, pinned by constraints.txt.
# Needs only Python 3.11+. Re-running is cheap: nothing is reinstalled unless the pins change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=$(cat pyproject.toml constraints.txt plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.archc-setup 2>/dev/null)" != "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  # tensorflow-cpu and the CPU build of torch are pinned here; pyproject.toml keeps the
  # honest ranges that real users install from. The torch extra brings safetensors and keras
  # brings h5py: `archc weights` reads and writes both formats with them. The onnx extra
  # (onnx, onnxscript, onnxruntime) is `archc export --onnx`'s.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".[torch,dev,examples,onnx]" tensorflow-cpu keras
  # the example plugin (docs/PLUGINS.md): its ops and the ConvNeXt V2 spec are tested
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt --no-deps -e plugins/archc-example-ops
  .venv/bin/python -c "import safetensors, h5py, onnx, onnxscript, onnxruntime"
  echo "$stamp" > .venv/.archc-setup
fi
