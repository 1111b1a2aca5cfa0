"""The core's numbers (role masks, flags, record kinds, loss reasons, role kinds, back-ends,
rule severities, trace operations, limits, latency bucket bounds, agent ids), read from the
compiled module, never re-declared in Python (tests/test_native.py checks each enum)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from functools import lru_cache

from harness.native._build import constants_core, load

_CORE = constants_core()
_LIB = _CORE.lib


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
    ffi = _CORE.ffi
    out = ffi.new("cxl_limits_t *")
    _LIB.cxl_limits(out)
    return Limits(**{f: int(getattr(out, f)) for f, _ in ffi.typeof("cxl_limits_t").fields})


LIMITS = _limits()


def lat_bucket_low(i: int) -> int:
    """Lower bound (ns) of commit-latency bucket ``i`` (the core's lat_bucket inverse)."""
    return int(_LIB.cxl_lat_bucket_low(i))


def agent_kind(agent: int) -> tuple[RoleKind, int] | None:
    """The role kind and index of a model agent id, or None when no role has that id."""
    ffi = _CORE.ffi
    index = ffi.new("uint32_t *")
    kind = int(_LIB.cxl_agent_kind(agent, index))
    return None if kind < 0 else (RoleKind(kind), int(index[0]))
