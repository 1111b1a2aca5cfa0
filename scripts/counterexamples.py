#!/usr/bin/env python3
"""Shortest counterexample for every fault of the catalogue: the seeded run that catches it,
reduced to the fewest role steps that still show the expected rule or check.

    .venv/bin/python scripts/counterexamples.py [--story] [FAULT ...]
"""

from __future__ import annotations

import argparse
import json

from harness.checked import fault_names, run_checked, small_config
from harness.explore import shrink
from harness.faults import detections


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("faults", nargs="*")
    ap.add_argument("--story", action="store_true", help="print each counterexample's story")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    for name in a.faults or fault_names():
        for seed in (1, 2, 3):
            by, _ = detections(run_checked(small_config(seed=seed), fault=name))
            if by:
                break
        if not by:
            print(f"{name}: not caught")
            continue
        # the most specific detection: a trace rule when one fired, else the first check
        cx = shrink(small_config(seed=seed), by[0], fault=name)
        rows.append({"fault": name, "seed": seed, **cx.to_dict()})
        if not a.json:
            print(f"{name:28} {by[0]:36} {cx.original_steps:7} -> {cx.length:3} step(s) "
                  f"({cx.runs} replays, {cx.seconds:.1f}s, then {cx.after})")
            if a.story:
                print("\n".join(cx.story))
    if a.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
