"""The log in the core: its layout (``cxl_layout_*``) and a log over a region (``cxl_log_*``).

harness.log.binding turns a LogConfig into the C configuration's fields and says what went
wrong in its words; this module only fills the C structures, makes the calls and copies the
answers out. The configuration (:func:`log_cfg`) and a log (:func:`log_new`) are opaque
handles; a region's ``base`` comes from harness.native.region.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import CoreError, HarnessError
from harness.native._build import Native, as_array, c_string

if TYPE_CHECKING:
    import numpy as np

ERR_BYTES = 256  # the core's error text buffers


_CFG_FIELDS: dict[bool, frozenset[str]] = {}


def _cfg_fields(native: Native) -> frozenset[str]:
    if native.checked not in _CFG_FIELDS:
        _CFG_FIELDS[native.checked] = frozenset(n for n, _ in native.ffi.typeof("cxl_log_cfg_t").fields)
    return _CFG_FIELDS[native.checked]


def log_cfg(native: Native, fields: Mapping[str, int]) -> Any:
    """A ``cxl_log_cfg_t`` with ``fields`` set (the rest zero); an opaque handle for the calls
    below. A field the structure does not have is a HarnessError (a binding out of step)."""
    unknown = sorted(set(fields) - _cfg_fields(native))
    if unknown:
        raise HarnessError(f"cxl_log_cfg_t has no field(s) {', '.join(unknown)}",
                           "rebuild the C core (the README's setup command)")
    c = native.ffi.new("cxl_log_cfg_t *")
    for name, value in fields.items():
        setattr(c, name, value)
    return c


def layout_size(native: Native, cfg: Any) -> int:
    """Bytes the layout of ``cfg`` needs; 0 when that does not fit in 64 bits."""
    return int(native.lib.cxl_layout_size(cfg))


def layout_init(native: Native, base: Any, size: int, cfg: Any) -> None:
    """Write a fresh control block and zeroed rings; CoreError when the core refuses."""
    rc = int(native.lib.cxl_layout_init(base, size, cfg))
    if rc != 0:
        raise CoreError("cxl_layout_init", -rc if rc < 0 else 0)


def layout_attach(native: Native, base: Any, size: int, cfg: Any) -> None:
    """Check a formatted region against ``cfg``; CoreError with the core's reason if not."""
    err = native.ffi.new("char[]", ERR_BYTES)
    if native.lib.cxl_layout_attach(base, size, cfg, err, ERR_BYTES) != 0:
        raise CoreError("cxl_layout_attach", text=c_string(native, err))


def log_new(native: Native, base: Any, size: int, cfg: Any) -> Any:
    """A ``cxl_log_t *`` over a formatted region (free it with :func:`log_free`); CoreError
    with the core's reason when it cannot attach."""
    err = native.ffi.new("char[]", ERR_BYTES)
    ptr = native.lib.cxl_log_new(base, size, cfg, err, ERR_BYTES)
    if ptr == native.ffi.NULL:
        raise CoreError("cxl_log_new", text=c_string(native, err))
    return ptr


def log_free(native: Native, log: Any) -> None:
    native.lib.cxl_log_free(log)


def max_workers(native: Native) -> int:
    return int(native.lib.cxl_log_max_workers())


def set_workers(native: Native, log: Any, workers: int, cpus: list[int]) -> bool:
    """``workers`` pinned worker threads on ``cpus`` (0: a thread per role); False if refused."""
    arr = native.ffi.new("int[]", cpus or [0])
    return int(native.lib.cxl_log_set_workers(log, workers, arr, len(cpus) if workers else 0)) == 0


@dataclass(frozen=True)
class Placement:
    """Where one role of the last run ran (``cxl_placement_t``)."""

    kind: int
    worker: int
    cpu: int


def placement(native: Native, log: Any, max_roles: int) -> list[Placement]:
    out = native.ffi.new("cxl_placement_t[]", max_roles)
    n = int(native.lib.cxl_log_placement(log, out, max_roles))
    return [Placement(int(out[i].kind), int(out[i].worker), int(out[i].cpu)) for i in range(n)]


def run_subset(native: Native, log: Any, roles: int, pub_brokers: int, sub_mask: int) -> int:
    """Run the role groups to completion (blocks; the GIL is released meanwhile)."""
    return int(native.lib.cxl_log_run_subset(log, roles, pub_brokers, sub_mask))


def log_error(native: Native, log: Any) -> str:
    """Why the last run was refused, in the core's words."""
    return c_string(native, native.lib.cxl_log_error(log))


def progress(native: Native, log: Any) -> int:
    return int(native.lib.cxl_log_progress(log))


def request_stop(native: Native, log: Any) -> None:
    """Ask the running roles to stop (safe from any thread)."""
    native.lib.cxl_log_request_stop(log)


def stats(native: Native, log: Any) -> dict[str, Any]:
    """``cxl_log_stats_t`` as a dict: integers, and arrays as lists."""
    st = native.ffi.new("cxl_log_stats_t *")
    native.lib.cxl_log_stats(log, st)
    out: dict[str, Any] = {}
    for fname, _ in native.ffi.typeof("cxl_log_stats_t").fields:
        v = getattr(st, fname)
        out[fname] = list(v) if not isinstance(v, int) else int(v)
    return out


def records(native: Native, log: Any, kind: int, ctype: str) -> np.ndarray[Any, Any] | None:
    """The records of ``kind`` as a numpy copy of ``ctype`` structs; None when not recorded."""
    ffi = native.ffi
    ptr, count, elem = ffi.new("void **"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
    if native.lib.cxl_log_records(log, kind, ptr, count, elem) != 0:
        return None
    return as_array(native, ptr[0], int(count[0]), ctype)
