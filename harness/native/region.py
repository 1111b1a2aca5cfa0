"""Shared memory regions in the core (``cxl_region_*``) and the seam's copies (``cxl_seam_*``).

harness.region validates what the user asked for and says what went wrong in its words; this
module only maps, unmaps and reads the core's answers. A mapped region is a
:class:`RegionHandle`; its ``base`` is an opaque pointer that the other binding modules take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from harness.errors import CoreError, RegionError
from harness.native._build import Native, at

MODEL_KINDS = 3  # operation kinds of the device model: load, flush + fence, write (C order)
MAX_CURVE = 8  # points of a latency curve (cxl_devmodel_cfg_t.curve_util)


class RegionHandle:
    """One mapped ``cxl_region_t`` of one build. Opaque: read it through its properties."""

    __slots__ = ("native", "_r")

    def __init__(self, native: Native) -> None:
        self.native = native
        self._r: Any = native.ffi.new("cxl_region_t *")

    @property
    def base(self) -> Any:
        """The mapping's first byte (a ``void *``), for the other binding modules."""
        return self._r.base

    @property
    def size(self) -> int:
        return int(self._r.size)

    @property
    def align(self) -> int:
        return int(self._r.align)

    @property
    def fd(self) -> int:
        return int(self._r.fd)

    @property
    def backend(self) -> int:
        return int(self._r.backend)

    @property
    def numa_node(self) -> int:
        return int(self._r.numa_node)

    @property
    def hugepages(self) -> bool:
        return bool(self._r.hugepages)

    @property
    def locked(self) -> bool:
        return bool(self._r.locked)

    @property
    def created(self) -> bool:
        return bool(self._r.created)


def _mapped(native: Native, call: str, rc: int, h: RegionHandle) -> RegionHandle:
    if rc != 0:
        raise CoreError(call, -rc)
    return h


def map_anon(native: Native, size: int, hugepages: bool) -> RegionHandle:
    """Anonymous shared memory; a CoreError carries the errno on failure."""
    h = RegionHandle(native)
    return _mapped(native, "cxl_region_map_anon", native.lib.cxl_region_map_anon(h._r, size, int(hugepages)), h)


def map_file(native: Native, path: str | os.PathLike[str], size: int, create: bool, lock: bool) -> RegionHandle:
    h = RegionHandle(native)
    rc = native.lib.cxl_region_map_file(h._r, os.fsencode(path), size, int(create), int(lock))
    return _mapped(native, "cxl_region_map_file", rc, h)


def map_devdax(native: Native, path: str, size: int, align: int, lock: bool) -> RegionHandle:
    h = RegionHandle(native)
    rc = native.lib.cxl_region_map_devdax(h._r, os.fsencode(path), size, align, int(lock))
    return _mapped(native, "cxl_region_map_devdax", rc, h)


def map_numa(native: Native, size: int, node: int) -> RegionHandle:
    h = RegionHandle(native)
    return _mapped(native, "cxl_region_map_numa", native.lib.cxl_region_map_numa(h._r, size, node), h)


def unmap(h: RegionHandle) -> None:
    h.native.lib.cxl_region_unmap(h._r)


# -- the device model ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """``cxl_devmodel_cfg_t``: the target costs a region's device model pads to."""

    load_ns: float
    flush_fence_ns: float
    write_gbps: float
    read_gbps: float
    window_us: float
    curve: tuple[tuple[float, float], ...]  # (utilisation, latency multiplier), ascending
    host_flush: bool
    invalidate_flushes: bool


@dataclass(frozen=True)
class ModelCounts:
    """``cxl_devmodel_stats_t``: per operation kind (load, flush_fence, write), what the model
    did; the utilisation of the last closed window and the multiplier in force."""

    ops: tuple[int, ...]
    ops_short: tuple[int, ...]
    ops_queued: tuple[int, ...]
    short_ns: tuple[float, ...]
    target_ns: tuple[float, ...]
    utilisation: float
    multiplier: float


def set_model(h: RegionHandle, m: ModelConfig) -> None:
    """Attach a device model (once). CoreError: EINVAL figures out of range, EBUSY one is
    attached, ENOSPC too many modelled regions, ENOMEM."""
    if len(m.curve) > MAX_CURVE:
        raise RegionError(f"latency curve of {len(m.curve)} points", f"give at most {MAX_CURVE}")
    cfg = h.native.ffi.new("cxl_devmodel_cfg_t *")
    cfg.load_ns, cfg.flush_fence_ns = m.load_ns, m.flush_fence_ns
    cfg.write_gbps, cfg.read_gbps, cfg.window_us = m.write_gbps, m.read_gbps, m.window_us
    cfg.curve_n = len(m.curve)
    for i, (u, mult) in enumerate(m.curve):
        cfg.curve_util[i], cfg.curve_mult[i] = u, mult
    cfg.host_flush, cfg.invalidate_flushes = int(m.host_flush), int(m.invalidate_flushes)
    rc = int(h.native.lib.cxl_region_set_model(h._r, cfg))
    if rc != 0:
        raise CoreError("cxl_region_set_model", -rc)


def model_counts(h: RegionHandle) -> ModelCounts | None:
    """What the region's model did since it was attached or reset; None without a model."""
    st = h.native.ffi.new("cxl_devmodel_stats_t *")
    if h.native.lib.cxl_region_model_stats(h._r, st) != 0:
        return None
    k = range(MODEL_KINDS)
    return ModelCounts(tuple(int(st.ops[i]) for i in k), tuple(int(st.ops_short[i]) for i in k),
                       tuple(int(st.ops_queued[i]) for i in k), tuple(float(st.short_ns[i]) for i in k),
                       tuple(float(st.target_ns[i]) for i in k), float(st.utilisation),
                       float(st.multiplier))


def model_reset(h: RegionHandle) -> None:
    """The model's statistics and channel state to zero."""
    h.native.lib.cxl_region_model_reset(h._r)


def model_unpadded(h: RegionHandle, unpadded: bool) -> None:
    """Characterisation only: pad no operation (True) or pad to the targets again (False).
    CoreError ENOENT: the region has no model."""
    rc = int(h.native.lib.cxl_region_model_unpadded(h._r, int(unpadded)))
    if rc != 0:
        raise CoreError("cxl_region_model_unpadded", -rc)


# -- the seam --------------------------------------------------------------------------------
def seam_write(native: Native, base: Any, offset: int, data: bytes, nt: bool = False) -> None:
    """Copy ``data`` to ``base + offset`` through the seam (``nt``: non-temporal stores)."""
    native.lib.cxl_seam_write(at(native, base, offset), data, len(data), int(nt))


def seam_persist(native: Native, base: Any, offset: int, n: int) -> None:
    """Flush and fence ``n`` bytes at ``base + offset`` through the seam."""
    native.lib.cxl_seam_persist(at(native, base, offset), n)


def seam_read(native: Native, base: Any, offset: int, n: int) -> bytes:
    """Invalidate and read ``n`` bytes at ``base + offset`` through the seam."""
    out = native.ffi.new("char[]", n)
    native.lib.cxl_seam_read(out, at(native, base, offset), n)
    return bytes(native.ffi.buffer(out, n))


def scratch(native: Native, n: int) -> Any:
    """``n`` bytes of private memory (``char[]``), freed when the last reference goes."""
    return native.ffi.new("char[]", n)
