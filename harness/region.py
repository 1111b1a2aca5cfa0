"""Shared memory regions behind one abstraction: emulated, file, devdax and NUMA-node memory.

Inputs are validated here, before any mapping, so that every refusal is one clear line and
nothing the user did not ask for is created or truncated. The C side maps; this side checks.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.discovery import DaxDevice, NumaNode
from harness.errors import CoreError, DeviceError, RegionError
from harness.native import Backend, Native, flush_instruction, load
from harness.native import devmodel as cdevmodel
from harness.native import region as cregion
from harness.profiles import DeviceModel as DeviceModel

BACKENDS = ("emulated", "file", "devdax", "numa")
HUGE_2M = 2 << 20


KINDS = ("load", "flush_fence", "write")  # the device model's operation kinds, C order


@dataclass(frozen=True)
class ModelOps:
    """What the device model did for one kind of operation since the region was opened (or
    the model reset): how many, the target cost paid, how often (and by how much in total)
    the host alone was already slower than the target, and how often an operation waited for
    a channel that another agent's transfer kept busy."""

    ops: int
    target_ns: float
    short_ops: int
    short_ns: float
    queued_ops: int = 0  # waited for a channel another agent kept busy

    @property
    def short_fraction(self) -> float:
        return self.short_ops / self.ops if self.ops else 0.0

    @property
    def mean_short_ns(self) -> float:
        return self.short_ns / self.short_ops if self.short_ops else 0.0


@dataclass(frozen=True)
class ModelStats:
    ops: dict[str, ModelOps]
    utilisation: float  # of the last closed window
    multiplier: float  # latency multiplier in force

    def to_dict(self) -> dict[str, Any]:
        return {"ops": {k: {**asdict(v), "short_fraction": v.short_fraction,
                            "mean_short_ns": v.mean_short_ns} for k, v in self.ops.items()},
                "utilisation": self.utilisation, "multiplier": self.multiplier}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelStats:
        """The inverse of :meth:`to_dict` (what a role process sends back)."""
        ops = {k: ModelOps(int(v["ops"]), float(v["target_ns"]), int(v["short_ops"]),
                           float(v["short_ns"]), int(v.get("queued_ops", 0)))
               for k, v in d["ops"].items()}
        return cls(ops, float(d["utilisation"]), float(d["multiplier"]))

    @classmethod
    def merged(cls, parts: list[ModelStats]) -> ModelStats:
        """Several processes' models of one region together: counts and times add up; the
        utilisation and the multiplier are the highest any of them saw."""
        ops = {k: ModelOps(sum(p.ops[k].ops for p in parts), sum(p.ops[k].target_ns for p in parts),
                           sum(p.ops[k].short_ops for p in parts),
                           sum(p.ops[k].short_ns for p in parts),
                           sum(p.ops[k].queued_ops for p in parts)) for k in KINDS}
        return cls(ops, max((p.utilisation for p in parts), default=0.0),
                   max((p.multiplier for p in parts), default=1.0))


def device_model_to_json(m: DeviceModel) -> str:
    """A device model as JSON, for a process that maps the same region (``--device-model``)."""
    return json.dumps(m.to_dict())


def device_model_from_json(text: str) -> DeviceModel:
    """The inverse of :func:`device_model_to_json`; a bad document is a RegionError."""
    try:
        d = json.loads(text)
        curve = tuple((float(u), float(x)) for u, x in d.pop("latency_curve", ()))
        return DeviceModel(**d, latency_curve=curve)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RegionError(f"device model {text[:200]!r} is not valid: {exc}",
                          "pass the JSON of DeviceModel.to_dict()") from None


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
    # the device model the region carries (target costs) and what it did; None = none
    device_model: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Region:
    """A mapped shared-memory region. Use as a context manager, or call close()."""

    def __init__(self, native: Native, handle: cregion.RegionHandle, path: str | None, created: bool,
                 device_model: DeviceModel | None = None) -> None:
        self._native = native
        self._h: cregion.RegionHandle | None = handle
        self._size = handle.size
        self.path = path
        self._created = created
        self.device_model: DeviceModel | None = None
        self._channels_fd = -1  # the shared channel file this region's model uses (share_channels)
        self._channels_own = False  # ... and whether this region opened it
        m = device_model
        if m is not None and (any(v != 0 for v in (m.load_ns, m.flush_fence_ns, m.write_bw_gbps,
                                                   m.read_bw_gbps)) or m.latency_curve
                              or m.invalidate_flushes):
            try:
                self._attach(m)
            except RegionError:
                self.close()
                raise

    def _attach(self, m: DeviceModel) -> None:
        """Give the region its device model (once, when it is opened)."""
        cfg = cregion.ModelConfig(m.load_ns, m.flush_fence_ns, m.write_bw_gbps, m.read_bw_gbps,
                                  m.window_us, tuple(m.latency_curve), bool(m.host_flush),
                                  bool(m.invalidate_flushes))
        try:
            cregion.set_model(self._open(), cfg)
        except CoreError as exc:
            why = {errno.EINVAL: f"figures out of range in {m}",
                   errno.ENOSPC: "too many regions with a device model are open (16 at most)"}
            raise RegionError(f"cannot attach the device model: {why.get(exc.errno, os.strerror(exc.errno))}",
                              "use non-negative figures and an ascending curve, or close regions") from None
        self.device_model = m

    @property
    def channels_fd(self) -> int:
        """The descriptor of the shared channel file this region's model uses, or -1."""
        return self._channels_fd

    def share_channels(self, fd: int | None = None, *, create: bool = False) -> int:
        """Share the device model's channel state (write and read channels, utilisation
        window) with other processes that map the same device: with ``fd`` None, a new
        channel file is made (an anonymous memfd: nothing on any file system to clean up, gone
        with its last descriptor and mapping) and initialised, and its descriptor returned for
        the other processes to inherit; with ``fd``, that file (initialised by the process
        that made it) is attached, or with ``create`` an empty file the caller opened (a named
        one other hosts open by path) is initialised; the caller keeps that descriptor. Before
        any agent runs on the region; once."""
        if self._h is None or self.device_model is None:
            raise RegionError("the region has no device model whose channels could be shared",
                              "open the region with a device model")
        if self._channels_fd >= 0:
            raise RegionError(f"the region's channels are shared already (descriptor {self._channels_fd})",
                              "share them once, when the region is opened")
        own = fd is None
        create = own or create
        if fd is None:
            fd = os.memfd_create("cxl-device-channels", os.MFD_CLOEXEC)
        elif fd < 0:
            raise RegionError(f"channel file descriptor {fd} is not valid", "pass the inherited descriptor")
        try:
            cdevmodel.share_channels(self._h, fd, create)
        except CoreError as exc:
            if own:
                os.close(fd)
            why = {errno.EPROTO: "it is not an initialised channel file of this version",
                   errno.EINVAL: "it is not a regular file",
                   errno.EEXIST: "it is not empty"}.get(exc.errno, os.strerror(exc.errno))
            raise RegionError(f"cannot share the device model's channels through descriptor {fd}: {why}",
                              "pass the descriptor the coordinator made (Region.share_channels())") from None
        self._channels_fd, self._channels_own = fd, own
        return fd

    def model_stats(self) -> ModelStats | None:
        """What the device model did since the region was opened or reset; None without one."""
        if self._h is None or self.device_model is None:
            return None
        st = cregion.model_counts(self._h)
        if st is None:
            return None
        ops = {k: ModelOps(st.ops[i], st.target_ns[i], st.ops_short[i], st.short_ns[i], st.ops_queued[i])
               for i, k in enumerate(KINDS)}
        return ModelStats(ops, st.utilisation, st.multiplier)

    def reset_model(self) -> None:
        """Zero the model's statistics and channel state (between characterisation figures)."""
        if self._h is not None and self.device_model is not None:
            cregion.model_reset(self._h)

    @contextmanager
    def unpadded(self) -> Iterator[None]:
        """Characterisation only: while inside, the region's model does every operation as it
        does (the invalidate's fetch, the host's flush or not) but pads none of them, so what
        an operation costs is the host's own floor under the model -- the fastest this host
        can make the emulated device. The targets are back on leaving; the statistics and
        channels are reset on both sides. No agent may run on the region meanwhile. Without
        a model the region costs the host's anyway, and this changes nothing."""
        if self._h is None or self.device_model is None:
            yield
            return
        h = self._h
        try:
            cregion.model_unpadded(h, True)
        except CoreError as exc:
            raise RegionError(f"cannot measure the region without its padding ({exc.problem})",
                              "report this") from None
        cregion.model_reset(h)
        try:
            yield
        finally:
            cregion.model_unpadded(h, False)
            cregion.model_reset(h)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def emulated(cls, size: int, hugepages: bool = False, checked: bool = False,
                 device_model: DeviceModel | None = None) -> Region:
        _check_size(size)
        native = load(checked)
        try:
            h = cregion.map_anon(native, size, hugepages)
        except CoreError as exc:
            raise RegionError(f"cannot map {size} bytes of memory: {os.strerror(exc.errno)}",
                              "ask for a smaller size") from None
        return cls(native, h, None, False, device_model)

    @classmethod
    def file(cls, path: str | os.PathLike[str], size: int, create: bool = True,
             lock: bool = True, checked: bool = False,
             device_model: DeviceModel | None = None) -> Region:
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
        try:
            h = cregion.map_file(native, p, size, create, lock)
        except CoreError as exc:
            raise RegionError(_file_error(p, exc.errno), _file_fix(exc.errno)) from None
        return cls(native, h, str(p), create, device_model)

    @classmethod
    def devdax(cls, path: str, size: int, align: int, *, allow_destructive: bool,
               sysfs_root: str | os.PathLike[str] = "/", lock: bool = True,
               dax: DaxDevice | None = None) -> Region:
        """Map a device-dax character device. ``dax``: what discovery found for it (its driver
        is then taken from there instead of reading sysfs again)."""
        _check_size(size)
        if not allow_destructive:
            raise DeviceError(
                f"writing to {path} destroys the data on that device",
                "pass --allow-destructive (or set memory.allow_destructive: true in the profile)",
            )
        _check_devdax(path, size, align, Path(sysfs_root), dax)
        native = load(False)
        try:
            h = cregion.map_devdax(native, path, size, align, lock)
        except CoreError as exc:
            raise DeviceError(_file_error(Path(path), exc.errno), _file_fix(exc.errno)) from None
        return cls(native, h, path, False)

    @classmethod
    def numa(cls, node: int, size: int, *, allow_destructive: bool,
             sysfs_root: str | os.PathLike[str] = "/", info: NumaNode | None = None) -> Region:
        """Bind anonymous memory to NUMA node ``node``. ``info``: what discovery found for it
        (its CPU list is then taken from there)."""
        _check_size(size)
        node_dir = Path(sysfs_root) / "sys/devices/system/node" / f"node{node}"
        if node < 0 or (info is None and not node_dir.is_dir()):
            raise DeviceError(f"NUMA node {node} does not exist (no {node_dir})",
                              "run 'cxl-harness detect' to list the nodes")
        cpu_less = info.cpulist == "" if info is not None else _cpu_less(node_dir)
        if not allow_destructive and cpu_less:
            raise DeviceError(
                f"node {node} is CPU-less device memory; the log will fill {size} bytes of it",
                "pass --allow-destructive (or set memory.allow_destructive: true in the profile)",
            )
        native = load(False)
        try:
            h = cregion.map_numa(native, size, node)
        except CoreError as exc:
            raise DeviceError(f"cannot bind {size} bytes to NUMA node {node}: {os.strerror(exc.errno)}",
                              "check the node has that much free memory (numactl -H)") from None
        return cls(native, h, None, False)

    # -- use ------------------------------------------------------------------------------
    @property
    def native(self) -> Native:
        return self._native

    def _open(self) -> cregion.RegionHandle:
        if self._h is None:
            raise RegionError("region is closed", "map a new region")
        return self._h

    @property
    def base(self) -> Any:
        """The mapping's first byte: an opaque pointer for the binding (harness.native)."""
        return self._open().base

    @property
    def size(self) -> int:
        return self._size

    @property
    def fd(self) -> int:
        """The open file descriptor of a file or device region (-1 for anonymous memory)."""
        return self._open().fd

    @property
    def backend(self) -> str:
        return Backend(self._open().backend).name.lower()

    def info(self, processes: list[tuple[str, dict[str, Any] | None]] | None = None) -> RegionInfo:
        """What the region is and what its device model did. ``processes``: what the other
        processes that mapped this region (role processes) report from theirs, by label
        (their :attr:`RegionInfo.device_model`); the totals then count their operations
        with this process's own, and ``device_model.processes`` lists each."""
        h = self._open()
        stats = self.model_stats()
        model = None
        if self.device_model is not None:
            if processes:
                parts = ([stats] if stats else []) + [ModelStats.from_dict(m) for _, m in processes
                                                      if m and "ops" in m]
                stats = ModelStats.merged(parts)
            model = {"targets": self.device_model.to_dict(), **(stats.to_dict() if stats else {}),
                     "shared_channels": self._channels_fd >= 0}
            if processes:
                model["processes"] = [{"label": label, **(m or {"targets": None})}
                                      for label, m in processes]
        return RegionInfo(
            backend=self.backend, size=h.size, align=h.align, path=self.path,
            numa_node=h.numa_node if h.numa_node >= 0 else None,
            hugepages=h.hugepages, locked=h.locked,
            flush_instruction=flush_instruction(),
            device_model=model,
        )

    def write(self, offset: int, data: bytes, nt: bool = False) -> None:
        """Copy ``data`` into the region through the seam, then flush and fence it."""
        self._bounds(offset, len(data))
        base = self.base
        cregion.seam_write(self._native, base, offset, data, nt)
        cregion.seam_persist(self._native, base, offset, len(data))

    def read(self, offset: int, n: int) -> bytes:
        """Invalidate and read ``n`` bytes through the seam."""
        self._bounds(offset, n)
        return cregion.seam_read(self._native, self.base, offset, n)

    def _bounds(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise RegionError(f"access [{offset}, {offset + n}) is outside the region of {self.size} bytes",
                              "stay within the region")

    def close(self) -> None:
        if self._h is not None:
            cregion.unmap(self._h)  # the model's mapping of a shared channel file goes with it
            self._h = None
        if self._channels_own and self._channels_fd >= 0:
            os.close(self._channels_fd)
        self._channels_fd, self._channels_own = -1, False

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


def _check_devdax(path: str, size: int, align: int, sysfs_root: Path, dax: DaxDevice | None = None) -> None:
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
    if dax is not None:
        bound = dax.driver
    else:
        driver = sysfs_root / "sys/bus/dax/devices" / p.name / "driver"
        bound = os.path.basename(os.path.realpath(driver)) if driver.exists() else None
    if bound == "kmem":
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
