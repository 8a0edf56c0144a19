#!/usr/bin/env bash
# Move the recorded dependency versions to the newest releases that pyproject.toml allows.
#
# Builds a fresh virtual environment without the constraints (so pip takes the newest
# releases), runs the README's test command in it through .ci/run, and only if everything
# passes writes the versions it tested to requirements/constraints.txt and
# requirements/constraints-keep-torch.txt. Review the diff and commit both files.
#
#   bash requirements/refresh.sh          # test the newest releases, then record them
#   bash requirements/refresh.sh --check  # only test the newest releases; record nothing
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "" | --check) ;;
  *) echo "usage: bash requirements/refresh.sh [--check]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
MBV3_NEWEST=1 MBV3_VENV="$work/venv" bash .ci/run
# The test command installs the phone extras (and LiteRT's --no-deps converter line) and runs
# their default tests; their slow tests (the demo exported end to end) run here as well, so the
# versions are recorded only once those pass too.
WANDB_MODE=offline "$work/venv/bin/python" -m pytest -q -m slow tests/test_phone_export.py

if [ "${1:-}" = --check ]; then
  echo "The newest releases pass; nothing recorded (--check)."
  exit 0
fi

python_tag=$("$work/venv/bin/python" -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())')
header="# Written by requirements/refresh.sh on $(date -u +%Y-%m-%d) after the README's test command
# passed with exactly these versions (Python, OS, machine: $python_tag).
# Install through it: pip install -c requirements/constraints.txt -e \".[all,dev]\""
frozen=$("$work/venv/bin/python" -m pip freeze --exclude-editable)
printf '%s\n%s\n' "$header" "$frozen" > requirements/constraints.txt
# The same pins without PyTorch and the CUDA libraries it brings, for a machine whose own torch
# build (a GPU image, a CPU-only build) must stay: pip keeps an installed torch that fits.
printf '%s\n%s\n' "${header//constraints.txt/constraints-keep-torch.txt}" \
  "$(grep -vE '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' <<<"$frozen")" \
  > requirements/constraints-keep-torch.txt
echo "Recorded $(grep -c '==' requirements/constraints.txt) pins in requirements/constraints*.txt."
