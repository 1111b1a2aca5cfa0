#!/usr/bin/env python3
"""Soak: publish at least 10^8 messages through Order 2 with the in-run checks on, in chunks,
and report lost / duplicated / phantom counts (all must be zero) and memory use over time.

Not run in CI (minutes). Each chunk is one run of the log over the same emulated region
(re-formatted), with per-batch records off, so memory must stay flat however long it runs.

    python scripts/soak.py                         # 10^8 messages of 64 bytes, 10^7 a chunk
    python scripts/soak.py --messages 2e8 --json soak.json

Counters per chunk (from the C core's in-run counters):
  lost       messages published but not delivered to every subscriber, plus batches resolved
             as lost (x messages per batch)
  duplicated deliveries beyond what was ordered, plus per-broker order errors at delivery
             (a re-delivered ring slot shows up there) and positions not dense
  phantom    deliveries that match no published payload (checksum errors) and corrupt or
             foreign records read from shared memory
Exit status: 0 when every chunk passed every check and all three counts are zero.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.log import LogConfig, layout_size  # noqa: E402
from harness.runlog import run_log
from harness.region import Region  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=float, default=1e8)
    p.add_argument("--chunk", type=float, default=1e7, help="messages per run")
    p.add_argument("--msg-size", type=int, default=64)
    p.add_argument("--batch-bytes", type=int, default=16384)
    p.add_argument("--brokers", type=int, default=4)
    p.add_argument("--subscribers", type=int, default=1)
    p.add_argument("--ack", type=int, default=1)
    p.add_argument("--json", help="write the rows as JSON here")
    a = p.parse_args(argv)
    target, chunk = int(a.messages), int(a.chunk)
    cfg = LogConfig(order=2, brokers=a.brokers, subscribers=a.subscribers, msg_size=a.msg_size,
                    batch_bytes=a.batch_bytes, total_bytes=chunk * a.msg_size, ack=a.ack, epoch_us=50,
                    pbr_slots=256, goi_slots=1 << 14, record=False, watchdog_s=30.0)
    size = (layout_size(cfg) + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    rows = []
    totals = {"messages": 0, "lost": 0, "duplicated": 0, "phantom": 0, "failed_checks": 0}
    t0 = time.monotonic()
    print(f"soak: {target:,} messages of {a.msg_size} B, Order 2, {a.brokers} brokers, "
          f"{a.subscribers} subscriber(s), ACK {a.ack}, {cfg.msgs_per_batch} messages a batch, "
          f"chunks of {chunk:,}; pid {os.getpid()}")
    hdr = (f"{'chunk':>5} {'messages':>13} {'elapsed_s':>9} {'Mmsg/s':>7} {'lost':>5} {'dup':>5} "
           f"{'phantom':>7} {'checks':>7} {'rss_MiB':>8} {'maxrss_MiB':>10}")
    print(hdr)
    print("-" * len(hdr))
    with Region.emulated(size, hugepages=True) as region:
        i = 0
        while totals["messages"] < target:
            r = run_log(cfg, region=region)
            c = r.counters
            st = c  # in-run counters (ints); per-subscriber lists come from the checks
            delivered = min(r.messages_delivered) if r.messages_delivered else r.messages_ordered
            lost = (r.messages_published - delivered) + c["batches_lost"] * cfg.msgs_per_batch
            dup = max(0, max(r.messages_delivered or [0]) - r.messages_ordered)
            dup += sum(1 for chk in r.checks if chk.id in ("subscriber-broker-order", "dense-sequence")
                       and not chk.ok)
            phantom = st["corrupt_headers"] + st["corrupt_goi"] + st["foreign_tokens"]
            phantom += sum(1 for chk in r.checks if chk.id == "payload-checksums" and not chk.ok)
            failed = len(r.failed())
            totals["messages"] += r.messages_published
            totals["lost"] += lost
            totals["duplicated"] += dup
            totals["phantom"] += phantom
            totals["failed_checks"] += failed
            row = {"chunk": i, "messages": totals["messages"], "elapsed_s": round(time.monotonic() - t0, 1),
                   "chunk_mmsg_s": round(r.messages_per_s / 1e6, 2), "lost": lost, "duplicated": dup,
                   "phantom": phantom, "checks_passed": f"{len(r.checks) - failed}/{len(r.checks)}",
                   "rss_mib": round(rss_mib(), 1),
                   "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                   "failed": [f"{x.id}: {x.detail}" for x in r.failed()]}
            rows.append(row)
            print(f"{i:>5} {row['messages']:>13,} {row['elapsed_s']:>9} {row['chunk_mmsg_s']:>7} {lost:>5} "
                  f"{dup:>5} {phantom:>7} {row['checks_passed']:>7} {row['rss_mib']:>8} {row['maxrss_mib']:>10}",
                  flush=True)
            for f in row["failed"]:
                print(f"      FAIL {f}", flush=True)
            i += 1
    el = time.monotonic() - t0
    print("-" * len(hdr))
    print(f"total: {totals['messages']:,} messages in {el:.1f}s ({totals['messages'] / el / 1e6:.2f} M msg/s "
          f"end to end incl. checks); lost {totals['lost']}, duplicated {totals['duplicated']}, "
          f"phantom {totals['phantom']}, failed checks {totals['failed_checks']}; "
          f"RSS first {rows[0]['rss_mib']} MiB, last {rows[-1]['rss_mib']} MiB")
    if a.json:
        Path(a.json).write_text(json.dumps({"totals": totals, "rows": rows}, indent=2) + "\n")
    ok = totals["messages"] >= target and not any(totals[k] for k in ("lost", "duplicated", "phantom",
                                                                     "failed_checks"))
    print("SOAK PASS" if ok else "SOAK FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
