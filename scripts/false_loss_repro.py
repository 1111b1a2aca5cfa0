"""Reproduce the false loss of issue 13: 8 MiB batches, 2-slot rings, slot_timeout_ms=2 and a
verifying (slow) subscriber; every publisher stays alive. Usage:

    python scripts/false_loss_repro.py [SEED] [BROKERS] [SUBSCRIBERS]

Prints what was published, declared lost and acknowledged, and the verdict with its failures.
"""
import sys

from harness.log import LogConfig
from harness.runlog import run_log


def main() -> int:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    brokers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    subscribers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    cfg = LogConfig(order=2, brokers=brokers, subscribers=subscribers, msg_size=1024,
                    batch_bytes=8 << 20, total_bytes=32 * (8 << 20), ack=1, epoch_us=50,
                    pbr_slots=2, goi_slots=64, slot_timeout_ms=2.0, watchdog_s=10.0, record=True,
                    seed=seed)
    r = run_log(cfg)
    print(f"published={r.batches} ordered={r.batches_ordered} lost={r.batches_lost} "
          f"acked_batches={r.counters['batches_acked']} delivered={r.messages_delivered} "
          f"stalled={r.stalled} verdict={'PASS' if r.ok else 'FAIL'}")
    for c in r.failed():
        print("  FAILED", c.id, c.detail[:150])
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
