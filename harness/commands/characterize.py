"""``cxl-harness characterize``: measure the memory a profile names (MLC-style) and compare it
with the profile's expected figures (pass / fail / no-expectation)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.characterize import Characterization, characterize
from harness.commands._args import device_options, int_range, json_flag, profile_options
from harness.profiles import load_profile


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "characterize", parents=[profile_options(), device_options(), json_flag()],
        help="measure load latency, flush+fence cost and copy bandwidth of the memory",
        description="Idle load latency (pointer chase over more than the LLC), store+flush+fence "
        "per line and per two lines, invalidate+reload, regular and non-temporal copy bandwidth; "
        "median and spread of several runs, compared with the profile's expectations.")
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter runs (the pointer chase may then fit in the LLC)")
    p.add_argument("--runs", type=int_range(1, 1000, 5), default=None, help="runs per figure (default 5, quick 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    c = characterize(profile, quick=args.quick, runs=args.runs, device=args.device,
                     allow_destructive=args.allow_destructive)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2))
    else:
        print(render(c))
    return 0 if c.ok else 1


def render(c: Characterization) -> str:
    inj = {k: v for k, v in c.injected.items() if v}
    lines = [f"profile {c.profile}: {c.backend} memory, flush {c.region.get('flush_instruction')}, "
             f"LLC {c.llc_bytes >> 20} MiB, injected {inj or 'nothing'}"
             + (" [quick]" if c.quick else "")]
    head = f"  {'figure':<26} {'median':>10} {'min':>10} {'max':>10} {'spread':>7}  {'unit':<8} verdict"
    lines.append(head)
    for f in c.figures:
        verdict = f.status.upper() if f.status != "no-expectation" else "no expectation"
        if f.expected is not None:
            what = "added by injection " if f.baseline else ""
            verdict += f" ({what}{f.compared:,.1f} vs {f.expected:g} ±{f.tolerance_pct:g}%)"
        if f.firmware is not None:
            verdict += f"; firmware {f.firmware:g} ({f.firmware_label})"
        lines.append(f"  {f.name:<26} {f.median:>10,.2f} {f.min:>10,.2f} {f.max:>10,.2f} "
                     f"{f.spread:>6.1%}  {f.unit:<8} {verdict}")
    lat = c.figure("load_latency_ns")
    if not lat.params.get("exceeds_llc"):
        lines.append(f"  note: the pointer chase covered {lat.params['region_bytes'] >> 20} MiB, not more "
                     f"than the {c.llc_bytes >> 20} MiB LLC: it measured cache, not memory, latency")
    lines.append("PASS" if c.ok else "FAIL: " + ", ".join(f.name for f in c.failed()))
    return "\n".join(lines)
