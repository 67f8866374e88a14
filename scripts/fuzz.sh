#!/usr/bin/env bash
# The long fuzzing profile: valid random specs (flat ones over every op, and structured ones
# with blocks, repeats, conditions, ids and expressions) checked end to end (IR = Keras =
# PyTorch counts and shapes, verify passes, generated source ruff-clean), plus mutations of
# every committed spec through the compiler (never a crash). Hypothesis prints how many cases
# each property ran; the totals go to the last line.
#
#   bash scripts/fuzz.sh            # ~19,000 cases (about 40 minutes on 2 cores, measured)
#   bash scripts/fuzz.sh -x -k torch  # extra pytest arguments select a part
#   ARCHC_FUZZ_EXAMPLES=300 bash scripts/fuzz.sh   # fewer cases per property
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
log=$(mktemp)
HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q \
  --hypothesis-show-statistics "$@" \
  tests/backends/test_property.py tests/backends/test_structured_property.py | tee "$log"
HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -q --hypothesis-show-statistics "$@" \
  tests/compiler/test_fuzz.py | tee -a "$log"
cases=$(grep -Eo '[0-9]+ passing, [0-9]+ failing' "$log" | awk '{p += $1; f += $3} END {print p + 0 " passing, " f + 0 " failing"}')
echo "fuzz: $cases cases in all (a failing one is shrunk and reported above)"
