#!/usr/bin/env python3
"""Shortest counterexample for every fault of the catalogue: the seeded run that catches it,
reduced to the fewest role steps that still show the expected rule or check
(harness.counterexamples; the report's Mutation section shows the same).

    .venv/bin/python scripts/counterexamples.py [--story] [--json] [FAULT ...]
"""

from __future__ import annotations

import argparse
import json

from harness.counterexamples import FaultCounterexample, fault_counterexamples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("faults", nargs="*")
    ap.add_argument("--story", action="store_true", help="print each counterexample's story")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    def show(cx: FaultCounterexample) -> None:
        if a.json:
            return
        if not cx.caught:
            print(f"{cx.fault}: not caught")
            return
        print(f"{cx.fault:28} {cx.target:36} {cx.original_steps:7} -> {cx.steps:3} step(s) "
              f"({cx.replays} replays, {cx.seconds:.1f}s, then {cx.then})")
        if a.story:
            print("\n".join(cx.story))

    rows = fault_counterexamples(a.faults or None, progress=show)
    if a.json:
        print(json.dumps([r.to_dict() for r in rows if r.caught], indent=2))


if __name__ == "__main__":
    main()
