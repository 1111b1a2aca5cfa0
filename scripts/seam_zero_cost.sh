#!/usr/bin/env bash
# The checked build's site records (CXL_SITE in cxl_seam.h) cost the normal build nothing:
# compile every C source of the work tree twice for the normal build -- once with the seam
# headers of REF (default: main), once with the work tree's -- and compare the disassembly.
#
#     bash scripts/seam_zero_cost.sh [REF]
#     bash scripts/seam_zero_cost.sh --whole [REF]
#
# With --whole, the sources of REF too (every file of cffi_src/src as REF has it): how a change
# that routes source lines through a wrapper (cxl_ctl.h: the epoch seal's control atomics) is
# shown to compile to the same code. Prints one line per source and exits 1 if any object code
# differs.
set -euo pipefail
cd "$(dirname "$0")/.."
whole=0
if [ "${1:-}" = "--whole" ]; then whole=1; shift; fi
ref="${1:-main}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ref" "$tmp/new"
cp cffi_src/src/* "$tmp/ref/"
cp cffi_src/src/* "$tmp/new/"
if [ "$whole" = 1 ]; then
    rm -f "$tmp/ref/"*
    git archive "$ref" cffi_src/src | tar -x -C "$tmp/ref" --strip-components=2
else
    for h in cxl_seam.h cxl_check_api.h; do
        git show "$ref:cffi_src/src/$h" >"$tmp/ref/$h"
    done
fi
status=0
for src in cffi_src/src/*.c; do
    b=$(basename "$src")
    [ "$b" = cxl_check.c ] && continue   # checked build only
    for v in ref new; do
        gcc -std=c11 -O2 -fPIC -Wall -Wextra -fno-strict-aliasing -c "$tmp/$v/$b" -o "$tmp/$v/$b.o"
        objdump -d --no-show-raw-insn "$tmp/$v/$b.o" | tail -n +4 >"$tmp/$v/$b.s"
    done
    if cmp -s "$tmp/ref/$b.s" "$tmp/new/$b.s"; then
        echo "$b: normal-build code identical ($(grep -c '^ ' "$tmp/new/$b.s") instructions)"
    else
        echo "$b: normal-build code DIFFERS"
        status=1
    fi
done
exit $status
