#!/usr/bin/env bash
# Runs the whole test suite (and lint) in the project's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# `archc graph` tests (tests/compiler/test_graph.py): Graphviz lays out .svg and Chromium renders
# the pictures for the screenshot tests. Installed here when missing and running as root (CI, a
# fresh machine: about 100 s, most of it apt-get's download); elsewhere those tests say what to
# install and skip.
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get for the archc graph tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -n 2 "$@"
