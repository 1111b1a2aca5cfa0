#!/usr/bin/env python3
"""Bounded exploration of the small scopes (harness.explore): every single preemption of the
seeded base schedules, at every shared-memory access inside a role step, by every other role.
Then the same over the catalogue faults and the killed site mutants: which are found in scope.

    .venv/bin/python scripts/explore_scopes.py [--seeds 1] [--steps 1] [--faults] [--mutants] [--json]

With --search, the systematic search instead (harness.explore.search_scope): a depth-first
search over every choice point (which agent runs at every shared-memory access and control
atomic, x86-TSO store-buffer drains, the non-coherent model's choices), bounded by --bound
deviations, with state hashing and sleep sets; --faults then asks which catalogue faults it
finds, --weaken which seq_cst control stores weakened to release it finds (with and without TSO).

    .venv/bin/python scripts/explore_scopes.py --search [--bound 1] [--no-tso] [--faults] [--weaken]
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
    ap.add_argument("--search", action="store_true", help="the systematic search (see above)")
    ap.add_argument("--bound", type=int, default=1, help="with --search: deviations allowed (-1: none)")
    ap.add_argument("--no-tso", action="store_true", help="with --search: control stores are not buffered")
    ap.add_argument("--weaken", action="store_true", help="with --search: each seq_cst control store weakened")
    ap.add_argument("--max-seconds", type=float, default=290.0, help="with --search: per scope")
    ap.add_argument("--question-seconds", type=float, default=120.0,
                    help="with --search --faults/--weaken: per fault or weakening and scope")
    ap.add_argument("--story", action="store_true",
                    help="with --search: tell every violation found (scope, fault, mutant) as a story")
    ap.add_argument("--skip-scopes", action="store_true", help="with --search: only the questions")
    ap.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                    help="with --search --mutants: only the killed mutants whose name contains one of these")
    ap.add_argument("--scopes", nargs="+", default=[], metavar="TEXT",
                    help="with --search: only the scopes whose name contains one of these")
    a = ap.parse_args()
    if a.search:
        search_main(a)
        return
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
            tell(a, sc, e)
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


def tell(a: argparse.Namespace, sc: Any, e: Any, fault: str | None = None) -> None:
    """With --story: the first violation of search ``e`` as a story (harness.explore.search_story)."""
    from harness.explore import search_story

    if a.story and not a.json and e.witness is not None:
        for line in search_story(sc.config(1), e.witness, fault=fault, tso=not a.no_tso):
            print(f"      {line}")


def search_main(a: argparse.Namespace) -> None:
    from harness.checked import ctl_sites, ctl_weaken
    from harness.explore import search_scope

    bound = None if a.bound < 0 else a.bound
    tso = not a.no_tso
    scopes = [sc for sc in SCOPES if not a.scopes or any(t in sc.name for t in a.scopes)]
    if not scopes:
        raise SystemExit(f"explore_scopes: no scope name contains any of {a.scopes}; the scopes are: "
                         + "; ".join(sc.name for sc in SCOPES))
    out: dict[str, Any] = {"scopes": []}
    for sc in [] if a.skip_scopes else scopes:
        e = search_scope(sc, tso=tso, bound=bound, max_seconds=a.max_seconds)
        out["scopes"].append(e.to_dict())
        if not a.json:
            print(f"{sc.name}: {e.executions} executions, {e.points} states explored, {e.distinct_states} "
                  f"distinct, {e.revisits} revisits cut, {e.sleep_cut} sleep-set cuts, max depth {e.max_depth}, "
                  f"bound {bound}, {'complete' if e.complete else 'NOT complete (time budget)'}, "
                  f"{e.seconds:.1f}s, {len(e.violations)} violation(s)", flush=True)
            for v in e.violations[:3]:
                print(f"    {v}")
    if a.faults:
        found: dict[str, str] = {}
        for name in fault_names():
            for sc in scopes:
                e = search_scope(sc, fault=name, tso=tso, bound=bound, stop_at_first=True,
                                 max_seconds=a.question_seconds)
                if e.violations:
                    found[name] = f"{sc.name}: {e.executions} execution(s): {e.violations[0][:100]}"
                    tell(a, sc, e, fault=name)
                    break
            if not a.json:
                print(f"  {name}: {found.get(name, 'not found in scope')}", flush=True)
        out["faults_found"] = found
    if a.mutants:
        from harness.mutate import mutation, run_mutation, sites

        killed = [o for o in run_mutation().outcomes if o.status == "killed"
                  and (not a.only or any(t in f"{o.site}:{o.mutation}" for t in a.only))]
        by_key = {s.key: s for s in sites()}
        found_m: dict[str, str] = {}
        missed_m: list[str] = []
        for o in killed:
            site, kind = by_key[o.site], o.mutation
            hit = ""
            with mutation(site, kind):
                for sc in scopes:
                    e = search_scope(sc, tso=tso, bound=bound, stop_at_first=True,
                                     max_seconds=a.question_seconds)
                    if e.violations:
                        hit = f"{sc.name}: {e.executions} execution(s)"
                        tell(a, sc, e)
                        break
            name = f"{site.key}:{kind}"
            if hit:
                found_m[name] = hit
            else:
                missed_m.append(name)
            if not a.json:
                print(f"  {name}: {hit or 'not found in scope'}", flush=True)
        out["mutants_found"], out["mutants_not_found"] = found_m, missed_m
        if not a.json:
            print(f"killed site mutants found by the search: {len(found_m)}/{len(killed)}")
    if a.weaken:
        res: dict[str, dict[str, bool]] = {}
        for s in ctl_sites():
            if s["kind"] != "store" or s["order"] != 5:
                continue
            key = f"{s['func']}:{s['file']}:{s['line']}"
            res[key] = {}
            for t in (True, False):
                ctl_weaken(s["id"], 3)
                try:
                    res[key]["tso" if t else "sc"] = any(
                        search_scope(sc, tso=t, bound=bound, stop_at_first=True,
                                     max_seconds=a.question_seconds).violations for sc in SCOPES[:2])
                finally:
                    ctl_weaken(None)
            if not a.json:
                print(f"  weakened {key}: found with TSO {res[key]['tso']}, without {res[key]['sc']}", flush=True)
        out["weakened"] = res
    if a.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
