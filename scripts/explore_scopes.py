#!/usr/bin/env python3
"""Bounded exploration of the small scopes (harness.explore): every single preemption of the
seeded base schedules, at every shared-memory access inside a role step, by every other role.
Then the same over the catalogue faults and the killed site mutants: which are found in scope.

    .venv/bin/python scripts/explore_scopes.py [--seeds 1] [--steps 1] [--faults] [--mutants] [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.checked import fault_names
from harness.explore import SCOPES, explore
from harness.mutate import mutation, sites


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs="+", default=[1])
    ap.add_argument("--faults", action="store_true", help="also: is each catalogue fault found in scope")
    ap.add_argument("--mutants", action="store_true",
                    help="also: is each killed site mutant found in scope")
    ap.add_argument("--budget", type=int, default=None,
                    help="with --mutants: at most this many executions per mutant and scope")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    seeds, steps = tuple(range(1, a.seeds + 1)), tuple(a.steps)
    out: dict[str, Any] = {"scopes": []}
    for sc in SCOPES:
        e = explore(sc, seeds=seeds, steps=steps)
        out["scopes"].append(e.to_dict())
        if not a.json:
            print(f"{sc.name}: {e.executions} executions, {e.distinct_states} distinct outcomes, depth "
                  f"{e.depth} preemption points, {e.seconds:.1f}s, {len(e.violations)} violation(s)")
            for v in e.violations[:3]:
                print(f"    {v}")
    if a.faults:
        found: dict[str, str] = {}
        for name in fault_names():
            for sc in SCOPES:
                e = explore(sc, fault=name, seeds=seeds, steps=steps, stop_at_first=True)
                if e.violations:
                    found[name] = f"{sc.name}: {e.violations[0][:120]}"
                    break
        out["faults_found"] = found
        if not a.json:
            missed = [n for n in fault_names() if n not in found]
            print(f"catalogue faults found in scope: {len(found)}/{len(fault_names())}"
                  + (f"; not in scope: {missed}" if missed else ""))
    if a.mutants:
        from harness.mutate import run_mutation

        killed = [o for o in run_mutation().outcomes if o.status == "killed"]
        by_key = {s.key: s for s in sites()}
        found_m, missed_m = [], []
        for o in killed:
            s, kind = by_key[o.site], o.mutation
            with mutation(s, kind):
                hit = any(explore(sc, seeds=seeds, steps=steps, stop_at_first=True,
                                  budget=a.budget).violations for sc in SCOPES)
            (found_m if hit else missed_m).append(f"{s.key}:{kind}")
        out["mutants_found"], out["mutants_not_found"] = found_m, missed_m
        if not a.json:
            print(f"killed site mutants found in scope: {len(found_m)}/{len(found_m) + len(missed_m)}")
            for m in missed_m:
                print(f"    not in scope: {m}")
    if a.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
