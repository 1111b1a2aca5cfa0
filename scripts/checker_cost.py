#!/usr/bin/env python3
"""What the ordering checks cost: payload verification by a subscriber (interleaved runs with
verification on/off) and the history validator over a run's per-batch records.

    .venv/bin/python scripts/checker_cost.py
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

from harness.stats import Plan, Sampler, Samples, Timed, measure_pairs
from harness.history import check_history
from harness.invariants import history_from_records
from harness.log import LogConfig, LogHandle, format_region, layout_size
from harness.runlog import run_log
from harness.region import Region


def verification_cost() -> None:
    on = LogConfig(order=2, brokers=4, subscribers=1, msg_size=1024, batch_bytes=64 << 10,
                   total_bytes=256 << 20, record=False)
    off = replace(on, verify=False)
    msgs = on.total_batches * on.msgs_per_batch

    def side(cfg: LogConfig) -> Sampler:
        return Sampler(lambda: Timed(msgs, run_log(cfg, check_history=False).elapsed_s), "cost")

    # seconds per message with verification minus without, per interleaved pair
    p = measure_pairs(side(on), side(off), Plan(min_pairs=8), ratio=lambda x, y: (x - y) * 1e9)
    per = Samples.of(p.ratios)
    print(f"payload verification: {per.text('.1f')} ns per 1 KiB message "
          f"({per.median:.0f} ms per million)")


def validator_cost() -> None:
    cfg = LogConfig(order=2, brokers=4, subscribers=2, msg_size=64, batch_bytes=640,
                    total_bytes=64 * 10 * 200_000, pbr_slots=1024, record=True)
    with Region.emulated((layout_size(cfg) + (2 << 20)) // (2 << 20) * (2 << 20)) as region:
        format_region(region, cfg)
        h = LogHandle(region, cfg)
        t = time.perf_counter()
        h.run()
        run_s = time.perf_counter() - t
        stats, recs = h.stats(), h.records()
        h.close()
    t = time.perf_counter()
    report = check_history(history_from_records(cfg, recs), 2)
    dt = time.perf_counter() - t
    msgs, batches = stats["messages_published"], stats["batches_published"]
    print(f"history validator: {dt / msgs * 1e6:.3f} s per million messages "
          f"({dt / batches * 1e9:.0f} ns per batch, 10 messages a batch, 2 subscribers; "
          f"the run itself {run_s / msgs * 1e9:.0f} ns per message); ok={report.ok}")


if __name__ == "__main__":
    verification_cost()
    validator_cost()
