"""``cxl-harness characterize``: measure the memory a profile names (MLC-style) and compare it
with the profile's device-model targets (emulated) or expected figures (real device): target,
measured median [95% interval], error, and the emulation error over the stated figures."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from harness.commands._args import device_options, int_range, json_flag, profile_options

if TYPE_CHECKING:
    from harness.characterize import Characterization


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "characterize", parents=[profile_options(), device_options(), json_flag()],
        help="measure load latency, flush+fence cost and copy bandwidth of the memory",
        description="Idle load latency (pointer chase over more than the LLC), store+flush+fence "
        "per line and per two and four lines, invalidate+reload, regular and non-temporal copy "
        "bandwidth with one and two writers, read bandwidth; median and 95% interval of calibrated "
        "samples, compared with the profile's device-model targets or expected figures.")
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter runs (the pointer chase may then fit in the LLC)")
    p.add_argument("--runs", type=int_range(1, 1000, 5), default=None,
                   help="samples per figure (default: until the interval is precise, 6 to the "
                        "profile's max_pairs; fewer than 6 give no 95%% interval)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.characterize import characterize
    from harness.profiles import load_profile

    profile = load_profile(args.profile)
    c = characterize(profile, quick=args.quick, runs=args.runs, device=args.device,
                     allow_destructive=args.allow_destructive)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2))
    else:
        print(render(c))
    return 0 if c.ok else 1


def render(c: Characterization) -> str:
    inj = {k: v for k, v in c.injected.items() if v and k not in ("tolerance_pct", "window_us")}
    lines = [f"profile {c.profile}: {c.backend} memory, flush {c.region.get('flush_instruction')}, "
             f"LLC {c.llc_bytes >> 20} MiB, device model {inj or 'none'}"
             + (" [quick]" if c.quick else "")]
    lines.append(f"  {'figure':<26} {'median':>10} {'95% interval':>23}  {'unit':<8} verdict")
    for f in c.figures:
        lo, hi = f.interval
        v = f.verdict
        verdict = f.status.upper() if f.status != "no-expectation" else "no expectation"
        if v is not None and f.target:
            verdict = str(v[0])
        if f.expected is not None:
            what = "target" if f.target else "expected"
            verdict += f" ({what} {f.expected:g} ±{f.tolerance_pct:g}%, error {f.error_pct:+.1f}%)"
        h = f.host_stats
        if h is not None:
            hlo, hhi = h.interval
            verdict += f"; host alone {h.median:,.4g} [{hlo:,.4g}, {hhi:,.4g}]"
        if f.firmware is not None:
            verdict += f"; firmware {f.firmware:g} ({f.firmware_label})"
        lines.append(f"  {f.name:<26} {f.median:>10,.2f} [{lo:>10,.2f}, {hi:>10,.2f}]  {f.unit:<8} {verdict}")
    lat = c.figure("load_latency_ns")
    if lat.params.get("cache_resident_by_design"):
        lines.append(f"  note: the load chase covered {lat.params['region_bytes'] >> 20} MiB on purpose: the "
                     "device model's cost is measured, not the host's DRAM")
    elif not lat.params.get("exceeds_llc"):
        lines.append(f"  note: the pointer chase covered {lat.params['region_bytes'] >> 20} MiB, not more "
                     f"than the {c.llc_bytes >> 20} MiB LLC: it measured cache, not memory, latency")
    if c.emulation_error_pct is not None:
        limited = [f.name for f in c.figures if f.host_limited]
        lines.append(f"  emulation error over all stated figures: {c.emulation_error_pct:.1f}% "
                     "(mean absolute)")
        reach = c.emulation_error_reachable_pct
        lines.append("  emulation error over the figures this host can reach: "
                     + (f"{reach:.1f}%" if reach is not None else "none it can reach")
                     + (f" (HOST-LIMITED, left out: {', '.join(limited)})" if limited else ""))
        if limited:
            lines.append("  HOST-LIMITED: the host alone is slower than the target; padding only adds "
                         "time, so this host cannot emulate that figure of the device")
    if c.ok:
        lines.append("PASS")
    else:
        limited = [f.name for f in c.failed() if f.host_limited]
        other = [f.name for f in c.failed() if not f.host_limited]
        lines.append("FAIL: " + "; ".join(([", ".join(other)] if other else [])
                                          + ([f"host-limited: {', '.join(limited)}"] if limited else [])))
    return "\n".join(lines)
