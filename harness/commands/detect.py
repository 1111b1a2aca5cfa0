"""``cxl-harness detect``: what CXL memory is here, and which back-end a run would use."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pathlib import Path

from harness.commands._args import device_name, json_flag
from harness.discovery import Discovery, NumaNode, discover, format_bytes
from harness.errors import DeviceError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect", parents=[json_flag()],
        help="find CXL memory (dax devices, CXL memdevs, NUMA nodes) and choose a back-end",
        description="Read sysfs, list CXL memory found, and say which back-end would be used "
        "and why (explicit device > devdax > CPU-less NUMA node > emulation).",
    )
    parser.add_argument(
        "--sysfs-root", default="/", metavar="DIR",
        help="directory holding sys/ and dev/ (default: /); point at a fake tree to test",
    )
    parser.add_argument(
        "--device", default=None, metavar="PATH", type=device_name,
        help="use this device: /dev/daxX.Y (devdax), node:N (numa) or a file path (file)",
    )
    parser.set_defaults(func=run)


def _node_line(n: NumaNode) -> str:
    cpus = "CPU-less" if n.cpu_less else f"cpus {n.cpulist}" if n.cpulist else "cpus unknown"
    line = f"  node{n.id:<3} {cpus:<16} memory {format_bytes(n.mem_total)}"
    if n.read_latency_ns is not None or n.read_bandwidth_mbps is not None:
        def val(v: int | None, unit: str) -> str:
            return "?" if v is None else f"{v} {unit}"
        line += (
            f"  HMAT latency r/w {val(n.read_latency_ns, 'ns')} / {val(n.write_latency_ns, 'ns')}"
            f", bandwidth r/w {val(n.read_bandwidth_mbps, 'MB/s')} / "
            f"{val(n.write_bandwidth_mbps, 'MB/s')}"
        )
    return line


def render(d: Discovery) -> str:
    """Human-readable inventory and choice."""
    out = [f"sysfs root: {d.sysfs_root}", "DAX devices:"]
    out += [
        f"  {x.name:<8} {format_bytes(x.size):>10}  align {format_bytes(x.align)}  node "
        f"{'?' if x.numa_node is None else x.numa_node}  driver {x.driver or '-'}  mode {x.mode}"
        for x in d.dax_devices
    ] or ["  none"]
    out.append("CXL memory devices:")
    out += [
        f"  {m.name:<8} ram {format_bytes(m.ram_size)}  pmem {format_bytes(m.pmem_size)}  "
        f"serial {m.serial or '?'}  node {'?' if m.numa_node is None else m.numa_node}"
        for m in d.cxl_memdevs
    ] or ["  none"]
    out.append("CXL regions:")
    out += [
        f"  {r.name:<8} {format_bytes(r.size):>10}  mode {r.mode or '?'}  interleave "
        f"{r.interleave_ways or '?'} x {format_bytes(r.interleave_granularity)}"
        for r in d.cxl_regions
    ] or ["  none"]
    out.append("NUMA nodes:")
    out += [_node_line(n) for n in d.numa_nodes] or ["  none"]
    if d.problems:
        out.append("Unreadable or garbled attributes (reported as unknown):")
        out += [f"  {p}" for p in d.problems]
    c = d.choice
    target = c.device or (f"node {c.node}" if c.node is not None else "ordinary memory")
    out += [f"Would use: {c.backend} ({target})", f"Why: {c.reason}"]
    return "\n".join(out)


def check_sysfs_root(root: str) -> None:
    """A root that is not there (or holds no sys/) would read as 'nothing found': refuse it."""
    p = Path(root)
    if not p.is_dir():
        raise DeviceError(f"--sysfs-root {root}: no such directory",
                          "give the directory holding sys/ (default /), e.g. fixtures/sysfs/devdax")
    if not (p / "sys").is_dir():
        raise DeviceError(f"--sysfs-root {root}: has no sys/ directory, so nothing could be discovered",
                          "give the directory holding sys/ (default /), e.g. fixtures/sysfs/devdax")


def run(args: argparse.Namespace) -> int:
    check_sysfs_root(args.sysfs_root)
    found = discover(args.sysfs_root, args.device)
    print(json.dumps(found.to_dict(), indent=2) if args.json else render(found))
    return 0
