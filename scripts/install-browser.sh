#!/usr/bin/env bash
# Install a headless-capable Chromium for the HTML report's browser test
# (tests/test_report_browser.py). Idempotent and quiet: does nothing when a
# browser is already present. Debian/Ubuntu only; must run as root (CI does).
#
#   bash scripts/install-browser.sh
#
# Exit status: 0 when a browser is available afterwards, non-zero otherwise.
set -euo pipefail

find_browser() {
    local candidate
    for candidate in "${CXL_HARNESS_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if browser="$(find_browser)"; then
    echo "install-browser: $browser already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: chromium is missing and this script needs root to install it" >&2
    echo "install-browser: fix: run 'sudo bash scripts/install-browser.sh'" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: apt-get not found; install Chromium by hand and set CXL_HARNESS_CHROMIUM=/path/to/chromium" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t install-browser.XXXXXX.log)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
    echo "install-browser: apt-get failed; last lines of its output:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi

if browser="$(find_browser)"; then
    echo "install-browser: installed $browser ($("$browser" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
echo "install-browser: apt-get succeeded but no chromium binary was found in /usr/bin" >&2
exit 1
