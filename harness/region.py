"""Shared memory regions behind one abstraction: emulated, file, devdax and NUMA-node memory.

Inputs are validated here, before any mapping, so that every refusal is one clear line and
nothing the user did not ask for is created or truncated. The C side maps; this side checks.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DeviceError, RegionError
from harness.native import Native, flush_instruction, load

BACKENDS = ("emulated", "file", "devdax", "numa")
_BACKEND_IDS = {1: "emulated", 2: "file", 3: "devdax", 4: "numa"}
HUGE_2M = 2 << 20


@dataclass(frozen=True)
class Injection:
    """Latency injected into the seam (emulated profiles). All zero = none."""

    flush_ns: float = 0.0
    fence_ns: float = 0.0
    invalidate_ns: float = 0.0
    write_bw_gbps: float = 0.0
    invalidate_flushes: bool = False

    def __post_init__(self) -> None:
        for name in ("flush_ns", "fence_ns", "invalidate_ns", "write_bw_gbps"):
            value = getattr(self, name)
            if not value >= 0:
                raise RegionError(f"injected {name}={value!r} is negative or not a number", "use a value >= 0")


@dataclass
class RegionInfo:
    """What a region is, so that reports can say exactly what ran."""

    backend: str
    size: int
    align: int
    path: str | None
    numa_node: int | None
    hugepages: bool
    locked: bool
    flush_instruction: str
    injected: dict[str, float | bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_injection(inj: Injection) -> None:
    """Set the injected latency of both builds (process-wide, as the seam reads a global)."""
    for checked in (False, True):
        load(checked).lib.cxl_set_inject(
            inj.flush_ns, inj.fence_ns, inj.invalidate_ns, inj.write_bw_gbps, int(inj.invalidate_flushes)
        )


class Region:
    """A mapped shared-memory region. Use as a context manager, or call close()."""

    def __init__(self, native: Native, handle: Any, path: str | None, created: bool) -> None:
        self._native = native
        self._h = handle
        self.path = path
        self._created = created

    # -- construction --------------------------------------------------------------------
    @classmethod
    def emulated(cls, size: int, hugepages: bool = False, checked: bool = False) -> Region:
        _check_size(size)
        native = load(checked)
        h = native.ffi.new("cxl_region_t *")
        rc = native.lib.cxl_region_map_anon(h, size, int(hugepages))
        if rc != 0:
            raise RegionError(f"cannot map {size} bytes of memory: {os.strerror(-rc)}", "ask for a smaller size")
        return cls(native, h, None, False)

    @classmethod
    def file(cls, path: str | os.PathLike[str], size: int, create: bool = True,
             lock: bool = True, checked: bool = False) -> Region:
        """Map a file. ``create=True`` makes a new file (owner-only) and refuses an existing
        one; ``create=False`` maps an existing file that must be at least ``size`` bytes."""
        _check_size(size)
        p = Path(path)
        if create and p.exists():
            raise RegionError(f"{p} already exists; refusing to overwrite it",
                              "remove it, choose another path, or attach with create=False")
        if not create:
            if not p.exists():
                raise RegionError(f"{p} does not exist", "create it first (create=True)")
            actual = p.stat().st_size
            if actual < size:
                raise RegionError(f"{p} is {actual} bytes, smaller than the {size} bytes needed",
                                  "use a larger file or a smaller size")
        elif not p.parent.is_dir():
            raise RegionError(f"directory {p.parent} does not exist", "create the directory first")
        native = load(checked)
        h = native.ffi.new("cxl_region_t *")
        rc = native.lib.cxl_region_map_file(h, os.fsencode(p), size, int(create), int(lock))
        if rc != 0:
            raise RegionError(_file_error(p, -rc), _file_fix(-rc))
        return cls(native, h, str(p), create)

    @classmethod
    def devdax(cls, path: str, size: int, align: int, *, allow_destructive: bool,
               sysfs_root: str | os.PathLike[str] = "/", lock: bool = True) -> Region:
        _check_size(size)
        if not allow_destructive:
            raise DeviceError(
                f"writing to {path} destroys the data on that device",
                "pass --allow-destructive (or set memory.allow_destructive: true in the profile)",
            )
        _check_devdax(path, size, align, Path(sysfs_root))
        native = load(False)
        h = native.ffi.new("cxl_region_t *")
        rc = native.lib.cxl_region_map_devdax(h, os.fsencode(path), size, align, int(lock))
        if rc != 0:
            raise DeviceError(_file_error(Path(path), -rc), _file_fix(-rc))
        return cls(native, h, path, False)

    @classmethod
    def numa(cls, node: int, size: int, *, allow_destructive: bool,
             sysfs_root: str | os.PathLike[str] = "/") -> Region:
        _check_size(size)
        node_dir = Path(sysfs_root) / "sys/devices/system/node" / f"node{node}"
        if node < 0 or not node_dir.is_dir():
            raise DeviceError(f"NUMA node {node} does not exist (no {node_dir})",
                              "run 'cxl-harness detect' to list the nodes")
        if not allow_destructive and _cpu_less(node_dir):
            raise DeviceError(
                f"node {node} is CPU-less device memory; the log will fill {size} bytes of it",
                "pass --allow-destructive (or set memory.allow_destructive: true in the profile)",
            )
        native = load(False)
        h = native.ffi.new("cxl_region_t *")
        rc = native.lib.cxl_region_map_numa(h, size, node)
        if rc != 0:
            raise DeviceError(f"cannot bind {size} bytes to NUMA node {node}: {os.strerror(-rc)}",
                              "check the node has that much free memory (numactl -H)")
        return cls(native, h, None, False)

    # -- use ------------------------------------------------------------------------------
    @property
    def native(self) -> Native:
        return self._native

    @property
    def base(self) -> Any:
        if self._h is None:
            raise RegionError("region is closed", "map a new region")
        return self._h.base

    @property
    def size(self) -> int:
        return int(self._h.size)

    @property
    def fd(self) -> int:
        """The open file descriptor of a file or device region (-1 for anonymous memory)."""
        if self._h is None:
            raise RegionError("region is closed", "map a new region")
        return int(self._h.fd)

    @property
    def backend(self) -> str:
        return _BACKEND_IDS[int(self._h.backend)]

    def info(self) -> RegionInfo:
        inj = self._native.ffi.new("cxl_inject_info_t *")
        self._native.lib.cxl_get_inject(inj)
        h = self._h
        return RegionInfo(
            backend=self.backend, size=int(h.size), align=int(h.align), path=self.path,
            numa_node=int(h.numa_node) if h.numa_node >= 0 else None,
            hugepages=bool(h.hugepages), locked=bool(h.locked),
            flush_instruction=flush_instruction(),
            injected={"flush_ns": round(inj.flush_ns, 1), "fence_ns": round(inj.fence_ns, 1),
                      "invalidate_ns": round(inj.inval_ns, 1), "write_bw_gbps": round(inj.write_gbps, 2),
                      "invalidate_flushes": bool(inj.invalidate_flushes)},
        )

    def write(self, offset: int, data: bytes, nt: bool = False) -> None:
        """Copy ``data`` into the region through the seam, then flush and fence it."""
        self._bounds(offset, len(data))
        dst = self._native.ffi.cast("char *", self.base) + offset
        self._native.lib.cxl_seam_write(dst, data, len(data), int(nt))
        self._native.lib.cxl_seam_persist(dst, len(data))

    def read(self, offset: int, n: int) -> bytes:
        """Invalidate and read ``n`` bytes through the seam."""
        self._bounds(offset, n)
        out = self._native.ffi.new("char[]", n)
        self._native.lib.cxl_seam_read(out, self._native.ffi.cast("char *", self.base) + offset, n)
        return bytes(self._native.ffi.buffer(out, n))

    def _bounds(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise RegionError(f"access [{offset}, {offset + n}) is outside the region of {self.size} bytes",
                              "stay within the region")

    def close(self) -> None:
        if self._h is not None:
            self._native.lib.cxl_region_unmap(self._h)
            self._h = None

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise RegionError(f"region size {size!r} is not a positive number of bytes", "give a size > 0")


def round_up(size: int, align: int) -> int:
    return (size + align - 1) // align * align


_DAX_RE = re.compile(r"^/dev/dax(\d+)\.(\d+)$")


def _check_devdax(path: str, size: int, align: int, sysfs_root: Path) -> None:
    m = _DAX_RE.match(path)
    if not m:
        raise DeviceError(f"{path!r} is not a device-dax path", "use /dev/daxX.Y (see 'cxl-harness detect')")
    p = Path(path)
    if not p.exists():
        raise DeviceError(f"{path} does not exist", "run 'cxl-harness detect' to list dax devices")
    st = p.stat()
    if not stat.S_ISCHR(st.st_mode):
        raise DeviceError(f"{path} is not a character device", "use the device node under /dev")
    if not os.access(p, os.R_OK | os.W_OK):
        raise DeviceError(f"no read/write permission on {path}", "run as a user with access to the device (or root)")
    dax_dir = sysfs_root / "sys/bus/dax/devices" / p.name
    driver = dax_dir / "driver"
    if driver.exists() and os.path.basename(os.path.realpath(driver)) == "kmem":
        raise DeviceError(f"{path} is in system-ram mode (bound to kmem)",
                          f"use the numa back-end, or 'daxctl reconfigure-device --mode=devdax {p.name}'")
    if align <= 0 or size % align:
        raise DeviceError(f"size {size} is not a multiple of the device alignment {align}",
                          f"use a multiple of {align} bytes")


def _cpu_less(node_dir: Path) -> bool:
    try:
        return (node_dir / "cpulist").read_text().strip() == ""
    except OSError:
        return False


def _file_error(p: Path, err: int) -> str:
    if err == errno.EWOULDBLOCK:
        return f"{p} is locked by another run"
    if err == errno.ENOSPC:
        return f"{p} is too small for the region"
    return f"cannot map {p}: {os.strerror(err)}"


def _file_fix(err: int) -> str:
    return {
        errno.EWOULDBLOCK: "wait for the other run to finish; two runs must not share a device",
        errno.EACCES: "check the permissions of the file or device",
        errno.ENOENT: "check the path",
        errno.EEXIST: "remove it or choose another path",
        errno.ENOSPC: "use a larger file or a smaller size",
    }.get(err, "check the path and the size")
