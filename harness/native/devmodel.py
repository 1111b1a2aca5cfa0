"""The device model's calls beyond :mod:`harness.native.region`: its channel state shared
between processes (``cxl_region_model_share``), and writers released together for the
characterisation of its shared write channel (``cxl_bench_write_together``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import CoreError
from harness.native._build import Native
from harness.native.region import RegionHandle


def share_channels(h: RegionHandle, fd: int, create: bool) -> None:
    """Put the region's model's channel state in a shared mapping of the file ``fd``
    (``create``: an empty file, sized and initialised here; otherwise one initialised by
    another process). CoreError: ENOENT no model, EBUSY already shared, EEXIST the file to
    initialise is not empty, EPROTO not a channel file, EINVAL not a regular file."""
    rc = int(h.native.lib.cxl_region_model_share(h._r, fd, int(create)))
    if rc != 0:
        raise CoreError("cxl_region_model_share", -rc)


@dataclass(frozen=True)
class WritersPass:
    """One pass of writers released together: ns from the first start to the last finish,
    between the first and the last start, and while all of them were writing; the bytes they
    wrote in that last time (each chunk counted by the share of its time inside it)."""

    span_ns: int
    skew_ns: int
    overlap_ns: int
    overlap_bytes: int


def write_together(native: Native, base: Any, per: int, src: Any, src_bytes: int, chunk: int,
                   nt: bool, writers: int, stagger_ns: int = 0) -> WritersPass:
    """``writers`` C threads (this one among them) each write ``per`` bytes into consecutive
    parts of ``base``, released by a spin barrier; writer i starts ``i * stagger_ns`` late (a
    planted start skew, for tests). CoreError: EINVAL/EOVERFLOW bad arguments, EAGAIN a
    thread could not be started, ETIMEDOUT a writer never started."""
    out = native.ffi.new("uint64_t[4]")
    rc = int(native.lib.cxl_bench_write_together(base, per, src, src_bytes, chunk, int(nt), writers,
                                                 stagger_ns, out))
    if rc != 0:
        raise CoreError("cxl_bench_write_together", -rc)
    return WritersPass(int(out[0]), int(out[1]), int(out[2]), int(out[3]))
