"""``--hosts FILE`` for ``cxl-harness publish`` and ``cxl-harness run``, and the report data.

The commands call :func:`add_hosts_option` when they build their parser and hand over to
:func:`publish_on_hosts` / :func:`run_job_on_hosts` when the option is given.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.errors import ConfigError

if TYPE_CHECKING:  # the command line registers its options without the heavy modules
    from harness.hosts.config import HostsFile
    from harness.hosts.coordinator import HostsRun
    from harness.log import LogConfig


def add_hosts_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", metavar="FILE", type=Path,
                        help="place the roles on several hosts sharing one CXL region "
                             "(YAML, see docs/multi-host.md); brokers and subscribers come from the file")


def _check_profile(hosts: HostsFile, profile_name: str, model_ok: bool = False) -> tuple[str, bool]:
    """The profile name, and whether it is the non-coherent model."""
    from harness.profiles import load_profile

    name = hosts.profile or profile_name
    profile = load_profile(name)
    model = profile.coherence == "noncoherent-model"
    if model and not model_ok:
        raise ConfigError(f"profile {profile.name} is the non-coherent model, which runs in one process",
                          "use 'cxl-harness publish --hosts FILE --profile emulated-noncoherent' for the model "
                          "with findings by host, or a coherent profile with 'run --hosts'")
    return name, model


def publish_on_hosts(args: argparse.Namespace, cfg: LogConfig, stream: TextIO | None = None) -> int:
    """``cxl-harness publish --hosts FILE``: one run across the hosts; exit 0 when it passed."""
    from harness.hosts.config import load_hosts
    from harness.hosts.coordinator import run_hosts

    from harness.history import write_history
    from harness.invariants import history_from_records

    out = stream if stream is not None else sys.stdout
    hosts = load_hosts(args.hosts)
    profile, model = _check_profile(hosts, args.profile, model_ok=True)
    cfg = replace(cfg, record=True if args.history else cfg.record)
    if model:
        return _publish_on_model(hosts, cfg, args, out, profile)
    run = run_hosts(hosts, cfg, profile=profile, allow_destructive=args.allow_destructive,
                    progress=lambda text: print(text, file=out, flush=True))
    print_hosts_run(run, out)
    if args.json:
        Path(args.json).write_text(json.dumps(run.to_dict(), indent=2, default=str) + "\n")
        print(f"result written to {args.json}", file=out)
    if args.history and run.result is not None and run.result.records is not None:
        write_history(history_from_records(hosts.apply(cfg), run.result.records), args.history)
        print(f"history written to {args.history}", file=out)
    return 0 if run.ok else 1


def _publish_on_model(hosts: HostsFile, cfg: LogConfig, args: argparse.Namespace, out: TextIO,
                      profile: str) -> int:
    from harness.hosts.model import run_model_on_hosts
    from harness.profiles import load_profile
    from harness.runner import device_model_for

    run = run_model_on_hosts(hosts, cfg, device_model=device_model_for(load_profile(profile), "emulated"))
    print(f"non-coherent model, roles placed on {len(hosts.hosts)} hosts: {run.events:,} accesses, "
          f"{len(run.findings)} rule error(s)", file=out)
    print(run.result.summary_line(), file=out)
    for f in run.findings:
        other = f" (line last written by {f.other_agent} on host {f.other_host})" if f.other_agent else ""
        print(f"  FAIL rule:{f.rule} at {f.location}: {f.agent} on host {f.host}{other}", file=out)
    for c in run.result.failed():
        print(f"  FAIL {c.id}: {c.detail}", file=out)
    if args.json:
        Path(args.json).write_text(json.dumps(run.to_dict(), indent=2, default=str) + "\n")
        print(f"result written to {args.json}", file=out)
    return 0 if run.ok else 1


def print_hosts_run(run: HostsRun, out: TextIO) -> None:

    if run.result is not None:
        print(run.result.summary_line(), file=out)
        for c in run.result.failed():
            print(f"  FAIL {c.id}: {c.detail}", file=out)
            for ex in c.counterexamples[:3]:
                print(f"       {ex}", file=out)
    for h in run.hosts:
        lat = (f", commit p50 {h.latency_ns['p50'] / 1e3:,.1f} us p99 {h.latency_ns['p99'] / 1e3:,.1f} us"
               if h.latency_ns.get("samples") else "")
        state = f"FAILED: {h.failed}" if h.failed else "ok"
        print(f"  host {h.name} ({h.identity.get('hostname')}, {h.roles}): {h.messages_published:,} msgs "
              f"published, {h.throughput_mib_s:,.0f} MiB/s{lat}, {h.messages_delivered:,} delivered; {state}",
              file=out)
    print(f"  workers: started in {run.start_s:.2f}s, region opened in {run.open_s:.2f}s, ran {run.run_s:.2f}s, "
          f"torn down in {run.teardown_s:.2f}s", file=out)


def hosts_section(run: HostsRun) -> dict[str, Any]:
    """The summary's optional ``hosts`` key (rendered as the report's Hosts section)."""
    other = [h for h in run.hosts if h.clock_aligned]
    note = ("" if not other else
            "Put onto the coordinator's clock before the checks (another machine's CLOCK_MONOTONIC): "
            + ", ".join(f"{h.name} offset {h.clock_offset_ns / 1e6:+,.3f} ms +/- {h.clock_uncertainty_ns / 1e3:,.0f} us"
                        for h in other) + ".")
    return {"hosts": [asdict(h) for h in run.hosts], "failures": [asdict(f) for f in run.failures],
            "timings_s": {"start": run.start_s, "open": run.open_s, "run": run.run_s, "teardown": run.teardown_s},
            "clock_note": note}


def run_job_on_hosts(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """``cxl-harness run --hosts FILE``: the log runs across the hosts (Order 2, the profile's
    workload, ``--rounds`` runs), every check, and the report with its Hosts section."""
    from harness.hosts.config import load_hosts
    from harness.hosts.coordinator import run_hosts

    from harness.job import sections
    from harness.results import Check
    from harness.job.main import RUNS_FILENAME, representative
    from harness.log import workload_config
    from harness.report.rundir import load_previous, write_run_dir
    from harness.machine import _now, meta_section
    from harness.report.summary import SCHEMA_ID
    from harness.profiles import load_profile

    out = stream if stream is not None else sys.stdout
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {text}", file=out, flush=True)

    hosts = load_hosts(args.hosts)
    name, _ = _check_profile(hosts, args.profile)
    profile = load_profile(name)
    started = _now()
    previous = load_previous(args.compare)
    rounds = args.rounds or (3 if args.quick else 5)
    cfg = replace(workload_config(profile, order=2, variant="per-scanner", quick=args.quick), record=None)
    runs: list[HostsRun] = []
    for i in range(rounds):
        run = run_hosts(hosts, cfg, profile=name, allow_destructive=args.allow_destructive, progress=say)
        runs.append(run)
        r = run.result
        say(f"  hosts round {i + 1}: {r.throughput_mib_s if r else 0:,.0f} MiB/s, "
            f"{sum(c.ok for c in r.checks) if r else 0}/{len(r.checks) if r else 0} checks passed")
        if not run.ok:
            break
    results = [r.result for r in runs if r.result is not None]
    label = "hosts/order2/per-scanner"
    checks = sections.ordering_checks([(label, str(i + 1), r) for i, r in enumerate(results)], prefix="hosts.")
    failures = [f for r in runs for f in r.failures]
    for f in failures:
        checks.append(Check(f"hosts.{f.host}", f"host {f.host} ran to the end", False,
                            f"failed during {f.phase}: {f.message}", group="ordering"))
    rep = representative(results) if results else None
    chosen = next((r for r in runs if r.result is rep), runs[-1])
    fmt = hosts.format_host
    device = {"backend": chosen.hosts[0].region.get("backend") if chosen.hosts else None, "path": fmt.device,
              "size_bytes": chosen.result.region.get("size") if chosen.result else None, "numa_node": None,
              "discovery_reason": f"{len(hosts.hosts)} hosts from {args.hosts}; each names the shared region "
                                  f"by its own path (the formatting host {fmt.name}: {fmt.device})"}
    verdict = sections.verdict_section(checks, [], [], [], f"{len(hosts.hosts)} hosts")
    command = "cxl-harness " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "cxl-harness run"
    summary: dict[str, Any] = {
        "schema": SCHEMA_ID, "meta": meta_section(command, started), "verdict": verdict,
        "device": device, "profile": sections.profile_section(profile),
        "checks": [c.to_dict() for c in checks],
        "runs": [sections.run_entry(label, rep)] if rep else [], "hosts": hosts_section(chosen),
    }
    raw = {"log runs": (RUNS_FILENAME, {label: [r.to_dict() for r in runs]})}
    run_dir, report, latest = write_run_dir(summary, args.out, raw=raw, previous=previous)
    print(f"report: {report}", file=out)
    print(f"latest: {latest} -> {run_dir.name}", file=out)
    print(f"{'PASS' if verdict['ok'] else 'FAIL'}: {verdict['summary']}", file=out)
    for item in verdict["failed"][:20]:
        print(f"  failed: {item}", file=out)
    return 0 if verdict["ok"] else 1
