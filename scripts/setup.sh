#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its test tools; compiles the C core.
# Needs Python 3.11+, gcc and access to PyPI. Idempotent and fast when nothing changed: the
# install is skipped while a stamp of the packaging files and the C sources still matches.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.cxl-harness-setup
want=$( { cat pyproject.toml setup.py; find cffi_src -type f \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.mk' \) \
          -not -path 'cffi_src/bin/*' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && .venv/bin/python -c 'import harness._core, harness._core_checked' 2>/dev/null; then
    exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The build's own chatter (compiler lines, setuptools notices) goes to a log; errors still show.
log=.venv/setup.log
if ! .venv/bin/python -m pip install -q -e '.[test]' >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: installing the project failed (full log above, also in $log)" >&2
    exit 1
fi
echo "$want" >"$stamp"
