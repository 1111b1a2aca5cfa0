"""``cxl-harness publish``: run the shared log once and print (or save) the result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands._args import (
    UINT64_MAX,
    check_output_file,
    confirm_long_run,
    device_options,
    estimated_seconds,
    float_range,
    int_range,
    profile_options,
    ring_slots,
)
from harness.crash import PROCESS_WATCHDOG_S, apply_crash, crash_lines, parse_crash
from harness.errors import ConfigError
from harness.hosts.cli import add_hosts_option, publish_on_hosts
from harness.limits import MAX_BROKERS, MAX_SUBSCRIBERS
from harness.profiles import Profile, load_profile

if TYPE_CHECKING:
    from harness.log import LogConfig, LogResult
from harness.units import size_arg

MAX_TOTAL_BYTES = 1 << 50  # 1 PiB: weeks at any rate seen; more is a typo


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "publish", parents=[profile_options(), device_options()],
        help="run the shared log once (publishers, scanners, sequencer, subscribers)")
    p.add_argument("--order", type=int, choices=(0, 2, 5), default=2,
                   help="0 per-broker order, 2 total order, 5 total order with per-client FIFO")
    # brokers, message and batch sizes, payload and epoch default to the profile's workload
    p.add_argument("--brokers", type=int_range(1, MAX_BROKERS), default=None,
                   help="default: the profile's workload")
    p.add_argument("--msg-size", type=size_arg, default=None, metavar="BYTES")
    p.add_argument("--total-bytes", type=size_arg, default=None, metavar="SIZE")
    p.add_argument("--batch-bytes", type=size_arg, default=None, metavar="SIZE")
    p.add_argument("--variant", choices=("per-scanner", "shared-mutex"), default="per-scanner")
    p.add_argument("--ack", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--subscribers", type=int_range(0, MAX_SUBSCRIBERS), default=1)
    p.add_argument("--epoch-us", type=int_range(1, 1_000_000, 50), default=None)
    p.add_argument("--ring-slots", type=ring_slots, default=256, help="PBR slots per broker (power of two)")
    p.add_argument("--processes", action="store_true", help="each role group in its own OS process")
    p.add_argument("--seed", type=int_range(0, UINT64_MAX, 1), default=1)
    p.add_argument("--slot-timeout", type=float_range(0.001, 3_600_000.0, 50), metavar="MS",
                   help="declare a claimed, never committed slot (and a dead scanner or "
                        "subscriber) lost/dead after this many ms; default: never")
    p.add_argument("--watchdog", type=float_range(0.1, 86_400.0, 30), metavar="S",
                   help="end the run when nothing progressed for this long (default 30 s)")
    p.add_argument("--crash", type=parse_crash, metavar="ROLE[:INDEX]@WHEN",
                   help="kill one role mid-run: publisher|scanner|subscriber, INDEX default 0, "
                        "WHEN a share (50%%) or a count of its batches (10000); needs "
                        "--slot-timeout (see docs/architecture.md, Crash injection)")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--history", metavar="FILE",
                   help="write the run's history (docs/history-format.md) as JSON Lines")
    p.add_argument("--yes", action="store_true", help="run even when the size implies hours")
    o5 = p.add_argument_group("Order 5 (per-client FIFO; with --order 5 only)")
    o5.add_argument("--gap-policy", choices=("markers", "fence"), default=None,
                    help="a client gap older than the timeout: declare the missing batches lost "
                    "(markers in the log, default) or fence the client's session")
    o5.add_argument("--gap-timeout-ms", type=_positive_ms, default=None, metavar="MS",
                    help="how long a client gap may stay open (default 1000; it must exceed the "
                    "longest stall of a live broker)")
    o5.add_argument("--hold-cap", type=int_range(1, 1 << 20), default=None, metavar="N",
                    help="batches the sequencer may hold out of client order (default: one ring of "
                    "every broker, which a run never fills)")
    o5.add_argument("--client-spread", type=int_range(1, MAX_BROKERS), default=None, metavar="N",
                    help="spread each client's batches over N brokers (a divisor of --brokers; "
                    "default: the profile's workload.order5, else 1)")
    o5.add_argument("--plant-gap", type=_gap, default=None, metavar="CLIENT:SEQ",
                    help="client CLIENT never sends its batch SEQ (a gap the timeout resolves)")
    add_hosts_option(p)
    p.set_defaults(func=run)


def _positive_ms(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not 0.0 < v <= 3_600_000:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: use a time above 0, at most 3600000 ms")
    return v


def _gap(text: str) -> tuple[int, int]:
    client, sep, seq = text.partition(":")
    if not sep or not client.isdigit() or not seq.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not CLIENT:SEQ (e.g. 0:5)")
    return int(client), int(seq)


def _order5_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Order 5 options given; refused at other order levels (nothing is ignored silently)."""
    given = {name: getattr(args, name, None) for name in
             ("gap_policy", "gap_timeout_ms", "hold_cap", "client_spread", "plant_gap")}
    given = {k: v for k, v in given.items() if v is not None}
    if given and args.order != 5:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{names} apply to Order 5 only (this run is --order {args.order})",
                          "add --order 5, or drop those options")
    out: dict[str, Any] = {k: v for k, v in given.items() if k != "plant_gap"}
    gap = given.get("plant_gap")
    if gap is not None:
        out["gap_client"], out["gap_seq"] = gap
    return out


def make_config(args: argparse.Namespace, profile: Profile) -> LogConfig:
    """The run's configuration: the profile's workload, with what the arguments name instead;
    nothing is changed silently."""
    from dataclasses import replace

    from harness.log import workload_config

    base = workload_config(profile, order=args.order, variant=args.variant, subscribers=args.subscribers,
                           seed=args.seed)
    for name in ("brokers", "msg_size", "total_bytes", "batch_bytes", "epoch_us"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(base, name))
    if args.total_bytes > MAX_TOTAL_BYTES:
        raise ConfigError(f"--total-bytes {args.total_bytes} is more than {MAX_TOTAL_BYTES} bytes (1 PiB)",
                          "ask for less, e.g. --total-bytes 256MiB")
    order5 = _order5_options(args)
    if args.order == 5 and "client_spread" not in order5 and args.brokers != base.brokers:
        order5["client_spread"] = 1  # the profile's spread was for its own broker count
    cfg = replace(base, brokers=args.brokers, msg_size=args.msg_size, batch_bytes=args.batch_bytes,
                  total_bytes=args.total_bytes, ack=args.ack, epoch_us=args.epoch_us,
                  pbr_slots=args.ring_slots, processes=args.processes,
                  record=True if args.history else None, **order5,
                  slot_timeout_ms=args.slot_timeout or 0.0,
                  watchdog_s=args.watchdog if args.watchdog is not None else 30.0)
    if args.msg_size > args.batch_bytes:
        raise ConfigError(f"--msg-size {args.msg_size} is larger than --batch-bytes {args.batch_bytes}: "
                          "a batch holds whole messages",
                          f"use --batch-bytes {args.msg_size} or more, or a smaller --msg-size")
    used = cfg.msgs_per_batch * cfg.msg_size
    if used != args.batch_bytes:
        print(f"note: a batch holds {cfg.msgs_per_batch} message(s) of {cfg.msg_size} bytes: "
              f"{used} of the {args.batch_bytes} bytes of --batch-bytes", file=sys.stderr)
    return cfg


def run(args: argparse.Namespace) -> int:
    from harness.history import write_history
    from harness.invariants import history_from_records
    from harness.runlog import run_log
    from harness.runner import open_region

    profile = load_profile(args.profile)
    cfg = make_config(args, profile)
    for option in ("json", "history"):
        if getattr(args, option):
            check_output_file(getattr(args, option), f"--{option}")
    if args.crash is not None:
        cfg = with_crash(cfg, args, model=profile.coherence == "noncoherent-model")
    confirm_long_run("publish", estimated_seconds(cfg.total_bytes, cfg.total_batches), args.yes,
                     f"publishing {cfg.total_bytes:,} bytes in {cfg.total_batches:,} batches")
    if getattr(args, "hosts", None):
        return publish_on_hosts(args, cfg)
    if profile.coherence == "noncoherent-model":
        result = _run_on_model(cfg, profile)
    else:
        with open_region(profile, cfg, device=args.device, allow_destructive=args.allow_destructive,
                         shareable=args.processes) as region:
            result = run_log(cfg, region=region, progress=True)
    print(result.summary_line())
    for line in crash_lines(result):
        print(line)
    if cfg.order == 5:
        print(order5_line(result))
    model = device_model_line(result)
    if model:
        print(model)
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


def with_crash(cfg: LogConfig, args: argparse.Namespace, model: bool) -> LogConfig:
    """``cfg`` with the crash of ``--crash``; a crashed publisher's broker can never finish, so
    unless ``--watchdog`` is given the run ends after a short quiet time -- and says so."""
    import dataclasses

    cfg = apply_crash(cfg, args.crash, slot_timeout_given=args.slot_timeout is not None,
                      model=model, hosts=bool(getattr(args, "hosts", None)))
    if cfg.crash_role == "publisher" and args.watchdog is None:
        quiet = max(PROCESS_WATCHDOG_S if cfg.processes else 2.0, 20 * cfg.slot_timeout_ms / 1000)
        cfg = dataclasses.replace(cfg, watchdog_s=quiet)
        print(f"note: --crash {args.crash}: its broker can never finish its quota, so the run ends "
              f"when nothing progressed for {quiet:g} s (set it with --watchdog)", file=sys.stderr)
    if cfg.crash_role == "scanner" and cfg.processes:
        print(f"note: --crash {args.crash}: the scanners share their process with the sequencer; "
              "the scanner's thread stops, its process lives on", file=sys.stderr)
    return cfg


def _run_on_model(cfg: LogConfig, profile: Profile) -> LogResult:
    """Every role as its own agent on the non-coherent model (checked build, one thread,
    seeded scheduler): trace-rule errors become failed checks of the result. The region
    carries the profile's device model (emulated-cxl-pooled), as on the normal build."""
    from harness.checked import run_checked
    from harness.results import Check
    from harness.runner import device_model_for

    if cfg.processes:
        raise ConfigError("the non-coherent model runs in one process", "drop --processes")
    run = run_checked(cfg, device_model=device_model_for(profile, "emulated"))
    for f in run.errors:
        run.result.checks.append(Check(f"rule:{f.rule}", f.doc, False, f.describe(), group="flush-fence"))
    print(f"non-coherent model: {run.events:,} accesses, {run.model['stale_reads']:,} stale reads, "
          f"{run.model['early_writebacks']:,} early write-backs, {run.model['evictions']:,} evictions, "
          f"{len(run.errors)} rule error(s)")
    return run.result


def order5_line(r: LogResult) -> str:
    """The hold buffer and the gap resolutions of an Order 5 run."""
    c = r.counters
    mean = c["o5_hold_sum"] / c["o5_hold_samples"] if c.get("o5_hold_samples") else 0.0
    return (f"  order 5: hold buffer max {c['o5_hold_max']} mean {mean:.1f} batches "
            f"({c['o5_held']} held, full {c['o5_hold_full']} time(s)); {c['o5_markers']} declared "
            f"lost, {c['o5_fences']} fence(s) ({c['o5_fenced_rejects']} batches never ordered), "
            f"{c['o5_late']} late/duplicate")


def device_model_line(r: LogResult) -> str | None:
    """What the region's device model did in the run (every process that mapped the region
    counted), or None when the region carried none."""
    m = r.region.get("device_model")
    if not m or "ops" not in m:
        return None
    words = {"load": "reads", "flush_fence": "fences", "write": "writes"}
    ops = m["ops"]
    done = ", ".join(f"{int(ops[k]['ops']):,} {w}" for k, w in words.items() if k in ops)
    total = sum(int(o["ops"]) for o in ops.values())
    short = sum(int(o["short_ops"]) for o in ops.values())
    where = f" in {len(m['processes'])} role processes and the coordinator" if m.get("processes") else ""
    return (f"device model: {done} paid the device's cost{where}; the host alone was slower than "
            f"the target in {short / total if total else 0.0:.0%} of them")
