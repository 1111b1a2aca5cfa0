"""Find CXL memory on this machine by reading sysfs, and choose a memory back-end.

Everything is read through a configurable root (default ``/``) so the same code runs on fake
trees in ``fixtures/sysfs``. Parsing is tolerant: a missing or garbled attribute becomes
``None`` and a line in :attr:`Discovery.problems`; nothing in an odd tree raises.

Choice order (DESIGN.md section 5): an explicit device, then the first dax device in devdax
mode, then the first CPU-less NUMA node with memory, else emulation.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import DeviceError

Backend = Literal["devdax", "numa", "emulated", "file"]

DAX_DEVICES = "sys/bus/dax/devices"
CXL_DEVICES = "sys/bus/cxl/devices"
NODE_DIR = "sys/devices/system/node"

_DAX_NAME = re.compile(r"^dax(\d+)\.(\d+)$")
_DAX_PATH = re.compile(r"^/dev/(dax\d+\.\d+)$")
_NODE_ARG = re.compile(r"^node:(.*)$")
_MEMTOTAL = re.compile(r"MemTotal:\s+(\d+)\s*kB")
# /dev entries that are ordinary filesystems and so fine for the file back-end.
_FILE_OK_UNDER_DEV = ("/dev/shm/", "/dev/hugepages/")

# Driver a dax device is bound to -> the mode it is in.
_DRIVER_MODES = {"device_dax": "devdax", "kmem": "system-ram"}


@dataclass(frozen=True)
class DaxDevice:
    name: str  # "dax0.0"
    path: str  # "/dev/dax0.0" (the character device; present only in devdax mode)
    size: int | None  # bytes
    align: int | None  # bytes; mappings must be aligned to this
    numa_node: int | None  # target_node if the kernel gives one, else numa_node
    driver: str | None  # basename of the bound driver, None if unbound
    mode: str  # "devdax", "system-ram", "unbound" or "unknown"


@dataclass(frozen=True)
class CxlMemdev:
    name: str  # "mem0"
    ram_size: int | None  # bytes of volatile capacity
    pmem_size: int | None  # bytes of persistent capacity
    serial: str | None
    numa_node: int | None  # node nearest the device (not where its memory appears)
    firmware_version: str | None


@dataclass(frozen=True)
class CxlRegion:
    name: str  # "region0"
    size: int | None  # bytes
    mode: str | None  # "ram" or "pmem"
    interleave_ways: int | None
    interleave_granularity: int | None  # bytes


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpulist: str | None  # "" for a CPU-less node, None if unreadable
    mem_total: int | None  # bytes
    read_latency_ns: int | None  # firmware HMAT figures, access class 0
    write_latency_ns: int | None
    read_bandwidth_mbps: int | None  # MB/s
    write_bandwidth_mbps: int | None

    @property
    def cpu_less(self) -> bool | None:
        """True if the node has no CPUs, None if that is unknown."""
        return None if self.cpulist is None else self.cpulist == ""


@dataclass(frozen=True)
class Choice:
    backend: Backend
    device: str | None  # /dev/daxX.Y for devdax, the path for file, else None
    node: int | None  # NUMA node the memory lives on, where known
    reason: str  # what was found and why this was chosen


@dataclass(frozen=True)
class Discovery:
    sysfs_root: str
    dax_devices: tuple[DaxDevice, ...]
    cxl_memdevs: tuple[CxlMemdev, ...]
    cxl_regions: tuple[CxlRegion, ...]
    numa_nodes: tuple[NumaNode, ...]
    choice: Choice
    problems: tuple[str, ...] = field(default=())  # garbled attributes, reported not fatal

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (lists, plain values)."""
        nodes = []
        for n in self.numa_nodes:
            d = asdict(n)
            d["cpu_less"] = n.cpu_less
            nodes.append(d)
        return {
            "sysfs_root": self.sysfs_root,
            "dax_devices": [asdict(d) for d in self.dax_devices],
            "cxl_memdevs": [asdict(m) for m in self.cxl_memdevs],
            "cxl_regions": [asdict(r) for r in self.cxl_regions],
            "numa_nodes": nodes,
            "choice": asdict(self.choice),
            "problems": list(self.problems),
        }


# ---------------------------------------------------------------------------------------------
# Tolerant attribute readers. Each records a problem when a file exists but cannot be used.


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []

    def _rel(self, path: Path) -> str:
        try:
            return "/" + str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def text(self, path: Path) -> str | None:
        """The file's content without the trailing newline; None if absent or unreadable."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problems.append(f"{self._rel(path)}: unreadable ({exc.strerror or exc})")
            return None
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self.problems.append(f"{self._rel(path)}: not ASCII text")
            return None

    def integer(self, path: Path, *, negative_is_none: bool = False) -> int | None:
        """A decimal or 0x-hex integer; None (and a problem) if garbled."""
        value = self.text(path)
        if value is None:
            return None
        try:
            number = int(value, 0) if value.lower().startswith(("0x", "-0x")) else int(value, 10)
        except ValueError:
            self.problems.append(f"{self._rel(path)}: {value[:40]!r} is not a number")
            return None
        if number < 0:
            if not negative_is_none:
                self.problems.append(f"{self._rel(path)}: {number} is negative")
            return None
        return number

    def driver(self, device_dir: Path) -> str | None:
        """Basename of the ``driver`` link (or, in a copied tree, of a plain directory/file)."""
        link = device_dir / "driver"
        try:
            if link.is_symlink():
                return os.path.basename(os.readlink(link).rstrip("/")) or None
            if link.is_file():
                return self.text(link) or None
        except OSError as exc:
            self.problems.append(f"{self._rel(link)}: unreadable ({exc.strerror or exc})")
        return None


def _entries(directory: Path, pattern: re.Pattern[str]) -> list[tuple[tuple[int, ...], Path]]:
    """Entries of *directory* whose name matches *pattern*, in natural (numeric) order."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        m = pattern.match(name)
        if m and (directory / name).is_dir():
            found.append((tuple(int(g) for g in m.groups()), directory / name))
    return sorted(found)


def _read_dax(r: _Reader) -> tuple[DaxDevice, ...]:
    devices = []
    for _, d in _entries(r.root / DAX_DEVICES, _DAX_NAME):
        target = r.integer(d / "target_node", negative_is_none=True)
        node = target if target is not None else r.integer(d / "numa_node", negative_is_none=True)
        driver = r.driver(d)
        mode = "unbound" if driver is None else _DRIVER_MODES.get(driver, "unknown")
        devices.append(
            DaxDevice(
                name=d.name,
                path=f"/dev/{d.name}",
                size=r.integer(d / "size"),
                align=r.integer(d / "align"),
                numa_node=node,
                driver=driver,
                mode=mode,
            )
        )
    return tuple(devices)


def _read_memdevs(r: _Reader) -> tuple[CxlMemdev, ...]:
    return tuple(
        CxlMemdev(
            name=d.name,
            ram_size=r.integer(d / "ram" / "size"),
            pmem_size=r.integer(d / "pmem" / "size"),
            serial=r.text(d / "serial") or None,
            numa_node=r.integer(d / "numa_node", negative_is_none=True),
            firmware_version=r.text(d / "firmware_version") or None,
        )
        for _, d in _entries(r.root / CXL_DEVICES, re.compile(r"^mem(\d+)$"))
    )


def _read_regions(r: _Reader) -> tuple[CxlRegion, ...]:
    return tuple(
        CxlRegion(
            name=d.name,
            size=r.integer(d / "size"),
            mode=r.text(d / "mode") or None,
            interleave_ways=r.integer(d / "interleave_ways"),
            interleave_granularity=r.integer(d / "interleave_granularity"),
        )
        for _, d in _entries(r.root / CXL_DEVICES, re.compile(r"^region(\d+)$"))
    )


def _read_nodes(r: _Reader) -> tuple[NumaNode, ...]:
    nodes = []
    for (node_id,), d in _entries(r.root / NODE_DIR, re.compile(r"^node(\d+)$")):
        meminfo = r.text(d / "meminfo")
        mem_total: int | None = None
        if meminfo is not None:
            m = _MEMTOTAL.search(meminfo)
            if m:
                mem_total = int(m.group(1)) * 1024
            else:
                r.problems.append(f"{r._rel(d / 'meminfo')}: no 'MemTotal: N kB' line")
        hmat = d / "access0" / "initiators"
        nodes.append(
            NumaNode(
                id=node_id,
                cpulist=r.text(d / "cpulist"),
                mem_total=mem_total,
                read_latency_ns=r.integer(hmat / "read_latency"),
                write_latency_ns=r.integer(hmat / "write_latency"),
                read_bandwidth_mbps=r.integer(hmat / "read_bandwidth"),
                write_bandwidth_mbps=r.integer(hmat / "write_bandwidth"),
            )
        )
    return tuple(nodes)


# ---------------------------------------------------------------------------------------------
# Formatting helpers shared with the CLI.


def format_bytes(n: int | None) -> str:
    """1.5 GiB style; "unknown" for None."""
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _hmat(node: NumaNode) -> str:
    if node.read_latency_ns is None and node.read_bandwidth_mbps is None:
        return "no HMAT figures"
    lat = f"{node.read_latency_ns} ns" if node.read_latency_ns is not None else "unknown"
    bw = f"{node.read_bandwidth_mbps} MB/s" if node.read_bandwidth_mbps is not None else "unknown"
    return f"HMAT read latency {lat}, read bandwidth {bw}"


def _inventory(dax: tuple[DaxDevice, ...], nodes: tuple[NumaNode, ...]) -> str:
    return (
        f"{len(dax)} dax device(s) ({', '.join(f'{d.name}: {d.mode}' for d in dax) or 'none'}) "
        f"and {len(nodes)} NUMA node(s) "
        f"({sum(1 for n in nodes if n.cpu_less)} CPU-less)"
    )


# ---------------------------------------------------------------------------------------------
# The choice.


def _explicit(
    root: Path, device: str, dax: tuple[DaxDevice, ...], nodes: tuple[NumaNode, ...]
) -> Choice:
    m = _DAX_PATH.match(device)
    if m:
        name = m.group(1)
        sys_dir, dev_node = root / DAX_DEVICES / name, root / "dev" / name
        if not sys_dir.exists() and not dev_node.exists():
            raise DeviceError(
                f"device {device} not found: probed {sys_dir} and {dev_node}; present: "
                f"{', '.join(d.path for d in dax) or 'no dax devices'}",
                "check `daxctl list` and pass an existing /dev/daxX.Y, or omit --device",
            )
        info = next((d for d in dax if d.name == name), None)
        if info is not None and info.mode == "system-ram":
            raise DeviceError(
                f"device {device} is bound to kmem (system-ram mode, onlined as NUMA node "
                f"{info.numa_node}); it has no character device to map",
                f"use --device node:{info.numa_node} or `daxctl reconfigure-device "
                f"--mode=devdax {name}`",
            )
        detail = (
            f"{format_bytes(info.size)}, align {format_bytes(info.align)}, mode {info.mode}"
            if info is not None
            else "no sysfs entry, only the device node"
        )
        return Choice(
            "devdax",
            device,
            info.numa_node if info else None,
            f"explicit device {device} requested ({detail}); using it as devdax.",
        )

    m = _NODE_ARG.match(device)
    if m:
        ids = [n.id for n in nodes]
        if not m.group(1).isdigit():
            raise DeviceError(
                f"device {device!r}: {m.group(1)!r} is not a node number",
                f"use node:N with N one of {ids or 'the online nodes'}",
            )
        node_id = int(m.group(1))
        node = next((n for n in nodes if n.id == node_id), None)
        if node is None:
            raise DeviceError(
                f"NUMA node {node_id} not found: probed {root / NODE_DIR / f'node{node_id}'}; "
                f"present: {ids or 'none'}",
                f"use node:N with N one of {ids}" if ids else "omit --device",
            )
        cpus = "CPU-less" if node.cpu_less else f"CPUs {node.cpulist}"
        return Choice(
            "numa",
            None,
            node_id,
            f"explicit NUMA node {node_id} requested ({cpus}, {format_bytes(node.mem_total)}, "
            f"{_hmat(node)}); binding memory there.",
        )

    if device.startswith("/dev/") and not device.startswith(_FILE_OK_UNDER_DEV):
        raise DeviceError(
            f"device {device} is neither a devdax device (/dev/daxX.Y) nor a file on a "
            "filesystem; refusing to map it as a file",
            "pass /dev/daxX.Y, node:N, or a file path (e.g. on /dev/shm or hugetlbfs)",
        )
    path = Path(device)
    if not path.exists() and not path.parent.is_dir():
        raise DeviceError(
            f"file {device} does not exist and its directory {path.parent} does not exist either",
            "create the directory or pass an existing path",
        )
    state = "existing file" if path.exists() else "new file (will be created)"
    reason = f"explicit path {device} requested ({state}); using the file back-end."
    return Choice("file", device, None, reason)


def _automatic(dax: tuple[DaxDevice, ...], nodes: tuple[NumaNode, ...]) -> Choice:
    found = _inventory(dax, nodes)
    unusable = [d.name for d in dax if d.mode == "devdax" and not d.size]
    skipped = f"; skipped {', '.join(unusable)} (devdax, size unknown or 0)" if unusable else ""
    for d in dax:
        if d.mode == "devdax" and d.size:
            return Choice(
                "devdax",
                d.path,
                d.numa_node,
                f"Found {found}; using {d.path} ({format_bytes(d.size)}, align "
                f"{format_bytes(d.align)}, node {d.numa_node}) because it is the first dax "
                f"device in devdax mode{skipped}.",
            )
    for n in nodes:
        if n.cpu_less and n.mem_total:
            backing = [d.name for d in dax if d.mode == "system-ram" and d.numa_node == n.id]
            via = f", onlined from {', '.join(backing)} by kmem" if backing else ""
            return Choice(
                "numa",
                None,
                n.id,
                f"Found {found}; using NUMA node {n.id} ({format_bytes(n.mem_total)}{via}, "
                f"{_hmat(n)}) because there is no devdax-mode device and it is the first "
                f"CPU-less node with memory{skipped}.",
            )
    return Choice(
        "emulated",
        None,
        None,
        f"Found {found}; no devdax-mode dax device and no CPU-less NUMA node with memory, "
        f"so CXL memory is emulated in ordinary DRAM{skipped}.",
    )


def discover(sysfs_root: str | Path = "/", explicit_device: str | None = None) -> Discovery:
    """Inventory dax devices, CXL memdevs/regions and NUMA nodes, and choose a back-end.

    *explicit_device* is ``/dev/daxX.Y`` (devdax), ``node:N`` (numa) or any other path (file).
    Raises :class:`DeviceError` if it names something that does not exist.
    """
    root = Path(sysfs_root)
    reader = _Reader(root)
    dax = _read_dax(reader)
    memdevs = _read_memdevs(reader)
    regions = _read_regions(reader)
    nodes = _read_nodes(reader)
    choice = (
        _explicit(root, explicit_device, dax, nodes)
        if explicit_device
        else _automatic(dax, nodes)
    )
    return Discovery(
        sysfs_root=str(root),
        dax_devices=dax,
        cxl_memdevs=memdevs,
        cxl_regions=regions,
        numa_nodes=nodes,
        choice=choice,
        problems=tuple(reader.problems),
    )
