"""The checked build's checker (``cxl_chk_*``), its fault catalogue (``cxl_fault_*``) and its
seam call sites (``cxl_chk_site_*``).

harness.checked, harness.tracecheck and harness.mutate say what a run, a trace or a mutation
means; this module only drives the checker of the checked build (:func:`load` ``(True)``)
and copies its answers out as small dataclasses. The checker is one per process: a run is
:func:`begin` ... :func:`end`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from harness.errors import CoreError
from harness.native._build import Native, c_string, load

ALL_SITES = 0xFFFFFFFF  # cxl_chk_site_mutate: an id past the count clears every mutation
NO_PREEMPT = (1 << 64) - 1  # cxl_chk_plan_preempt: no planned preemption


def _chk() -> Native:
    return load(True)


def _opt_string(native: Native, ptr: Any) -> str | None:
    return None if ptr == native.ffi.NULL else c_string(native, ptr)


# -- catalogues ------------------------------------------------------------------------------
def fault_names() -> list[str]:
    """The planted faults of the catalogue; fault id = index + 1 (0: none)."""
    native = _chk()
    lib = native.lib
    return [c_string(native, lib.cxl_fault_name(i)) for i in range(1, int(lib.cxl_fault_count()) + 1)]


def fault_doc(fault: int) -> str:
    native = _chk()
    return c_string(native, native.lib.cxl_fault_doc(fault))


def rule_names() -> list[str]:
    """The trace rules; rule id = index + 1."""
    native = _chk()
    lib = native.lib
    return [c_string(native, lib.cxl_chk_rule_name(i)) for i in range(1, int(lib.cxl_chk_rule_count()) + 1)]


def rule_doc(rule: int) -> str:
    native = _chk()
    return c_string(native, native.lib.cxl_chk_rule_doc(rule))


# -- one checked run -------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckConfig:
    """``cxl_chk_cfg_t``: the adversary of one checked run (all zero: only the trace rules)."""

    model: bool = False
    keep_trace: bool = False
    trace_capacity: int = 0
    seed: int = 0
    p_early: float = 0.0
    p_evict: float = 0.0
    p_preempt: float = 0.0


def set_schedule(picks: list[int]) -> None:
    """The runner's first role picks to replay ([]: none)."""
    native = _chk()
    arr = native.ffi.new("uint32_t[]", picks) if picks else native.ffi.NULL
    native.lib.cxl_chk_set_schedule(arr, len(picks))


def set_schedule_mode(mode: int) -> None:
    """After the replayed picks: 0 the seed's, 1 stop, 2 round-robin."""
    _chk().lib.cxl_chk_set_schedule_mode(mode)


def plan_preempt(at: int = NO_PREEMPT, role: int = 0, steps: int = 0) -> None:
    """At the ``at``-th shared-memory access inside a step, role ``role`` runs ``steps`` steps."""
    _chk().lib.cxl_chk_plan_preempt(at, role, steps)


def begin(base: Any, size: int, cfg: CheckConfig = CheckConfig()) -> None:
    """Start checking a region of ``size`` bytes at ``base`` (None: a recorded trace's, fed by
    :func:`feed`). CoreError when the checker cannot allocate its state."""
    native = _chk()
    c = native.ffi.new("cxl_chk_cfg_t *")
    c.model, c.keep_trace, c.trace_capacity = int(cfg.model), int(cfg.keep_trace), cfg.trace_capacity
    c.seed, c.p_early, c.p_evict, c.p_preempt = cfg.seed, cfg.p_early, cfg.p_evict, cfg.p_preempt
    rc = int(native.lib.cxl_chk_begin(native.ffi.NULL if base is None else base, size, c))
    if rc != 0:
        raise CoreError("cxl_chk_begin", -rc if rc < 0 else 0)


def end() -> None:
    """End the run: the checker's state is freed (read its findings before)."""
    _chk().lib.cxl_chk_end()
    _KEPT.clear()


def finish() -> None:
    """The end-of-run check: every store flushed and fenced by now."""
    _chk().lib.cxl_chk_finish()


def set_agent(agent: int) -> None:
    _chk().lib.cxl_chk_set_agent(agent)


def handoff() -> None:
    """Every clean line forgets its writer (the formatter's hand-over to the roles)."""
    _chk().lib.cxl_chk_handoff()


_KEPT: dict[str, Any] = {}  # location strings the checker points at, until end()


def feed(events: Iterable[tuple[int, int, int, int, str, int]]) -> int:
    """Feed recorded events (agent, op, offset, size, source file, line) to the checker
    begun with ``base`` None; returns how many. One C copy of each distinct file name is kept
    (the findings point at them) until :func:`end`."""
    native = _chk()
    lib, new = native.lib, native.ffi.new
    kept = _KEPT
    n = 0
    for agent, op, off, size, file, line_no in events:
        c_file = kept.get(file)
        if c_file is None:
            c_file = kept[file] = new("char[]", file.encode())
        lib.cxl_chk_feed(agent, op, off, size, c_file, line_no)
        n += 1
    return n


@dataclass(frozen=True)
class RawFinding:
    """``cxl_chk_finding_t`` with its rule's name and sentence."""

    rule: str
    doc: str
    severity: int
    agent: int
    other_agent: int
    line_off: int
    count: int
    first_event: int
    file: str | None
    line_no: int


def findings(max_findings: int = 512) -> list[RawFinding]:
    native = _chk()
    ffi, lib = native.ffi, native.lib
    buf = ffi.new("cxl_chk_finding_t[]", max_findings)
    out = []
    for i in range(int(lib.cxl_chk_findings(buf, max_findings))):
        f = buf[i]
        out.append(RawFinding(c_string(native, lib.cxl_chk_rule_name(f.rule)),
                              c_string(native, lib.cxl_chk_rule_doc(f.rule)), int(f.severity),
                              int(f.agent), int(f.other_agent), int(f.line_off), int(f.count),
                              int(f.first_event), _opt_string(native, f.file), int(f.line_no)))
    return out


@dataclass(frozen=True)
class ModelCounts:
    """What the memory model's adversary did in the run."""

    events: int
    early_writebacks: int
    evictions: int
    stale_reads: int
    preemptions: int
    preempt_points: int


def model_counts() -> ModelCounts:
    native = _chk()
    ffi, lib = native.ffi, native.lib
    early, evict, stale = (ffi.new("uint64_t *") for _ in range(3))
    events = int(lib.cxl_chk_model_stats(early, evict, stale))
    return ModelCounts(events, int(early[0]), int(evict[0]), int(stale[0]),
                       int(lib.cxl_chk_preempt_count()), int(lib.cxl_chk_preempt_points()))


def schedule() -> list[int]:
    """The role picks of this run (what :func:`set_schedule` replays)."""
    native = _chk()
    ffi, lib = native.ffi, native.lib
    made = int(lib.cxl_chk_schedule(ffi.NULL, 0))
    buf = ffi.new("uint32_t[]", max(made, 1))
    lib.cxl_chk_schedule(buf, made)
    picks: list[int] = ffi.unpack(buf, made)  # already a list of Python ints
    return picks


class Event(NamedTuple):
    """``cxl_chk_event_t``: one event of the trace the checker kept (a tuple: traces are long)."""

    agent: int
    op: int
    off: int
    size: int
    value: int
    file: str | None
    line_no: int


def trace() -> Iterator[Event]:
    """The events the checker kept (``keep_trace``) in the last run, in order."""
    native = _chk()
    ptr = native.ffi.new("cxl_chk_event_t **")
    for i in range(int(native.lib.cxl_chk_trace(ptr))):
        e = ptr[0][i]
        yield Event(int(e.agent), int(e.op), int(e.off), int(e.size), int(e.value),
                    _opt_string(native, e.file), int(e.line_no))


# -- seam call sites -------------------------------------------------------------------------
def has_sites() -> bool:
    """Whether the checked build lists its sites (False: a stale build)."""
    return hasattr(_chk().lib, "cxl_chk_site_count")


@dataclass(frozen=True)
class SiteInfo:
    """``cxl_site_t``: one seam call site, what it does and what executed it."""

    index: int
    file: str
    func: str
    line: int
    op: int
    mode: int
    roles: int
    hits: int


def sites() -> list[SiteInfo]:
    """Every site the checked build lists, by index."""
    native = _chk()
    lib = native.lib
    info = native.ffi.new("cxl_site_t *")
    out = []
    for i in range(int(lib.cxl_chk_site_count())):
        if lib.cxl_chk_site_info(i, info) == 0:
            out.append(SiteInfo(i, c_string(native, info.file), c_string(native, info.func),
                                int(info.line), int(info.op), int(info.mode), int(info.roles),
                                int(info.hits)))
    return out


def site_mutate(index: int, mode: int) -> bool:
    """Mutate one site (``mode`` CXL_MUT_*); False when it cannot be."""
    return int(_chk().lib.cxl_chk_site_mutate(index, mode)) == 0


def clear_mutations() -> None:
    _chk().lib.cxl_chk_site_mutate(ALL_SITES, 0)


def site_reset() -> None:
    """Every site's hits and roles back to zero."""
    _chk().lib.cxl_chk_site_reset()
