#!/usr/bin/env bash
# Creates .venv and installs Kinema's dependencies; --dev adds what the tests need.
# torch goes first, pinned to the CPU build on this machine, so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
if [[ "${1:-}" == "--dev" ]]; then
  "${pip[@]}" -c constraints.txt -r requirements-dev.txt
else
  "${pip[@]}" -c constraints.txt -r requirements.txt
fi
