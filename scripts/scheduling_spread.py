#!/usr/bin/env python3
"""How the role layout changes the noise of two figures, same run: order2_vs_order0 (ratio
of interleaved pairs) and the sequencer drain rate, each with thread-per-role and with the
bounded pinned workers, alternating layouts round by round.

    .venv/bin/python scripts/scheduling_spread.py [--rounds 2] [--pairs 12]
"""

from __future__ import annotations

import argparse
import dataclasses

from harness.benchmarks import bench_region, drain_config, order2_vs_order0, profile_config, sequencer_drain
from harness.profiles import load_profile
from harness.stats import Plan, Samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--sample-ms", type=float, default=200.0)
    args = ap.parse_args()
    profile = load_profile("ci")
    cfg = profile_config(profile, 256 << 20)
    dcfg = drain_config(4, 1 << 14)
    plan = Plan(min_sample_s=args.sample_ms / 1e3, precision=0.0, min_pairs=args.pairs,
                max_pairs=args.pairs, budget_s=1e9)  # a fixed n, so spreads compare
    ratios: dict[str, list[float]] = {"threads": [], "workers": []}
    drains: dict[str, list[float]] = {"threads": [], "workers": []}
    with bench_region(profile, [cfg, dcfg]) as region:
        for _ in range(args.rounds):
            for sched in ("threads", "workers"):
                r = order2_vs_order0(region, dataclasses.replace(cfg, scheduling=sched), plan)
                d = sequencer_drain(region, plan, dataclasses.replace(dcfg, scheduling=sched))
                ratios[sched] += r.ratios
                drains[sched] += d.samples
                print(f"{sched:8} order2_vs_order0 {r.stats.text()}  drain {d.stats.text(',.0f')}",
                      flush=True)
    for sched in ("threads", "workers"):
        r, d = Samples.of(ratios[sched]), Samples.of(drains[sched])
        print(f"{sched:8} order2_vs_order0 {r.text()} spread {r.spread:.1%} +/-{r.rel_halfwidth:.1%}; "
              f"drain {d.text(',.0f')} spread {d.spread:.1%} +/-{d.rel_halfwidth:.1%}")


if __name__ == "__main__":
    main()
