"""``cxl-harness bench``: same-run ratio benchmarks and the seed's ablations; writes pyperf
JSON and our own JSON summary, and judges the profile's throughput targets.

Exit codes: 0 when no target was MISSED (INCONCLUSIVE allowed), 1 when one was MISSED (or,
with ``--strict``, INCONCLUSIVE), 2 for bad input."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from harness.comparisons import COMPARISONS
from harness.commands._args import check_names, check_output_dir, device_options, profile_options
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.benchmarks import Result, SuitePlan
    from harness.results import TargetCheck


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench", parents=[profile_options(), device_options()],
        help="throughput ratios measured in the same run, ablations, sequencer capacity",
        description="Order 2 vs Order 0 and vs the best raw copy, per-scanner vs shared mutex, "
        "fence amortisation, per-epoch vs per-batch reservation, sequencer drain, sustained small "
        "batches. Interleaved A/B pairs of calibrated samples are added until the 95% interval "
        "of the ratio is within the profile's precision or the budget is spent; each target is "
        "MET, MISSED or INCONCLUSIVE. Exit 0 unless a target is MISSED (or INCONCLUSIVE with "
        "--strict).")
    p.add_argument("--quick", action="store_true",
                   help="smaller runs, half-length samples, a fifth of the time budget")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this comparison (repeatable): " + ", ".join(COMPARISONS))
    p.add_argument("--precision", type=float, metavar="PCT",
                   help="stop adding pairs once the 95%% interval is within +/-PCT%% "
                   "(default: the profile's, usually 3)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="time per comparison (default: the profile's, a fifth with --quick)")
    p.add_argument("--strict", action="store_true", help="an INCONCLUSIVE target fails (exit 1)")
    p.add_argument("--out", default="reports/bench", metavar="DIR",
                   help="directory for pyperf.json and bench-summary.json (default: %(default)s)")
    p.set_defaults(func=run)


def _plan(args: argparse.Namespace, profile: Any) -> SuitePlan:
    from harness.benchmarks import SuitePlan

    plan = SuitePlan.make(profile, args.quick)
    sampling = plan.sampling
    if args.precision is not None:
        if not 0 < args.precision < 100:
            raise ConfigError(f"--precision {args.precision} is out of range",
                              "give a percentage between 0 and 100, e.g. --precision 3")
        sampling = dataclasses.replace(sampling, precision=args.precision / 100)
    if args.budget is not None:
        if not args.budget > 0:
            raise ConfigError(f"--budget {args.budget} is out of range",
                              "give a positive number of seconds, e.g. --budget 30")
        sampling = dataclasses.replace(sampling, budget_s=args.budget)
    return dataclasses.replace(plan, sampling=sampling)


def run(args: argparse.Namespace) -> int:
    from harness.benchmarks import noise_warnings, run_suite, target_checks, write_outputs
    from harness.noise import machine_state
    from harness.profiles import load_profile

    check_names("--only", args.only or (), COMPARISONS, "comparison")
    check_output_dir(args.out, "--out")
    profile = load_profile(args.profile)
    plan = _plan(args, profile)
    t0 = time.time()
    results = run_suite(profile, plan=plan, device=args.device,
                        allow_destructive=args.allow_destructive, only=args.only,
                        progress=lambda name: print(f"measuring {name} ...", flush=True))
    checks = target_checks(profile, results, precision=plan.sampling.precision)
    if args.only:  # judge only what was asked for
        checks = [c for c in checks if c.result is not None and c.result.startswith(tuple(args.only))]
    state = machine_state()
    notes = noise_warnings(state, results)
    paths = write_outputs(args.out, profile, results, checks,
                          {"quick": args.quick, "strict": args.strict,
                           "seconds": round(time.time() - t0, 1), "machine_state": state,
                           "warnings": notes})
    for r in results.values():
        print(result_line(r))
    for c in checks:
        print(target_line(c))
    for w in notes:
        print(f"  warning: {w}")
    print(f"pyperf JSON: {paths['pyperf']}; summary: {paths['summary']}")
    return 1 if any(c.fails(args.strict) for c in checks) else 0


def result_line(r: Result) -> str:
    from harness.benchmarks import Ratio

    m = r.measurement
    how = (f"{m.get('stopped', '?')} after {m.get('seconds', 0):.1f} s, samples of "
           f"{(m.get('sample_seconds') or 0) * 1e3:.0f} ms")
    out = [f"{r.name:<36} {r.stats.text('.3f' if isinstance(r, Ratio) else ',.0f')}"
           f"{'' if isinstance(r, Ratio) else ' ' + r.unit}  ({how})"]
    if isinstance(r, Ratio):
        a, b = r.to_dict()["a"]["median"], r.to_dict()["b"]["median"]
        out.append(f"{'':<38}{r.a_label}: {a:,.1f} / {r.b_label}: {b:,.1f} {r.unit}")
    if r.stats.outliers:
        out.append(f"{'':<38}outliers (Tukey, kept): samples {list(r.stats.outliers)}")
    return "\n".join(out)


def target_line(c: TargetCheck) -> str:
    return f"  {c.verdict.value:<12} {c.id}: {c.reason} [{c.source}]"


__all__ = ["COMPARISONS", "register", "run"]
