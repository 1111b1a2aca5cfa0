#!/usr/bin/env bash
# Quick start 1: set everything up, then run the main job (default: emulated memory, profile ci).
# Extra arguments go to 'cxl-harness run', e.g. ./run.sh --profile emulated-cxl
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/cxl-harness run "$@"
