#!/usr/bin/env bash
# Quick start 2: set everything up, then run the test suite (what CI runs).
# Extra arguments go to pytest, e.g. ./test.sh -m checker
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
# The report's browser test needs Chromium; in CI a missing browser fails that test.
if [ "$(id -u)" -eq 0 ] || command -v chromium >/dev/null 2>&1; then
    bash scripts/install-browser.sh
fi
exec .venv/bin/python -m pytest "$@"
