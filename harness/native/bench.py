"""The core's characterisation kernels (``cxl_bench_*``, ``cxl_dm_bench_guard``) and its clock
(``cxl_now_ns``).

Each kernel runs its whole loop in C (the GIL released) and returns the nanoseconds it took;
harness.characterize and harness.benchmarks turn them into figures. ``base`` is a region's
opaque pointer (harness.native.region), ``offset`` bytes into it; ``src`` a host buffer's
pointer from :func:`host_pointer`.
"""

from __future__ import annotations

import sys
from typing import Any

from harness.native._build import Native, at

_CORES = ("harness._core", "harness._core_checked")


def now_ns(native: Native) -> int:
    """The core's clock (the TSC, calibrated at load), in ns."""
    return int(native.lib.cxl_now_ns())


def pointer_chase(native: Native, base: Any, nbytes: int, steps: int, seed: int = 1) -> int:
    """``steps`` dependent loads (invalidate + load) over a random cycle of ``nbytes``; 0 when
    the cycle cannot be built."""
    return int(native.lib.cxl_bench_pointer_chase(base, nbytes, steps, seed))


def store_flush_fence(native: Native, base: Any, lines: int, lines_per_fence: int, iters: int) -> int:
    """``iters`` lines stored, flushed, one fence every ``lines_per_fence``."""
    return int(native.lib.cxl_bench_store_flush_fence(base, lines, lines_per_fence, iters))


def inval_reload(native: Native, base: Any, lines: int, iters: int) -> int:
    return int(native.lib.cxl_bench_inval_reload(base, lines, iters))


def flush_calls(native: Native, base: Any, lines: int, iters: int) -> int:
    """``iters`` flush instructions back to back, one fence at the end."""
    return int(native.lib.cxl_bench_flush_calls(base, lines, iters))


def fence_calls(native: Native, iters: int) -> int:
    return int(native.lib.cxl_bench_fence_calls(iters))


def inval_calls(native: Native, base: Any, lines: int, iters: int) -> int:
    return int(native.lib.cxl_bench_inval_calls(base, lines, iters))


def host_pointer(native: Native, buffer: Any) -> Any:
    """A ``char *`` into a writable host buffer (a numpy array); the buffer must outlive it."""
    return native.ffi.cast("char *", native.ffi.from_buffer(buffer))


def copy(native: Native, base: Any, offset: int, src: Any, nbytes: int, chunk: int, nt: bool,
         iters: int = 1) -> int:
    """``nbytes`` copied from ``src`` to ``base + offset`` in ``chunk``-byte copies."""
    return int(native.lib.cxl_bench_copy(at(native, base, offset), src, nbytes, chunk, int(nt), iters))


def write(native: Native, base: Any, offset: int, nbytes: int, src: Any, src_nbytes: int,
          chunk: int, nt: bool, iters: int = 1) -> int:
    """``nbytes`` written to ``base + offset`` in ``chunk``-byte copies cycling through a small
    (cache-resident) source of ``src_nbytes``, as the publishers copy from their pool."""
    return int(native.lib.cxl_bench_write(at(native, base, offset), nbytes, src, src_nbytes, chunk,
                                          int(nt), iters))


def seam_read_pass(native: Native, dst: Any, base: Any, nbytes: int, chunk: int) -> int:
    """``nbytes`` read out of ``base`` through the seam (invalidate + copy out) into ``dst``
    (``chunk`` bytes, from harness.native.region.scratch), ``chunk`` at a time; ns taken."""
    lib = native.lib
    p = native.ffi.cast("char *", base)
    t0 = lib.cxl_now_ns()
    for off in range(0, nbytes, chunk):
        lib.cxl_seam_read(dst, p + off, chunk)
    return int(lib.cxl_now_ns() - t0)


def dm_bench_guard(native: Native, base: Any, lines: int, iters: int, op: int, seam: bool) -> int:
    """The seam's own cost on a region without a model (op 0 fence, 1 invalidate + load, 2
    64-byte copy in, 3 flush + fence), through the seam or the raw primitive."""
    return int(native.lib.cxl_dm_bench_guard(base, lines, iters, op, int(seam)))


def set_stop(requested: bool) -> None:
    """Set (Ctrl-C: every kernel loop ends within 4096 iterations) or clear the kernels' stop
    flag, in each build already loaded (none is loaded for it)."""
    for core in _CORES:
        mod = sys.modules.get(core)
        if mod is not None:
            (mod.lib.cxl_bench_request_stop if requested else mod.lib.cxl_bench_clear_stop)()
