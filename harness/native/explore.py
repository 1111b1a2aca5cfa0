"""The checked build's exploration entry points: the coroutine explorer (``cxl_chk_explore_*``,
``cxl_chk_toy_run``) and the control sites of the epoch seal (``cxl_chk_ctl_*``, cxl_ctl.h).

harness.checked and harness.explore decide what to explore; this module only passes the
choices in and copies the recorded choice points out."""

from __future__ import annotations

from typing import Any

from harness.native._build import Native

# one recorded choice point (cxl_chk_xpoint_t) and one option (cxl_chk_xopt_t)
XPOINT_DTYPE = [("hash", "<u8"), ("rd", "<u8", (4,)), ("wr", "<u8", (4,)), ("chosen", "<u4"),
                ("dflt", "<u4"), ("opt_lo", "<u4"), ("nopts", "<u4"), ("agent", "<u4"), ("flags", "<u4"),
                ("from", "<u4"), ("boundary", "<u4"), ("evt", "<u8")]
XOPT_DTYPE = [("code", "<u4"), ("cost", "<u4")]
CTL_KINDS = {1: "load", 2: "store", 3: "rmw"}


def explore_set(native: Native, on: bool, flags: int = 0, prefix: tuple[int, ...] = (),
                max_points: int = 0) -> None:
    """Arm (or, with ``on`` False, disarm) exploration for the next deterministic run."""
    ffi, lib = native.ffi, native.lib
    pre = list(prefix)
    if lib.cxl_chk_explore_set(int(on), flags, ffi.new("uint32_t[]", pre) if pre else ffi.NULL,
                               len(pre), max_points) != 0:
        raise MemoryError(f"no memory for a prefix of {len(pre)} choices")


def explore_points(native: Native) -> tuple[Any, Any, int]:
    """The choice points and options of the explored run just made (copied out), and how it
    ended (0 to its end, 1 a stall, 2 the point bound, 3 a replay that did not match)."""
    import numpy as np

    ffi, lib = native.ffi, native.lib
    pts, opts, nopts = ffi.new("cxl_chk_xpoint_t **"), ffi.new("cxl_chk_xopt_t **"), ffi.new("uint64_t *")
    n = int(lib.cxl_chk_explore_points(pts, opts, nopts))
    pdt, odt = np.dtype(XPOINT_DTYPE), np.dtype(XOPT_DTYPE)
    assert pdt.itemsize == ffi.sizeof("cxl_chk_xpoint_t") and odt.itemsize == ffi.sizeof("cxl_chk_xopt_t")
    p = np.frombuffer(ffi.buffer(pts[0], n * pdt.itemsize), dtype=pdt).copy() if n else np.zeros(0, pdt)
    m = int(nopts[0])
    o = np.frombuffer(ffi.buffer(opts[0], m * odt.itemsize), dtype=odt).copy() if m else np.zeros(0, odt)
    return p, o, int(lib.cxl_chk_explore_outcome())


def early_ticks(native: Native, points: Any) -> int:
    """How many of an explored run's choices made time pass while some role could still go
    on (``CXL_XO_TICK`` chosen: a deviation; a jump when every role waits is no choice)."""
    return int(((points["chosen"] >> 8) == native.lib.CXL_XO_TICK).sum())


def ctl_sites(native: Native) -> list[dict[str, Any]]:
    """Every control site of the binary (section ``cxl_ctl_sites``), in section order."""
    ffi, lib = native.ffi, native.lib
    out = []
    info = ffi.new("cxl_ctl_site_t *")
    for i in range(lib.cxl_chk_ctl_site_count()):
        lib.cxl_chk_ctl_site_info(i, info)
        out.append({"id": i, "file": ffi.string(info.file).decode().rsplit("/", 1)[-1],
                    "func": ffi.string(info.func).decode(), "line": int(info.line),
                    "kind": CTL_KINDS.get(int(info.kind), "?"), "order": int(info.order),
                    "weak": int(info.weak), "hits": int(info.hits)})
    return out


def ctl_site_count(native: Native) -> int:
    return int(native.lib.cxl_chk_ctl_site_count())


def ctl_weaken(native: Native, site_id: int | None, order: int = -1) -> bool:
    """Replace site ``site_id``'s memory order (None: every site back to its own). False: no
    such site or order."""
    if site_id is None:
        return int(native.lib.cxl_chk_ctl_weaken(1 << 31, -1)) == 0
    return int(native.lib.cxl_chk_ctl_weaken(site_id, order)) == 0


def toy_run(native: Native, base: Any, size: int, agents: int, steps: int, shared: bool) -> int:
    """One run of the explorer's toy program on a checker begun over [base, base + size);
    returns the explorer's outcome, or -1 when the checker or the program refused."""
    ffi, lib = native.ffi, native.lib
    chk = ffi.new("cxl_chk_cfg_t *")
    chk.model = 1
    if lib.cxl_chk_begin(base, size, chk) != 0:
        return -1
    try:
        return int(lib.cxl_chk_toy_run(agents, steps, int(shared)))
    finally:
        lib.cxl_chk_end()
