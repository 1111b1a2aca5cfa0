#!/usr/bin/env python3
"""Same-run throughput of this checkout against an earlier commit's build.

Builds REV's C core in a temporary worktree (the same compiler and flags), then runs
``scripts/log_throughput.py --runs 1`` of each build in turn, A B A B ..., and prints per
configuration the ratio this/REV as median with its 95% interval (harness.stats) over the
pairs. Interleaving keeps a drift of the machine's speed out of the ratio.

    .venv/bin/python scripts/compare_builds.py --base REV [--pairs 8] [--total 1GiB]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.stats import Samples

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(?P<name>.+?)\s+MiB/s median\s+(?P<mib>[\d.]+)")


def build(rev: str, where: Path) -> Path:
    """REV's tree with its C core compiled in place (importable with PYTHONPATH)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev], check=True)
    out = where.parent / "build"  # outside the tree: its packaging files are not read
    out.mkdir()
    subprocess.run([sys.executable, str(where / "cffi_src" / "build_core.py")], cwd=out, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for so in (out / "harness").glob("*.so"):
        so.rename(where / "harness" / so.name)
    return where


def one_run(tree: Path, total: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "scripts/log_throughput.py", "--runs", "1", "--total", total],
                         cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    got = {m["name"].strip(): float(m["mib"]) for m in map(LINE.match, out.splitlines()) if m}
    if not got:
        raise SystemExit(f"no figures from {tree}: {out[-500:]}")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--total", default="1GiB")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxl-compare-") as tmp:
        base = build(a.base, Path(tmp) / "base")
        try:
            ratios: dict[str, list[float]] = {}
            for i in range(a.pairs):
                order = [(ROOT, "this"), (base, "base")] if i % 2 == 0 else [(base, "base"), (ROOT, "this")]
                got = {label: one_run(tree, a.total) for tree, label in order}
                for name, mib in got["this"].items():
                    if name in got["base"] and got["base"][name] > 0:
                        ratios.setdefault(name, []).append(mib / got["base"][name])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(f"throughput this / {a.base} over {a.pairs} interleaved pairs (median [95% interval]):")
    for name, values in ratios.items():
        print(f"  {name:36s} {Samples.of(values).text()}")


if __name__ == "__main__":
    main()
