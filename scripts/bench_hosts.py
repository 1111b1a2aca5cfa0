"""Two popen "hosts" on one /dev/shm region vs the same roles in one process, interleaved.

    .venv/bin/python scripts/bench_hosts.py [--repeats N] [--total-mib M]

Prints throughput and p99 commit latency (median and range) of both, and the workers' start
and teardown times. Same configuration, same machine, alternating runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile

from harness.hosts.config import parse_hosts
from harness.hosts.coordinator import run_hosts
from harness.log import LogConfig
from harness.runlog import run_log


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--total-mib", type=int, default=64)
    a = p.parse_args()
    d = tempfile.mkdtemp(prefix="cxl-hosts-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    region = f"{d}/region"
    hosts = parse_hosts({"hosts": [
        {"name": "a", "gateway": "popen", "device": region, "create": True,
         "roles": {"sequencer": True, "publishers": [0, 1]}},
        {"name": "b", "gateway": "popen", "device": region, "roles": {"publishers": [2, 3], "subscribers": 1}}]})
    cfg = hosts.apply(LogConfig(total_bytes=a.total_mib << 20))
    one: dict[str, list[float]] = {"mib": [], "p99": []}
    procs: dict[str, list[float]] = {"mib": [], "p99": []}
    two: dict[str, list[float]] = {"mib": [], "p99": [], "start": [], "teardown": []}
    try:
        for _ in range(a.repeats):
            r1 = run_log(LogConfig(**{**cfg.__dict__, "processes": False}))
            assert r1.ok, r1.failed()
            one["mib"].append(r1.throughput_mib_s)
            one["p99"].append(r1.latency.p99_ns / 1e3)
            r3 = run_log(cfg)  # processes=True: role groups as local OS processes, no execnet
            assert r3.ok, r3.failed()
            procs["mib"].append(r3.throughput_mib_s)
            procs["p99"].append(r3.latency.p99_ns / 1e3)
            run = run_hosts(hosts, cfg)
            assert run.ok and run.result is not None
            two["mib"].append(run.result.throughput_mib_s)
            two["p99"].append(run.result.latency.p99_ns / 1e3)
            two["start"].append(run.start_s)
            two["teardown"].append(run.teardown_s)
    finally:
        shutil.rmtree(d, ignore_errors=True)

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):,.1f} (range {min(xs):,.1f} .. {max(xs):,.1f}, n={len(xs)})"

    print(f"config: {cfg.brokers} brokers, {cfg.subscribers} subscriber, {cfg.total_bytes >> 20} MiB, "
          f"msg {cfg.msg_size} B, batch {cfg.batch_bytes} B")
    print(f"one process (threads)  MiB/s {fmt(one['mib'])}; p99 commit us {fmt(one['p99'])}")
    print(f"--processes (3 groups) MiB/s {fmt(procs['mib'])}; p99 commit us {fmt(procs['p99'])}")
    print(f"2 popen hosts          MiB/s {fmt(two['mib'])}; p99 commit us {fmt(two['p99'])}")
    print(f"2 popen hosts: workers started in s {fmt(two['start'])}; torn down in s {fmt(two['teardown'])}")


if __name__ == "__main__":
    main()
