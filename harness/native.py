"""Access to the compiled C core (cffi API mode): the normal and the checked build.

This is the only module that touches the cffi binding. The core's numbers (role masks, flags,
record kinds, loss reasons, role kinds, back-ends, rule severities, limits, latency bucket
bounds) are read from the compiled module here, never re-declared in Python.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import numpy as np

FLUSH_NAMES = {0: "none", 1: "clflush", 2: "clflushopt", 3: "clwb"}
FLUSH_IDS = {name: fid for fid, name in FLUSH_NAMES.items()}


@dataclass(frozen=True)
class Native:
    """One build of the core: its ``ffi`` and ``lib``, and whether it is the checked one."""

    ffi: Any
    lib: Any
    checked: bool


@lru_cache(maxsize=2)
def load(checked: bool = False) -> Native:
    name = "harness._core_checked" if checked else "harness._core"
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - only on a broken install
        raise HarnessError(
            f"the C core {name} is not built ({exc})",
            "run 'pip install -e .' (or the README's setup command) to compile it",
        ) from exc
    native = Native(mod.ffi, mod.lib, checked)
    native.lib.cxl_select_flush(0)
    native.lib.cxl_calibrate_tsc(20)
    return native


def select_flush(name: str = "auto") -> str:
    """Choose the flush instruction for both builds; returns the one chosen."""
    if name != "auto" and name not in FLUSH_IDS:
        raise HarnessError(f"unknown flush instruction {name!r}", f"use one of auto, {', '.join(FLUSH_IDS)}")
    chosen = ""
    for checked in (False, True):
        lib = load(checked).lib
        rc = lib.cxl_select_flush(0 if name == "auto" else FLUSH_IDS[name])
        if rc < 0:
            raise HarnessError(
                f"flush instruction {name!r} is not supported by this CPU",
                f"supported: {', '.join(supported_flushes())}",
            )
        chosen = FLUSH_NAMES[rc]
    return chosen


def supported_flushes() -> list[str]:
    mask = load().lib.cxl_cpu_flush_support()
    return [FLUSH_NAMES[k] for k in (3, 2, 1) if mask & (1 << k)]


def flush_instruction() -> str:
    return FLUSH_NAMES[load().lib.cxl_flush_kind()]


def as_array(native: Native, ptr: Any, count: int, ctype: str) -> np.ndarray[Any, Any]:
    """Copy ``count`` C structs of ``ctype`` at ``ptr`` into a numpy structured array."""
    import numpy as np

    ffi = native.ffi
    dtype = _dtype(native, ctype)
    if count == 0 or ptr == ffi.NULL:
        return np.zeros(0, dtype=dtype)
    buf = ffi.buffer(ffi.cast(f"{ctype} *", ptr), count * ffi.sizeof(ctype))
    return np.frombuffer(buf, dtype=dtype).copy()


_DTYPES: dict[tuple[bool, str], np.dtype[Any]] = {}


def _dtype(native: Native, ctype: str) -> np.dtype[Any]:
    import numpy as np

    key = (native.checked, ctype)
    if key not in _DTYPES:
        ffi = native.ffi
        fields = ffi.typeof(ctype).fields
        names, formats, offsets = [], [], []
        for fname, field in fields:
            names.append(fname)
            formats.append(_np_type(field.type.cname))
            offsets.append(field.offset)
        _DTYPES[key] = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": ffi.sizeof(ctype)}
        )
    return _DTYPES[key]


def _np_type(cname: str) -> str:
    return {"uint64_t": "<u8", "uint32_t": "<u4", "int32_t": "<i4", "int16_t": "<i2", "uint16_t": "<u2"}[cname]


# ------------------------------------------------------------------------------------------
# The core's numbers


def _core_lib() -> Any:
    """The normal build's ``lib`` without the start-up calibration (constants only)."""
    try:
        return importlib.import_module("harness._core").lib
    except ImportError as exc:  # pragma: no cover - only on a broken install
        raise HarnessError(f"the C core harness._core is not built ({exc})",
                           "run the README's setup command to compile it") from exc


_LIB = _core_lib()


def c_names(prefix: str, checked: bool = False) -> dict[str, int]:
    """Every integer constant of the binding whose name starts with ``prefix``, without it
    (tests/test_native.py checks that each enum below has exactly these)."""
    lib = load(True).lib if checked else _LIB
    return {n[len(prefix):]: int(getattr(lib, n)) for n in dir(lib) if n.startswith(prefix)}


class Role(IntFlag):
    """Role groups of one ``cxl_log_run_subset`` call."""

    PUBLISHERS = _LIB.CXL_ROLE_PUBLISHERS
    SCANNERS = _LIB.CXL_ROLE_SCANNERS  # scanners + sequencer (Order 2) or ackers (Order 0)
    SUBSCRIBERS = _LIB.CXL_ROLE_SUBSCRIBERS
    ALL = _LIB.CXL_ROLE_ALL


class Flag(IntFlag):
    """``cxl_log_cfg_t.flags``."""

    NT_COPY = _LIB.CXL_F_NT_COPY
    FENCE_PER_LINE = _LIB.CXL_F_FENCE_PER_LINE
    RESERVE_PER_BATCH = _LIB.CXL_F_RESERVE_PER_BATCH
    EXTRA_FENCE = _LIB.CXL_F_EXTRA_FENCE
    DETERMINISTIC = _LIB.CXL_F_DETERMINISTIC
    NO_VERIFY = _LIB.CXL_F_NO_VERIFY
    RESUME = _LIB.CXL_F_RESUME
    TAKE_OVER = _LIB.CXL_F_TAKE_OVER


class Rec(IntEnum):
    """Per-batch record kinds (``DELIVER`` + subscriber index)."""

    PUBLISH = _LIB.CXL_REC_PUBLISH
    ORDER = _LIB.CXL_REC_ORDER
    COMMIT = _LIB.CXL_REC_COMMIT
    ACK = _LIB.CXL_REC_ACK
    LOSS = _LIB.CXL_REC_LOSS
    DELIVER = _LIB.CXL_REC_DELIVER


class LossReason(IntEnum):
    """``cxl_rec_loss_t.reason``."""

    TIMEOUT = _LIB.CXL_LOSS_TIMEOUT  # claimed, never committed: its publisher stopped
    CORRUPT = _LIB.CXL_LOSS_CORRUPT
    FENCED = _LIB.CXL_LOSS_FENCED  # Order 5: a batch of a fenced session, never ordered
    LATE = _LIB.CXL_LOSS_LATE  # Order 5: below its client's next_expected (late or duplicate)
    ORPHAN = _LIB.CXL_LOSS_ORPHAN  # committed, never ordered: its broker's scanner stopped


class GapPolicy(IntEnum):
    """``cxl_log_cfg_t.gap_policy`` (Order 5)."""

    MARKERS = _LIB.CXL_GAP_MARKERS
    FENCE = _LIB.CXL_GAP_FENCE


class OrderKind(IntEnum):
    """``cxl_rec_order_t.kind``: a batch ordered, a declared-lost marker, a session fence."""

    BATCH = _LIB.CXL_ORDER_BATCH
    MARKER = _LIB.CXL_ORDER_MARKER
    FENCE = _LIB.CXL_ORDER_FENCE


RESUME_KIND = int(_LIB.CXL_RESUME_KIND)  # commit records of kind RESUME_KIND + k: subscriber k resumed


class RoleKind(IntEnum):
    """``cxl_placement_t.kind``, and the kind of a model agent."""

    PUBLISHER = _LIB.CXL_KIND_PUBLISHER
    SCANNER = _LIB.CXL_KIND_SCANNER
    SEQUENCER = _LIB.CXL_KIND_SEQUENCER
    SUBSCRIBER = _LIB.CXL_KIND_SUBSCRIBER


class Backend(IntEnum):
    """``cxl_region_t.backend``."""

    EMULATED = _LIB.CXL_BACKEND_EMULATED
    FILE = _LIB.CXL_BACKEND_FILE
    DEVDAX = _LIB.CXL_BACKEND_DEVDAX
    NUMA = _LIB.CXL_BACKEND_NUMA


class Severity(IntEnum):
    """Trace rule severities."""

    WARNING = _LIB.CXL_SEVERITY_WARNING
    ERROR = _LIB.CXL_SEVERITY_ERROR


@lru_cache(maxsize=1)
def op_codes() -> dict[str, int]:
    """Operations of the checked build's event stream (and of recorded traces), by name:
    store, nt_store, load, flush, fence, invalidate, publish, consume, commit, rmw."""
    return {name.lower(): code for name, code in c_names("CXL_OP_", checked=True).items()}


@dataclass(frozen=True)
class Limits:
    """The bounds the core enforces (``cxl_limits``)."""

    max_brokers: int
    max_subscribers: int
    max_publishers_per_broker: int
    max_msgs_per_batch: int
    max_workers: int
    max_roles: int
    layout_version: int
    lat_buckets: int
    max_pbr_slots: int
    max_goi_slots: int
    max_batches: int
    max_msg_size: int
    max_batch_log_bytes: int
    no_client: int
    msg_header_bytes: int
    max_hold: int
    session_shift: int
    max_session: int


def _limits() -> Limits:
    ffi = importlib.import_module("harness._core").ffi
    out = ffi.new("cxl_limits_t *")
    _LIB.cxl_limits(out)
    return Limits(**{f: int(getattr(out, f)) for f, _ in ffi.typeof("cxl_limits_t").fields})


LIMITS = _limits()


def lat_bucket_low(i: int) -> int:
    """Lower bound (ns) of commit-latency bucket ``i`` (the core's lat_bucket inverse)."""
    return int(_LIB.cxl_lat_bucket_low(i))


def agent_kind(agent: int) -> tuple[RoleKind, int] | None:
    """The role kind and index of a model agent id, or None when no role has that id."""
    ffi = importlib.import_module("harness._core").ffi
    index = ffi.new("uint32_t *")
    kind = int(_LIB.cxl_agent_kind(agent, index))
    return None if kind < 0 else (RoleKind(kind), int(index[0]))
