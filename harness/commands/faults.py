"""``cxl-harness faults``: run the fault catalogue on the non-coherent model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.commands._args import UINT64_MAX, check_names, int_range, json_flag


LIST_FAULTS = "cxl-harness faults --list"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "faults", parents=[json_flag()],
        help="plant each defect of the catalogue and show which check catches it")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this fault (repeatable)")
    p.add_argument("--seed", type=int_range(0, UINT64_MAX - 1000, 1), default=1,
                   help="first seed of the model's adversaries")
    p.add_argument("--seeds", type=int_range(1, 1000, 3), default=3,
                   help="seeds to try per fault before calling it missed")
    p.add_argument("--clean-runs", type=int_range(0, 1000, 3), default=3,
                   help="fault-free runs that must stay clean (0: none)")
    p.add_argument("--quick", action="store_true", help="the fast subset")
    p.add_argument("--list", action="store_true", help="list the faults of the catalogue and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.checked import fault_doc, fault_names
    from harness.faults import QUICK, run_catalogue

    names = fault_names()
    if args.list:
        if args.json:
            print(json.dumps([{"name": n, "quick": n in QUICK, "doc": fault_doc(n)} for n in names], indent=2))
        else:
            width = max(len(n) for n in names)
            for n in names:
                print(f"{n:<{width}}  {'quick' if n in QUICK else '     '}  {fault_doc(n)}")
        return 0
    check_names("--only", args.only or (), names, "fault", LIST_FAULTS)
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    res = run_catalogue(args.only, seeds=seeds, clean_runs=args.clean_runs, quick=args.quick)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0 if res.ok else 1
    clean = "clean" if not res.clean_failures else f"NOT CLEAN: {res.clean_failures[0]}"
    print(f"fault-free runs: {res.clean_runs}, {clean}")
    width = max((len(o.name) for o in res.outcomes), default=10)
    for o in res.outcomes:
        mark = "caught" if o.caught else "MISSED"
        print(f"{o.name:<{width}}  {mark:<6}  by {', '.join(o.by) or '-'}")
        print(f"{'':<{width}}          {o.diagnostic}")
    caught = sum(o.caught for o in res.outcomes)
    print(f"{caught}/{len(res.outcomes)} faults caught; {'PASS' if res.ok else 'FAIL'}")
    return 0 if res.ok else 1
