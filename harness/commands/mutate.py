"""``cxl-harness mutate``: switch each seam call site of the protocol off, one at a time, and
show which check catches it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.commands._args import int_range, json_flag


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "mutate", parents=[json_flag()],
        help="delete each flush/fence/invalidate of the protocol (sites found in the binary) "
             "and show which check kills it")
    p.add_argument("--only", action="append", metavar="SITE",
                   help="mutate only this site: a key such as write_header/flush#1, or file:line "
                        "(repeatable)")
    p.add_argument("--seeds", type=int_range(1, 100, 6), default=None,
                   help="seeds per model run configuration (each also runs with preemption; "
                        "default: the pinned test's seeds, 1-6)")
    p.add_argument("--counterexample", action="store_true",
                   help="for each killed mutant, reduce the killing run to its shortest schedule "
                        "and tell it as a story")
    p.add_argument("--patches", action="store_true",
                   help="the patch mutants instead (bounds, order, checks changed in the C source, "
                        "one rebuild each); --only then names a patch mutant")
    p.add_argument("--no-search", action="store_true",
                   help="with --patches: judge the mutants by the model runs only (no systematic "
                        "search of the scopes for what they do not kill)")
    p.add_argument("--list", action="store_true",
                   help="list the sites found in the checked build (with --patches: the patch "
                        "mutants) and exit")
    p.add_argument("--all", action="store_true",
                   help="with --list: also the seam calls outside the protocol (benchmarks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.patches:
        return run_patches(args)
    if args.no_search:
        from harness.errors import ConfigError

        raise ConfigError("--no-search goes with --patches (the site mutants have no search stage)",
                          "add --patches, or drop --no-search")
    from harness.mutate import SEEDS, counterexample, run_mutation, select, sites

    if args.list:
        found = sites(protocol_only=not args.all)
        if args.json:
            print(json.dumps([{"key": s.key, "location": s.location, "op": s.op, "function": s.func,
                               "protocol": s.protocol, "mutations": list(s.mutations)} for s in found],
                             indent=2))
            return 0
        width = max((len(s.key) for s in found), default=10)
        for s in found:
            print(f"{s.key:<{width}}  {s.location:<22}  {', '.join(s.mutations)}"
                  + ("" if s.protocol else "  (not protocol)"))
        print(f"{len(found)} sites")
        return 0
    select(sites(), args.only)  # an unknown site is a usage error before anything runs
    seeds = SEEDS if args.seeds is None else tuple(range(1, args.seeds + 1))
    live = not args.json and sys.stdout.isatty()

    def progress(o: Any) -> None:
        if live:
            print(f"  {o.name} ... {o.status}", file=sys.stderr)

    rep = run_mutation(args.only, seeds=seeds, progress=progress)
    stories: dict[str, Any] = {}
    if args.counterexample:
        by_key = {s.key: s for s in sites()}
        for o in rep.outcomes:
            if o.status == "killed":
                stories[o.name] = counterexample(by_key[o.site], o)
    if args.json:
        d = rep.to_dict()
        for o in d["outcomes"]:
            cx = stories.get(f"{o['site']}:{o['mutation']}")
            if cx is not None:
                o["counterexample"] = cx.to_dict()
        print(json.dumps(d, indent=2))
        return 0 if rep.ok else 1
    base = rep.baseline
    print(f"model runs: {len(rep.to_dict()['baseline']['configs'])} configurations x "
          f"{len(seeds)} seeds x (whole steps, preemption): {base.runs} fault-free runs, "
          + ("clean" if base.ok else f"NOT CLEAN: {base.failures[0]}"))
    width = max((len(o.name) for o in rep.outcomes), default=10)
    for o in rep.outcomes:
        where = f"{o.location} {o.op:<11} {'/'.join(o.roles) or '-':<22}"
        if o.status == "killed":
            pre = f", preemption {o.preempt}" if o.preempt else ""
            tail = (f"by {', '.join(o.by[:3])} in {o.config} seed {o.seed}{pre} "
                    f"(event {o.events_to_detection}, {o.seconds:.2f}s, {o.runs} run(s))")
        else:
            tail = o.reason or f"no check fired in {o.runs} run(s)"
        print(f"{o.name:<{width}}  {where}  {o.status.upper() if o.status == 'survived' else o.status:<10}  {tail}")
        if o.name in stories:
            print("\n".join("    " + line for line in stories[o.name].story))
    d = rep.to_dict()
    print(f"{rep.sites} sites, {d['mutants']} mutants: {d['killed']} killed, {d['equivalent']} equivalent, "
          f"{d['survived']} survived, {d['unreached']} unreached, {d['fault_only']} in fault-plan code only; "
          f"score {rep.score:.1%}; {rep.seconds:.1f}s; {'PASS' if rep.ok else 'FAIL'}")
    return 0 if rep.ok else 1


def run_patches(args: argparse.Namespace) -> int:
    """``mutate --patches``: each patch mutant built and run (harness.patchmut)."""
    from harness.errors import ConfigError
    from harness.patchmut import by_name, run_patches as run_all

    if args.counterexample:
        raise ConfigError("--counterexample is for site mutants only",
                          "drop --patches, or drop --counterexample")
    if args.all and not args.list:
        raise ConfigError("--all goes with --list", "add --list, or drop --all")
    chosen = by_name(args.only)  # an unknown name is a usage error before anything is built
    if args.list:
        if args.json:
            print(json.dumps([{"name": m.name, "what": m.what,
                               "files": sorted({e.file for e in m.edits})} for m in chosen], indent=2))
            return 0
        width = max(len(m.name) for m in chosen)
        for m in chosen:
            print(f"{m.name:<{width}}  {', '.join(sorted({e.file for e in m.edits}))}: {m.what}")
        print(f"{len(chosen)} patch mutants")
        return 0
    seeds = None if args.seeds is None else tuple(range(1, args.seeds + 1))
    live = not args.json and sys.stdout.isatty()

    def progress(o: Any) -> None:
        if live:
            print(f"  {o.name} ... {o.status}", file=sys.stderr)

    rep = run_all([m.name for m in chosen], seeds=seeds, progress=progress, search=not args.no_search)
    d = rep.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0 if rep.ok else 1
    c = rep.control
    searched = f" and {c.searched} search executions" if c.searched else ""
    print(f"control (unpatched, built like the mutants): {c.runs - c.searched} model runs{searched} clean "
          f"(build {c.build_seconds:.1f}s, {c.seconds:.1f}s)")
    width = max((len(o.name) for o in rep.outcomes), default=10)
    for o in rep.outcomes:
        if o.status == "killed":
            where = (f" in {o.config}" if o.searched else f" in {o.config} seed {o.seed}"
                     + (f", preemption {o.preempt}" if o.preempt else "")) if o.config else " (static check)"
            tail = f"by {', '.join(o.by[:3])}{where} ({o.runs} run(s))"
        else:
            tail = o.reason or o.diagnostic or f"no check fired in {o.runs} run(s)"
        status = o.status.upper() if o.status in ("survived", "crashed", "hung", "build-failed") else o.status
        print(f"{o.name:<{width}}  {status:<10}  build {o.build_seconds:4.1f}s  total {o.seconds:5.1f}s  {tail}")
        for line in o.story:
            print(f"    {line}")
    print(f"{d['mutants']} patch mutants: {d['killed']} killed, {d['equivalent']} equivalent, "
          f"{d['survived']} survived, {d['crashed']} crashed, {d['hung']} hung; {rep.seconds:.1f}s; "
          f"{'PASS' if rep.ok else 'FAIL'}")
    return 0 if rep.ok else 1


__all__ = ["register", "run", "run_patches"]
