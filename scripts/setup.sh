#!/usr/bin/env bash
# Creates .venv and installs Kinema's dependencies, and the canvas's litegraph.js from npm.
# --dev adds what the tests and benchmarks need: pytest and friends, Playwright, Debian's
# Chromium, and Debian's ffmpeg (bench/video.py compares Kinema with its command line).
# torch goes first, pinned to the CPU build on this machine, so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
if [[ "${1:-}" == "--dev" ]]; then
  "${pip[@]}" -c constraints.txt -r requirements-dev.txt
  missing=()
  # Browser tests drive Debian's Chromium; Playwright never downloads a browser.
  command -v chromium >/dev/null || missing+=(chromium)
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  if (( ${#missing[@]} )); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  "${pip[@]}" -c constraints.txt -r requirements.txt
fi
npm ci --prefix web --no-audit --no-fund --silent
