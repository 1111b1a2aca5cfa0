"""``cxl-harness bench``: same-run ratio benchmarks and the seed's ablations; writes pyperf
JSON and our own JSON summary, and checks the profile's throughput targets."""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness.benchmarks import Measure, Ratio, run_suite, target_checks, write_outputs
from harness.commands._args import check_names, check_output_dir, device_options, int_range, profile_options
from harness.profiles import load_profile

# The comparisons run_suite knows, in its order (tests/test_cli_args.py keeps this in step).
COMPARISONS = ("fence_amortisation", "order2_vs_order0", "order2_vs_nt_copy", "per_scanner_vs_mutex",
               "header_fence_ablation", "drain_batches_per_s", "reservation_per_epoch_vs_per_batch",
               "sustained_vs_ceiling")


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench", parents=[profile_options(), device_options()],
        help="throughput ratios measured in the same run, ablations, sequencer capacity",
        description="Order 2 vs Order 0 and vs raw NT copy, per-scanner vs shared mutex (1,2,4,8 "
        "brokers), fence amortisation, per-epoch vs per-batch reservation, sequencer drain, "
        "sustained small batches; interleaved A B A B runs, median ratio and spread.")
    p.add_argument("--quick", action="store_true", help="smaller runs (CI)")
    p.add_argument("--runs", type=int_range(1, 1000, 5), default=None,
                   help="pairs per comparison (default 5, quick 3)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this comparison (repeatable), e.g. order2_vs_order0")
    p.add_argument("--out", default="reports/bench", metavar="DIR",
                   help="directory for pyperf.json and bench-summary.json (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_names("--only", args.only or (), COMPARISONS, "comparison")
    check_output_dir(args.out, "--out")
    profile = load_profile(args.profile)
    t0 = time.time()
    results = run_suite(profile, quick=args.quick, runs=args.runs, device=args.device,
                        allow_destructive=args.allow_destructive, only=args.only)
    checks = target_checks(profile, results)
    paths = write_outputs(args.out, profile, results, checks,
                          {"quick": args.quick, "seconds": round(time.time() - t0, 1)})
    for r in results.values():
        if isinstance(r, Ratio):
            print(f"{r.name:<36} ratio {r.median:8.3f}  spread {r.spread:6.1%}  "
                  f"({r.a_label}: {_med(r.a):,.0f} / {r.b_label}: {_med(r.b):,.0f} {r.unit})")
        elif isinstance(r, Measure):
            print(f"{r.name:<36} {r.median:14,.0f} {r.unit}  spread {r.spread:6.1%}")
    for c in checks:
        print(f"  {'PASS' if c.ok else 'FAIL'} {c.id}: {c.detail} [{c.source}]")
    print(f"pyperf JSON: {paths['pyperf']}; summary: {paths['summary']}")
    return 0 if all(c.ok for c in checks) else 1


def _med(xs: list[float]) -> float:
    import statistics

    return float(statistics.median(xs))
