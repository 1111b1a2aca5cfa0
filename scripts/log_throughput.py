#!/usr/bin/env python3
"""Order 0 vs Order 2, per-scanner vs shared-mutex, 64 KiB and 1 KiB batches: interleaved runs
on one emulated region; prints median MiB/s and batches/s (the figures of docs/architecture.md).

    .venv/bin/python scripts/log_throughput.py [--runs 5] [--total 1GiB]
"""

from __future__ import annotations

import argparse
import statistics

from harness.log import LogConfig, layout_size
from harness.runlog import run_log
from harness.region import Region
from harness.units import parse_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--total", default="1GiB")
    a = ap.parse_args()
    total = parse_size(a.total)
    base = dict(brokers=4, msg_size=1024, ack=1, record=False, subscribers=0)
    small = dict(base, batch_bytes=1024, total_bytes=max(total // 4, 1 << 20))
    cfgs = {
        "order0": LogConfig(order=0, total_bytes=total, **base),
        "order2/per-scanner": LogConfig(order=2, total_bytes=total, **base),
        "order2/shared-mutex": LogConfig(order=2, variant="shared-mutex", total_bytes=total, **base),
        "order0, 1 KiB batches": LogConfig(order=0, **small),
        "order2/per-scanner, 1 KiB batches": LogConfig(order=2, **small),
        "order2/shared-mutex, 1 KiB batches": LogConfig(order=2, variant="shared-mutex", **small),
    }
    size = max(layout_size(c) for c in cfgs.values())
    res: dict[str, list[tuple[float, float]]] = {}
    with Region.emulated((size + (2 << 20)) // (2 << 20) * (2 << 20), hugepages=True) as region:
        for _ in range(a.runs):
            for name, cfg in cfgs.items():
                r = run_log(cfg, region=region, check_history=False)
                if not r.ok:
                    raise SystemExit(f"{name}: checks failed: {[c.id for c in r.failed()]}")
                res.setdefault(name, []).append((r.throughput_mib_s, r.batches_per_s))
    for name, v in res.items():
        mib = [x for x, _ in v]
        bps = [y for _, y in v]
        print(f"{name:36s} MiB/s median {statistics.median(mib):8.0f} (min {min(mib):6.0f} "
              f"max {max(mib):6.0f})  batches/s median {statistics.median(bps):10.0f}")


if __name__ == "__main__":
    main()
