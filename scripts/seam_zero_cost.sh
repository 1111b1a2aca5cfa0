#!/usr/bin/env bash
# The checked build's site records (CXL_SITE in cxl_seam.h) cost the normal build nothing:
# compile every C source of the work tree twice for the normal build -- once with the seam
# headers of REF (default: main), once with the work tree's -- and compare the disassembly.
#
#     bash scripts/seam_zero_cost.sh [REF]
#
# Prints one line per source and exits 1 if any object code differs.
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-main}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ref" "$tmp/new"
cp cffi_src/src/* "$tmp/ref/"
cp cffi_src/src/* "$tmp/new/"
for h in cxl_seam.h cxl_check_api.h; do
    git show "$ref:cffi_src/src/$h" >"$tmp/ref/$h"
done
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
