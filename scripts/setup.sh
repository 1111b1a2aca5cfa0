#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its test tools; compiles the C core.
# Needs Python 3.11+, gcc and access to PyPI. Idempotent: re-running only refreshes the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
