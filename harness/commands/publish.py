"""``cxl-harness publish``: run the shared log once and print (or save) the result."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.history import write_history
from harness.hosts.cli import add_hosts_option, publish_on_hosts
from harness.invariants import history_from_records
from harness.log import LogConfig, LogResult, run_log
from harness.profiles import DEFAULT_PROFILE, load_profile
from harness.runner import open_region, profile_injection
from harness.errors import ConfigError
from harness.units import size_arg


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "publish", help="run the shared log once (publishers, scanners, sequencer, subscribers)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="hardware profile (default: %(default)s)")
    p.add_argument("--order", type=int, choices=(0, 2), default=2)
    p.add_argument("--brokers", type=int, default=4)
    p.add_argument("--msg-size", type=size_arg, default=1024, metavar="BYTES")
    p.add_argument("--total-bytes", type=size_arg, default=256 << 20, metavar="SIZE")
    p.add_argument("--batch-bytes", type=size_arg, default=64 << 10, metavar="SIZE")
    p.add_argument("--variant", choices=("per-scanner", "shared-mutex"), default="per-scanner")
    p.add_argument("--ack", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--subscribers", type=int, default=1)
    p.add_argument("--epoch-us", type=int, default=50)
    p.add_argument("--ring-slots", type=int, default=256, help="PBR slots per broker (power of two)")
    p.add_argument("--processes", action="store_true", help="each role group in its own OS process")
    p.add_argument("--device", help="device or file to use instead of the profile's memory")
    p.add_argument("--allow-destructive", action="store_true",
                   help="consent to overwrite the device's contents")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--history", metavar="FILE",
                   help="write the run's history (docs/history-format.md) as JSON Lines")
    add_hosts_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    cfg = LogConfig(order=args.order, variant=args.variant, brokers=args.brokers,
                    subscribers=args.subscribers, msg_size=args.msg_size, batch_bytes=args.batch_bytes,
                    total_bytes=args.total_bytes, ack=args.ack, epoch_us=args.epoch_us,
                    pbr_slots=args.ring_slots, processes=args.processes, seed=args.seed,
                    record=True if args.history else None)
    if getattr(args, "hosts", None):
        return publish_on_hosts(args, cfg)
    if profile.coherence == "noncoherent-model":
        result = _run_on_model(cfg)
    else:
        with open_region(profile, cfg, device=args.device, allow_destructive=args.allow_destructive,
                         shareable=args.processes) as region:
            profile_injection(profile)
            result = run_log(cfg, region=region, progress=True)
    print(summary_line(result))
    for c in result.failed():
        print(f"  FAIL {c.id}: {c.detail}")
        for ex in c.counterexamples[:3]:
            print(f"       {ex}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        print(f"result written to {args.json}")
    if args.history and result.records is not None:
        write_history(history_from_records(cfg, result.records), args.history)
        print(f"history written to {args.history} (check it with: cxl-harness check-history "
              f"{args.history})")
    return 0 if result.ok else 1


def _run_on_model(cfg: LogConfig) -> LogResult:
    """Every role as its own agent on the non-coherent model (checked build, one thread,
    seeded scheduler): trace-rule errors become failed checks of the result."""
    from harness.checked import run_checked
    from harness.log import Check

    if cfg.processes:
        raise ConfigError("the non-coherent model runs in one process", "drop --processes")
    run = run_checked(cfg)
    for f in run.errors:
        run.result.checks.append(Check(f"rule:{f.rule}", f.doc, False, f.describe(), group="flush-fence"))
    print(f"non-coherent model: {run.events:,} accesses, {run.model['stale_reads']:,} stale reads, "
          f"{run.model['early_writebacks']:,} early write-backs, {run.model['evictions']:,} evictions, "
          f"{len(run.errors)} rule error(s)")
    return run.result


def summary_line(r: LogResult) -> str:
    verdict = "PASS" if r.ok else "FAIL"
    return (f"{verdict} order={r.order} variant={r.variant} brokers={r.brokers} ack={r.ack}: "
            f"{r.throughput_mib_s:,.0f} MiB/s, {r.messages_per_s:,.0f} msg/s, {r.batches_per_s:,.0f} "
            f"batches/s over {r.elapsed_s:.3f}s; commit latency p50 {r.latency.p50_ns / 1e3:,.1f} us "
            f"p99 {r.latency.p99_ns / 1e3:,.1f} us; checks {sum(c.ok for c in r.checks)}/{len(r.checks)} "
            f"passed [{r.region['backend']}, {r.region['flush_instruction']}]")
