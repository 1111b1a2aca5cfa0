"""The shared log, driven from Python: configure, run (threads or processes), get a result.

No Python runs inside the log: one C call runs every role to completion while this thread
only polls a progress counter for the progress bar.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError, RegionError, RoleProcessError
from harness.native import Native, as_array, load
from harness.region import DeviceModel, Region, RegionInfo

VARIANTS = {"per-scanner": 0, "shared-mutex": 1}
ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, ROLE_ALL = 1, 2, 4, 7
ROLE_KIND_NAMES = {0: "publisher", 1: "scanner", 2: "sequencer", 3: "subscriber"}  # cxl_placement_t.kind
MAX_ROLES = 544  # CXL_MAX_ROLES: placement entries the core keeps
SCHEDULING = ("workers", "threads")
F_NT_COPY, F_FENCE_PER_LINE, F_RESERVE_PER_BATCH, F_EXTRA_FENCE, F_DETERMINISTIC, F_NO_VERIFY = (
    1, 2, 4, 8, 16, 32)
F_RESUME = 64
F_TAKE_OVER = 128
REC_PUBLISH, REC_ORDER, REC_COMMIT, REC_ACK, REC_LOSS, REC_DELIVER = range(6)
from harness.limits import MAX_BROKERS as MAX_BROKERS
from harness.limits import MAX_SUBSCRIBERS as MAX_SUBSCRIBERS
RECORD_LIMIT = 2_000_000  # batches: above this, records are off unless asked for
# guards the registries of running logs and role processes (re-entrant: a signal handler in
# the main thread may take it while that thread holds it)
_LIVE_LOCK = threading.RLock()
MAX_PBR_SLOTS = 1 << 30
MAX_GOI_SLOTS = 1 << 40
MAX_BATCHES = 1 << 48  # per broker
LOSS_TIMEOUT, LOSS_CORRUPT = 1, 2  # cxl_rec_loss_t.reason
NO_CLIENT = 0xFFFFFFFF


@dataclass(frozen=True)
class LogConfig:
    """What to run. Sizes in bytes; ``total_bytes`` is payload across all brokers."""

    order: int = 2
    variant: str = "per-scanner"
    brokers: int = 4
    publishers_per_broker: int = 1
    subscribers: int = 0
    msg_size: int = 1024
    batch_bytes: int = 65536
    total_bytes: int = 64 << 20
    ack: int = 1
    epoch_us: int = 50
    pbr_slots: int = 256
    goi_slots: int = 1 << 14
    nt_copy: bool = True
    fence_per_line: bool = False
    reserve_per_batch: bool = False
    extra_fence: bool = False
    verify: bool = True
    seed: int = 1
    record: bool | None = None  # None: record when the run is small enough
    slot_timeout_ms: float = 0.0  # resolve a claimed, never committed slot as lost after this
    watchdog_s: float = 30.0
    processes: bool = False
    resume_subscribers: bool = False  # a restarted subscriber continues from its published position
    # "workers": when roles outnumber the allowed CPUs, a bounded set of pinned threads (one
    # per allowed CPU) steps several roles each; "threads": one thread per role (upstream).
    scheduling: str = "workers"
    # crash injection: publisher `crash_publisher` dies in the middle of its batch number
    # `crash_after` (its thread stops; with crash_kill its whole process is SIGKILLed)
    crash_publisher: int = -1
    crash_after: int = 0
    crash_kill: bool = False
    # the scanner of broker `crash_scanner` stops mid-epoch after scanning `crash_after` slots
    # (Order 2; its thread, never its process: the sequencer shares it). The sequencer finds it
    # dead (slot_timeout_ms) and declares that broker's later batches lost, by identity.
    crash_scanner: int = -1
    # subscriber `crash_subscriber` dies mid-chunk after delivering `crash_after` batches (its
    # thread stops; with crash_kill its process is SIGKILLed). The sequencer finds it dead
    # (slot_timeout_ms) and the rings no longer wait for it.
    crash_subscriber: int = -1
    # publishers whose batches may be declared lost: crashed on purpose (crash_publisher is
    # always included). A loss of any other publisher's batch fails the run.
    expect_lost_from: tuple[int, ...] = ()
    take_over: bool = False  # take over a sequencer/scanner lease another host holds

    def __post_init__(self) -> None:
        object.__setattr__(self, "expect_lost_from", tuple(self.expect_lost_from))
        _require(self.order in (0, 2), "order", self.order, "0 (per-broker) or 2 (total order)")
        _require(self.variant in VARIANTS, "variant", self.variant, "per-scanner or shared-mutex")
        _require(1 <= self.brokers <= MAX_BROKERS, "brokers", self.brokers, f"1..{MAX_BROKERS}")
        _require(1 <= self.publishers_per_broker <= 64, "publishers_per_broker",
                 self.publishers_per_broker, "1..64")
        _require(0 <= self.subscribers <= MAX_SUBSCRIBERS, "subscribers", self.subscribers,
                 f"0..{MAX_SUBSCRIBERS}")
        _require(1 <= self.msg_size <= 64 << 20, "msg_size", self.msg_size, "1 byte .. 64 MiB")
        _require(self.batch_bytes >= 1, "batch_bytes", self.batch_bytes, "at least one byte")
        _require(self.total_bytes >= 1, "total_bytes", self.total_bytes, "at least one byte")
        _require(self.ack in (0, 1, 2), "ack", self.ack, "0, 1 or 2")
        _require(1 <= self.epoch_us <= 1_000_000, "epoch_us", self.epoch_us, "1..1000000")
        _require(_pow2(self.pbr_slots) and 2 <= self.pbr_slots <= MAX_PBR_SLOTS, "pbr_slots",
                 self.pbr_slots, f"a power of two from 2 to 2^30 ({MAX_PBR_SLOTS})")
        _require(_pow2(self.goi_slots) and 2 <= self.goi_slots <= MAX_GOI_SLOTS, "goi_slots",
                 self.goi_slots, f"a power of two from 2 to 2^40 ({MAX_GOI_SLOTS})")
        _require(self.msgs_per_batch <= 65536, "batch_bytes", self.batch_bytes,
                 "at most 65536 messages per batch")
        _require(self.scheduling in SCHEDULING, "scheduling", self.scheduling,
                 " or ".join(SCHEDULING))
        _require(self.msgs_per_batch * ((16 + self.msg_size + 63) // 64 * 64) <= 1 << 30,
                 "batch_bytes", self.batch_bytes, "at most 1 GiB of log per batch")
        per_broker = self.batches_per_publisher * self.publishers_per_broker
        _require(per_broker <= MAX_BATCHES, "total_bytes", self.total_bytes,
                 f"at most 2^48 batches per broker (this is {per_broker})")
        _require(0.0 <= self.slot_timeout_ms <= 3_600_000, "slot_timeout_ms", self.slot_timeout_ms,
                 "0 (never declare a slot lost) .. 3600000")
        _require(0.0 < self.watchdog_s <= 86_400, "watchdog_s", self.watchdog_s, "a positive time, at most a day")
        _require(0 <= self.seed < 1 << 64, "seed", self.seed, "0 .. 2^64-1")
        npubs = self.brokers * self.publishers_per_broker
        _require(-1 <= self.crash_publisher < npubs, "crash_publisher", self.crash_publisher,
                 f"-1 (none) or a publisher index 0..{npubs - 1}")
        _require(-1 <= self.crash_scanner < self.brokers, "crash_scanner", self.crash_scanner,
                 f"-1 (none) or a broker index 0..{self.brokers - 1}")
        _require(-1 <= self.crash_subscriber < self.subscribers, "crash_subscriber", self.crash_subscriber,
                 f"-1 (none) or a subscriber index 0..{self.subscribers - 1}" if self.subscribers
                 else "-1 (the run has no subscriber)")
        crashes = sum(x >= 0 for x in (self.crash_publisher, self.crash_scanner, self.crash_subscriber))
        _require(crashes <= 1, "crash_publisher/crash_scanner/crash_subscriber",
                 (self.crash_publisher, self.crash_scanner, self.crash_subscriber), "one crash per run")
        limit = self.crash_after_limit
        _require(0 <= self.crash_after < limit, "crash_after", self.crash_after,
                 f"0..{limit - 1} ({self.crash_after_unit} the {self.crash_role or 'publisher'} "
                 "completes first)")
        if self.crash_scanner >= 0 or self.crash_subscriber >= 0:
            _require(self.order == 2, "order", self.order,
                     f"order 2: a dead {self.crash_role} is found and worked around by the sequencer")
            _require(self.slot_timeout_ms > 0, "slot_timeout_ms", self.slot_timeout_ms,
                     f"a positive timeout: a dead {self.crash_role} is declared dead after it")
        _require(not (self.crash_kill and self.crash_scanner >= 0), "crash_kill", self.crash_kill,
                 "False for a scanner crash (the scanners share their process with the sequencer)")
        _require(all(0 <= p < npubs for p in self.expect_lost_from), "expect_lost_from",
                 self.expect_lost_from, f"publisher indices 0..{npubs - 1}")

    @property
    def crash_role(self) -> str:
        """The role crashed on purpose ("" none)."""
        for role, index in (("publisher", self.crash_publisher), ("scanner", self.crash_scanner),
                            ("subscriber", self.crash_subscriber)):
            if index >= 0:
                return role
        return ""

    @property
    def crash_index(self) -> int:
        return max(self.crash_publisher, self.crash_scanner, self.crash_subscriber)

    @property
    def crash_after_limit(self) -> int:
        """One more than the largest ``crash_after`` the crashed role can reach."""
        if self.crash_scanner >= 0:
            return self.batches_per_publisher * self.publishers_per_broker
        if self.crash_subscriber >= 0:
            return self.total_batches
        return self.batches_per_publisher

    @property
    def crash_after_unit(self) -> str:
        return {"scanner": "ring slots", "subscriber": "batches delivered"}.get(self.crash_role, "batches")

    @property
    def orphaned_broker(self) -> int:
        """The broker whose scanner is crashed on purpose (its batches declared lost), or -1."""
        return self.crash_scanner

    @property
    def expected_lost_publishers(self) -> frozenset[int]:
        """Publishers whose batches may be declared lost (crashed on purpose)."""
        extra = {self.crash_publisher} if self.crash_publisher >= 0 else set()
        return frozenset(self.expect_lost_from) | extra

    @property
    def msgs_per_batch(self) -> int:
        return max(1, self.batch_bytes // self.msg_size)

    @property
    def batches_per_publisher(self) -> int:
        per_batch = self.msgs_per_batch * self.msg_size
        pubs = self.brokers * self.publishers_per_broker
        return max(1, math.ceil(self.total_bytes / (per_batch * pubs)))

    @property
    def total_batches(self) -> int:
        return self.batches_per_publisher * self.brokers * self.publishers_per_broker

    @property
    def recording(self) -> bool:
        return self.record if self.record is not None else self.total_batches <= RECORD_LIMIT

    def flags(self) -> int:
        f = F_NT_COPY if self.nt_copy else 0
        f |= F_FENCE_PER_LINE if self.fence_per_line else 0
        f |= F_RESERVE_PER_BATCH if self.reserve_per_batch else 0
        f |= F_EXTRA_FENCE if self.extra_fence else 0
        f |= 0 if self.verify else F_NO_VERIFY
        f |= F_RESUME if self.resume_subscribers else 0
        f |= F_TAKE_OVER if self.take_over else 0
        return f


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range", f"use {allowed}")


@dataclass
class Latency:
    p50_ns: float
    p99_ns: float
    p999_ns: float
    samples: int
    cdf: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Check:
    """One invariant checked on a run: passed, or the counterexample."""

    id: str
    name: str
    ok: bool
    detail: str
    counterexamples: list[dict[str, Any]] = field(default_factory=list)
    group: str = "ordering"


@dataclass
class LogResult:
    order: int
    variant: str
    brokers: int
    ack: int
    messages_published: int
    messages_acked: int
    messages_ordered: int
    messages_delivered: list[int]
    batches: int
    batches_ordered: int
    batches_lost: int
    payload_bytes: int
    elapsed_s: float
    throughput_mib_s: float
    messages_per_s: float
    batches_per_s: float
    latency: Latency
    region: dict[str, Any]
    counters: dict[str, int]
    checks: list[Check]
    config: dict[str, Any]
    stalled: bool
    records: dict[str, Any] | None = field(default=None, repr=False)
    placement: dict[str, Any] = field(default_factory=dict)  # where each role ran

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("records", None)
        d["latency_ns"] = {"p50": self.latency.p50_ns, "p99": self.latency.p99_ns,
                           "p999": self.latency.p999_ns}
        return d


# ------------------------------------------------------------------------------------------
# Building the C configuration and region


def c_config(native: Native, cfg: LogConfig, fault: int = 0, deterministic: bool = False) -> Any:
    c = native.ffi.new("cxl_log_cfg_t *")
    c.brokers = cfg.brokers
    c.publishers_per_broker = cfg.publishers_per_broker
    c.subscribers = cfg.subscribers
    c.order = cfg.order
    c.variant = VARIANTS[cfg.variant]
    c.ack_level = cfg.ack
    c.pbr_slots = cfg.pbr_slots
    c.msg_size = cfg.msg_size
    c.msgs_per_batch = cfg.msgs_per_batch
    c.epoch_us = cfg.epoch_us
    c.goi_slots = cfg.goi_slots
    c.batches_per_publisher = cfg.batches_per_publisher
    c.seed = cfg.seed
    c.flags = cfg.flags() | (F_DETERMINISTIC if deterministic else 0)
    c.fault = fault
    c.slot_timeout_ns = int(cfg.slot_timeout_ms * 1e6)
    c.watchdog_ns = int(cfg.watchdog_s * 1e9)
    c.record_capacity = cfg.total_batches + 16 if cfg.recording else 0
    c.crash_client = cfg.crash_publisher + 1
    c.crash_kill = 1 if cfg.crash_kill else 0
    c.crash_after = cfg.crash_after
    c.crash_scanner = cfg.crash_scanner + 1
    c.crash_subscriber = cfg.crash_subscriber + 1
    return c


def layout_parts(cfg: LogConfig) -> list[tuple[int, str, str]]:
    """The region's big areas, largest first: (bytes, what it is in the options, a fix)."""
    stride = cfg.msgs_per_batch * ((16 + cfg.msg_size + 63) // 64 * 64)
    rings = cfg.brokers * cfg.pbr_slots
    half = max(2, cfg.pbr_slots // 1024)
    parts = [
        (rings * stride, f"the logs: --ring-slots {cfg.pbr_slots} x {_size(stride)} per slot "
         f"(--batch-bytes {cfg.batch_bytes}) x {cfg.brokers} broker(s)",
         f"use --ring-slots {half} or a smaller --batch-bytes"),
        (rings * 128, f"the ring headers: --ring-slots {cfg.pbr_slots} x 128 B x {cfg.brokers} broker(s)",
         f"use --ring-slots {half}"),
        (cfg.goi_slots * 64, f"the global order index: goi_slots={cfg.goi_slots} x 64 B",
         f"use goi_slots={max(2, cfg.goi_slots // 1024)}"),
    ]
    return sorted(parts, key=lambda p: -p[0])


def _size(n: int) -> str:
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):,.1f} {unit}"
    return f"{n} B"


def explain_size(cfg: LogConfig) -> tuple[str, str]:
    """One phrase naming what makes the layout of ``cfg`` big, and its fix."""
    size, what, fix = layout_parts(cfg)[0]
    return f"{what} = {_size(size)}", fix


def layout_size(cfg: LogConfig, native: Native | None = None) -> int:
    native = native or load()
    size = int(native.lib.cxl_layout_size(c_config(native, cfg)))
    if size == 0:
        what, fix = explain_size(cfg)
        raise ConfigError(f"the layout does not fit in a 64-bit region: {what}", fix)
    return size


def format_region(region: Region, cfg: LogConfig) -> None:
    """Write a fresh control block and zeroed rings into ``region``."""
    native = region.native
    c = c_config(native, cfg)
    need = layout_size(cfg, native)
    if region.size < need:
        raise RegionError(f"region of {region.size} bytes is smaller than the {need} bytes this "
                          "configuration needs", "use a larger region or smaller rings/batches")
    if native.lib.cxl_layout_init(region.base, region.size, c) != 0:
        raise RegionError("could not format the region", "check the configuration")


def attach_check(region: Region, cfg: LogConfig) -> None:
    """Refuse a region whose magic, version or geometry do not match ``cfg``."""
    native = region.native
    err = native.ffi.new("char[256]")
    if native.lib.cxl_layout_attach(region.base, region.size, c_config(native, cfg), err, 256) != 0:
        raise RegionError(f"cannot attach: {native.ffi.string(err).decode()}",
                          "format the region for this configuration, or use the matching one")


class LogHandle:
    """A cxl_log_t over a region; freed on close."""

    def __init__(self, region: Region, cfg: LogConfig, fault: int = 0, deterministic: bool = False):
        self.native = region.native
        self.cfg = cfg
        self.ccfg = c_config(self.native, cfg, fault, deterministic)
        err = self.native.ffi.new("char[256]")
        self.ptr = self.native.lib.cxl_log_new(region.base, region.size, self.ccfg, err, 256)
        if self.ptr == self.native.ffi.NULL:
            raise RegionError(f"cannot attach: {self.native.ffi.string(err).decode()}",
                              "format the region for this configuration")
        self._place()

    def _place(self) -> None:
        """Apply the configuration's scheduling: bounded pinned workers or thread per role."""
        cpus = sorted(os.sched_getaffinity(0))[: int(self.native.lib.cxl_log_max_workers())]
        # A crashed role is told from a slow one by its thread being gone: an injected crash
        # therefore needs every role on a thread of its own.
        pooled = self.cfg.scheduling == "workers" and not self.cfg.crash_role
        workers = len(cpus) if pooled else 0
        arr = self.native.ffi.new("int[]", cpus or [0])
        if self.native.lib.cxl_log_set_workers(self.ptr, workers, arr, len(cpus) if workers else 0):
            raise ConfigError(f"cannot place roles on CPUs {cpus}", "run with scheduling='threads'")

    def placement(self) -> dict[str, Any]:
        """Where the roles of the last run ran (worker thread and pinned CPU per role)."""
        ffi, lib = self.native.ffi, self.native.lib
        out = ffi.new("cxl_placement_t[]", MAX_ROLES)
        n = int(lib.cxl_log_placement(self.ptr, out, MAX_ROLES))
        seen: dict[int, int] = {}
        roles = []
        for i in range(n):
            kind = int(out[i].kind)
            index = seen.get(kind, 0)
            seen[kind] = index + 1
            roles.append({"role": f"{ROLE_KIND_NAMES.get(kind, kind)} {index}",
                          "worker": int(out[i].worker), "cpu": int(out[i].cpu)})
        workers = len({r["worker"] for r in roles})
        mode = "workers" if roles and workers < len(roles) else "threads"
        return {"scheduling": mode, "requested": self.cfg.scheduling, "threads": workers,
                "roles": roles}

    def run(self, roles: int = ROLE_ALL, pub_brokers: int = 0xFFFFFFFF, sub_mask: int = 0xFFFFFFFF,
            progress: bool = False) -> int:
        """Run the roles to completion (again after a watchdog stop: they continue where they
        stood). The C call runs in a worker thread while this one waits in short, interruptible
        steps: a signal (Ctrl-C) reaches Python at once, and any exception here first stops the
        run and joins the worker, so nothing is freed or unmapped under running roles.
        Deterministic runs too (one worker thread steps every role; the checked build's agent
        identity is set per step). Raises RegionError when another sequencer/scanner
        owns the region."""
        rc = self._run_c(roles, pub_brokers, sub_mask, progress)
        if rc == -2:
            reason = self.native.ffi.string(self.native.lib.cxl_log_error(self.ptr)).decode()
            raise RegionError(f"cannot run: {reason}",
                              "one sequencer and one scanner per broker may run on a region")
        return rc

    def _run_c(self, roles: int, pub_brokers: int, sub_mask: int, progress: bool) -> int:
        lib = self.native.lib
        rc: list[int] = []
        done = threading.Event()  # not Thread.join: an interrupted join may call a live thread ended

        def work() -> None:
            try:
                rc.append(int(lib.cxl_log_run_subset(self.ptr, roles, pub_brokers, sub_mask)))
            finally:
                done.set()

        worker = threading.Thread(target=work, name="cxl-log-run")
        bar = None
        with _LIVE_LOCK:
            _LIVE_HANDLES.add(self)
        try:
            try:
                worker.start()
            except RuntimeError:  # no thread could be made: nothing runs, nothing to wait for
                done.set()
                raise
            total = self.cfg.total_batches * self.cfg.msgs_per_batch
            start = time.monotonic()
            while not done.wait(0.2):
                if progress and bar is None and time.monotonic() - start > 2.0:
                    from tqdm import tqdm

                    bar = tqdm(total=total, unit="msg", unit_scale=True, desc="ordering", leave=False)
                if bar is not None:
                    bar.n = int(lib.cxl_log_progress(self.ptr))
                    bar.refresh()
        except BaseException:
            # stop and wait for the C call to return before anything is freed; asked again in
            # case the run had not yet started when the first request came
            while not done.is_set():
                lib.cxl_log_request_stop(self.ptr)
                done.wait(0.05)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE_HANDLES.discard(self)
            if bar is not None:
                bar.close()
        worker.join()
        return rc[0]

    def request_stop(self) -> None:
        """Ask the running roles to stop (safe from any thread; the run then returns)."""
        if self.ptr is not None:
            self.native.lib.cxl_log_request_stop(self.ptr)

    def stats(self) -> dict[str, Any]:
        st = self.native.ffi.new("cxl_log_stats_t *")
        self.native.lib.cxl_log_stats(self.ptr, st)
        out = _stats_dict(self.native, st)
        out["placement"] = self.placement()
        return out

    def records(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ffi, lib = self.native.ffi, self.native.lib
        kinds = {"publish": (REC_PUBLISH, "cxl_rec_publish_t"), "order": (REC_ORDER, "cxl_rec_order_t"),
                 "commit": (REC_COMMIT, "cxl_rec_frontier_t"), "ack": (REC_ACK, "cxl_rec_frontier_t"),
                 "loss": (REC_LOSS, "cxl_rec_loss_t")}
        for k in range(self.cfg.subscribers):
            kinds[f"deliver{k}"] = (REC_DELIVER + k, "cxl_rec_deliver_t")
        for name, (kind, ctype) in kinds.items():
            ptr, count, elem = ffi.new("void **"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
            if lib.cxl_log_records(self.ptr, kind, ptr, count, elem) == 0:
                arr = as_array(self.native, ptr[0], int(count[0]), ctype)
                out[name] = arr[arr["msg_count"] > 0] if name == "publish" else arr
        return out

    def close(self) -> None:
        if self.ptr is not None:
            self.native.lib.cxl_log_free(self.ptr)
            self.ptr = None


_LIVE_HANDLES: set[LogHandle] = set()


def request_stop_all() -> None:
    """Ask every run in progress to stop: logs running in this process, and role processes
    (SIGTERM). Called on SIGINT/SIGTERM by the command line; returns at once."""
    with _LIVE_LOCK:
        handles, procs = list(_LIVE_HANDLES), list(_LIVE_PROCESSES)
    for h in handles:
        h.request_stop()
    for p in procs:
        if p.proc.poll() is None:
            with suppress(ProcessLookupError):
                p.proc.terminate()


def _stats_dict(native: Native, st: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fname, _ in native.ffi.typeof("cxl_log_stats_t").fields:
        v = getattr(st, fname)
        out[fname] = list(v) if not isinstance(v, int) else int(v)
    return out


# ------------------------------------------------------------------------------------------
# Running


def run_log(cfg: LogConfig, *, region: Region | None = None, progress: bool = False,
            check_history: bool = True) -> LogResult:
    """Run the log once and check it. With ``region=None`` an emulated region (or, with
    ``processes=True``, a file on /dev/shm) is made for the run and released after it."""
    if cfg.processes:
        return _run_processes(cfg, region, check_history)
    owned = region is None
    if region is None:
        region = Region.emulated(_region_size(cfg), hugepages=True)
    try:
        format_region(region, cfg)
        h = LogHandle(region, cfg)
        try:
            rc = h.run(progress=progress)
            stats = h.stats()
            recs = h.records() if cfg.recording else None
        finally:
            h.close()
        return build_result(cfg, stats, recs, region.info(), rc, check_history)
    finally:
        if owned:
            region.close()


def _region_size(cfg: LogConfig) -> int:
    need = layout_size(cfg)
    return (need + (2 << 20) - 1) // (2 << 20) * (2 << 20)


@contextmanager
def shm_region(size: int, device_model: DeviceModel | None = None) -> Iterator[Region]:
    """A shareable region file made for one run, in a private directory (mkdtemp, 0700) on
    /dev/shm, and unlinked at once: the mapping (and the file descriptor that role processes
    inherit) keep the memory, so nothing is left under /dev/shm however the run ends, even
    when the coordinator is killed with SIGKILL."""
    tmpdir = tempfile.mkdtemp(prefix="cxl-harness-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = Path(tmpdir) / "region"
    try:
        region = Region.file(path, size, create=True, lock=True, device_model=device_model)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)
        os.rmdir(tmpdir)
    try:
        yield region
    finally:
        region.close()


def crash_groups(cfg: LogConfig) -> tuple[list[RoleGroup], int]:
    """The role processes of a run, and which of them an injected crash kills (-1: none). A
    crashed publisher or subscriber gets a process of its own, so that its SIGKILL takes no
    other role with it; the scanners share theirs with the sequencer (a scanner crash stops
    its thread only)."""
    every = 0xFFFFFFFF
    groups: list[RoleGroup] = []
    killed = -1
    if cfg.crash_publisher >= 0 and cfg.crash_kill:
        b = cfg.crash_publisher // cfg.publishers_per_broker
        if cfg.brokers > 1:
            groups.append(RoleGroup(ROLE_PUBLISHERS, pub_brokers=((1 << cfg.brokers) - 1) & ~(1 << b)))
        killed = len(groups)
        groups.append(RoleGroup(ROLE_PUBLISHERS, pub_brokers=1 << b))
    else:
        groups.append(RoleGroup(ROLE_PUBLISHERS))
    groups.append(RoleGroup(ROLE_SCANNERS))
    if cfg.subscribers and cfg.crash_subscriber >= 0 and cfg.crash_kill:
        k = cfg.crash_subscriber
        if cfg.subscribers > 1:
            groups.append(RoleGroup(ROLE_SUBSCRIBERS, sub_mask=((1 << cfg.subscribers) - 1) & ~(1 << k)))
        killed = len(groups)
        groups.append(RoleGroup(ROLE_SUBSCRIBERS, sub_mask=1 << k))
    elif cfg.subscribers:
        groups.append(RoleGroup(ROLE_SUBSCRIBERS, sub_mask=every))
    return groups, killed


def _run_processes(cfg: LogConfig, region: Region | None, check_history: bool) -> LogResult:
    with ExitStack() as stack:
        if region is None:
            region = stack.enter_context(shm_region(_region_size(cfg)))
        if region.backend != "file" and region.path is None:
            raise ConfigError("multi-process mode needs a shareable region", "use the file back-end (or none)")
        format_region(region, cfg)
        groups, killed = crash_groups(cfg)
        # children attach to this very file through the descriptor, never by name
        where = f"/proc/self/fd/{region.fd}" if region.fd >= 0 else str(region.path)
        procs = start_role_processes(where, region.size, cfg, groups)
        expected = procs[killed] if killed >= 0 else None
        results = supervise(procs, cfg.watchdog_s + 60, expect_killed=expected)
        stats = merge_stats([r.stats for r in results])
        if expected is not None and not stats.get("crash_ns") and expected.died_ns:
            stats["crash_ns"] = expected.died_ns  # seen by this process (same clock), <= 10 ms late
        recs = merge_records([r.records for r in results]) if cfg.recording else None
        rc = max(r.rc for r in results)
        # a killed publisher's own records (what it published) died with it: the history of
        # the run cannot be complete, so it is not checked -- and the result says so
        lost_records = expected is not None and cfg.crash_publisher >= 0
        result = build_result(cfg, stats, recs, region.info(), rc, check_history and not lost_records,
                              processes=len(groups))
        if expected is not None and lost_records and check_history and recs is not None:
            result.checks.append(Check(
                "history-not-checked", "history check not run: the killed publisher process's own "
                "publish records died with it", True,
                f"{expected.group.label} was SIGKILLed on purpose; the in-run checks above cover the "
                "run (every other broker complete, the lost slot named)", group="history"))
        return result
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: ExitStack may swallow)


@dataclass(frozen=True)
class RoleGroup:
    """Roles for one process: a CXL_ROLE_* mask, and which brokers' publishers / subscribers."""

    roles: int
    pub_brokers: int = 0xFFFFFFFF
    sub_mask: int = 0xFFFFFFFF

    @property
    def label(self) -> str:
        names = [n for bit, n in ((ROLE_PUBLISHERS, "publishers"), (ROLE_SCANNERS, "scanners"),
                                  (ROLE_SUBSCRIBERS, "subscribers")) if self.roles & bit]
        text = "+".join(names) or f"roles {self.roles}"
        if self.roles & ROLE_PUBLISHERS and self.pub_brokers != 0xFFFFFFFF:
            text += f" of brokers {_bits(self.pub_brokers)}"
        if self.roles & ROLE_SUBSCRIBERS and self.sub_mask != 0xFFFFFFFF:
            text += f" {_bits(self.sub_mask)}"
        return text


def _bits(mask: int) -> str:
    return ",".join(str(i) for i in range(32) if mask >> i & 1)


@dataclass
class RoleResult:
    rc: int
    stats: dict[str, Any]
    records: dict[str, Any]


_LIVE_PROCESSES: set[RoleProcess] = set()


class RoleProcess:
    """A role group running as ``python -m harness.role_process`` on a shared region file.

    The child attaches through an inherited descriptor of the region (``path`` is opened here,
    once), writes its results into a file that this side created with O_CREAT|O_EXCL|O_NOFOLLOW
    in a private directory (mkdtemp, 0700) and unlinked before the child started, and dies with
    the thread that started it (PR_SET_PDEATHSIG), so no role process outlives its coordinator.
    Each child has its own process group: a Ctrl-C at the terminal reaches the coordinator
    only, which then stops the children."""

    def __init__(self, path: str, size: int, cfg: LogConfig, group: RoleGroup, workdir: str | None = None):
        import subprocess
        import sys

        from harness.role_process import config_json

        self.group = group
        self.out_fd = _private_result_file(workdir)
        self.err = tempfile.TemporaryFile(prefix="cxl-harness-role-", dir=workdir)
        region_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.role_process", "--parent-pid", str(os.getpid()),
                 "--region", f"/proc/self/fd/{region_fd}", "--region-fd", str(region_fd),
                 "--size", str(size), "--config", config_json(cfg), "--roles", str(group.roles),
                 "--pub-brokers", str(group.pub_brokers), "--sub-mask", str(group.sub_mask),
                 "--out-fd", str(self.out_fd)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err,
                pass_fds=(region_fd, self.out_fd), process_group=0)
        except BaseException:
            os.close(self.out_fd)
            self.err.close()
            raise
        finally:
            os.close(region_fd)
        self.died_ns = 0  # when supervise saw it die (time.monotonic_ns, the C core's clock)
        with _LIVE_LOCK:
            _LIVE_PROCESSES.add(self)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL and reap (a crash, as far as the other roles can tell)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._forget()

    def stop(self, grace_s: float = 2.0) -> None:
        """Ask to stop (SIGTERM), then SIGKILL after ``grace_s``; reaped either way."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self._forget()

    def _forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE_PROCESSES.discard(self)

    def describe_exit(self) -> str:
        """How it ended, in words: killed by which signal, or the status and its last line."""
        code = self.proc.returncode
        who = f"role process {self.group.label} (pid {self.pid})"
        if code is None:
            return f"{who} is still running"
        if code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            return f"{who} was killed by {sig}"
        return f"{who} exited with status {code}: {self.last_error_line()}"

    def last_error_line(self) -> str:
        self.err.seek(0)
        lines = self.err.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def wait_result(self, timeout: float) -> RoleResult:
        import subprocess

        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RoleProcessError(f"role process {self.group.label} (pid {self.pid}) did not finish "
                                   f"in {timeout:.0f}s", "see the watchdog settings; the run was stopped") from None
        self._forget()
        if self.proc.returncode != 0:
            raise RoleProcessError(self.describe_exit(), "see the message; the run was stopped")
        return self.result()

    def result(self) -> RoleResult:
        """The results the (finished) child wrote."""
        import json

        with os.fdopen(os.dup(self.out_fd), "rb") as f:
            f.seek(0)
            with np.load(f) as z:
                meta = json.loads(bytes(z["__stats__"]).decode())
                recs = {k: z[k] for k in z.files if k != "__stats__"}
        self.close()
        return RoleResult(int(meta["rc"]), meta["stats"], recs)

    def close(self) -> None:
        if self.out_fd >= 0:
            os.close(self.out_fd)
            self.out_fd = -1
        self.err.close()


def _private_result_file(workdir: str | None) -> int:
    """A read-write descriptor of a new, already unlinked file made in a private directory."""
    d = tempfile.mkdtemp(prefix="cxl-harness-roles-", dir=workdir)
    try:
        return open_private(Path(d) / "roles.npz", unlink=True)
    finally:
        os.rmdir(d)


def open_private(path: Path, unlink: bool = False) -> int:
    """Create ``path`` for this process only: O_EXCL (never an existing file) and O_NOFOLLOW
    (never through a symbolic link), mode 0600. ``unlink`` removes the name at once."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise RegionError(f"{path} already exists (a file or a planted link)",
                          "results are never written through an existing name; remove it") from None
    if unlink:
        os.unlink(path)
    return fd


def start_role_processes(path: str, size: int, cfg: LogConfig, groups: list[RoleGroup],
                         workdir: str | None = None) -> list[RoleProcess]:
    """Start one process per group on the region file ``path``; ``workdir`` is where their
    private result directories are made (default: the system's temporary directory)."""
    procs: list[RoleProcess] = []
    try:
        for g in groups:
            procs.append(RoleProcess(path, size, cfg, g, workdir))
    except BaseException:
        stop_role_processes(procs)
        raise
    return procs


def stop_role_processes(procs: list[RoleProcess], grace_s: float = 2.0) -> None:
    """Stop every process of ``procs`` at once (SIGTERM to all, then SIGKILL) and reap them."""
    for p in procs:
        if p.proc.poll() is None:
            p.proc.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.stop(max(0.0, deadline - time.monotonic()))
        p.close()


def supervise(procs: list[RoleProcess], timeout: float, poll_s: float = 0.01,
              expect_killed: RoleProcess | None = None) -> list[RoleResult]:
    """Wait for every role process. The first one that dies or fails stops all the others at
    once and raises RoleProcessError naming it (role, PID, signal or status); so does a run
    past ``timeout``, and so does any exception here (Ctrl-C): no child is left running.
    ``expect_killed`` is the one process an injected crash SIGKILLs: its death is the expected
    outcome (the time it was seen is kept in ``died_ns``), and it has no result."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            codes = [p.proc.poll() for p in procs]
            if expect_killed is not None and expect_killed in procs:
                i = procs.index(expect_killed)
                if codes[i] == -signal.SIGKILL:
                    expect_killed.died_ns = time.monotonic_ns()
                    expect_killed.proc.wait()
                    expect_killed._forget()
                    expect_killed.close()
                    procs = procs[:i] + procs[i + 1:]
                    codes = codes[:i] + codes[i + 1:]
                elif codes[i] == 0:
                    raise RoleProcessError(f"{expect_killed.describe_exit()}: it was to be killed by "
                                           "the injected crash, and finished instead",
                                           "the crash point lies beyond what the role reaches; "
                                           "use a smaller WHEN")
            failed = [p for p, c in zip(procs, codes) if c not in (None, 0)]
            if failed:
                first = min(failed, key=lambda p: p.proc.returncode if p.proc.returncode < 0 else 1 << 30)
                others = len(procs) - 1
                raise RoleProcessError(
                    f"{first.describe_exit()}; stopped the other {others} role process"
                    f"{'es' if others != 1 else ''} and released the region",
                    "a role process should never die: look for the OOM killer (dmesg) or who sent "
                    "the signal, then rerun")
            if all(c == 0 for c in codes):
                return [p.result() for p in procs]
            if time.monotonic() > deadline:
                raise RoleProcessError(f"the role processes did not finish in {timeout:.0f}s",
                                       "see the watchdog settings; the run was stopped")
            time.sleep(poll_s)
    finally:
        stop_role_processes(procs)


_MAX_FIELDS = ("last_publish_ns", "last_ack_ns", "end_ns", "committed_seq", "messages_acked",
               "batches_acked", "stalled")


_LISTED = ("corrupt_off", "corrupt_val", "corrupt_kind")


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-process statistics: counts add up, frontiers and times take the max, the
    listed corrupt values are concatenated (the first few of all)."""
    out: dict[str, Any] = {}
    placed = [p["placement"] for p in parts if p.get("placement")]
    listed: dict[str, list[int]] = {k: [] for k in _LISTED}
    for part in parts:
        n = int(part.get("corrupt_listed", 0))
        for k in _LISTED:
            if k in part:
                listed[k].extend(part[k][:n])
        for k, v in part.items():
            if k == "placement" or k in _LISTED:
                continue
            if k not in out:
                out[k] = list(v) if isinstance(v, list) else v
            elif isinstance(v, list):
                out[k] = [a + b for a, b in zip(out[k], v)]
            elif k in _MAX_FIELDS or k == "stall_role":
                out[k] = max(out[k], v) if k != "stall_role" else out[k] | v
            elif k == "first_publish_ns":
                out[k] = min(x for x in (out[k], v) if x) if (out[k] or v) else 0
            else:
                out[k] = out[k] + v
    if placed:  # each role process placed its own roles
        out["placement"] = {"scheduling": "processes", "requested": placed[0].get("requested"),
                            "threads": sum(p.get("threads", 0) for p in placed),
                            "roles": [r for p in placed for r in p.get("roles", [])],
                            "processes": placed}
    for k in _LISTED:
        if any(k in part for part in parts):
            out[k] = (listed[k] + [0] * 8)[:8]
    if "corrupt_listed" in out:
        out["corrupt_listed"] = min(8, len(listed["corrupt_off"]))
    return out


def merge_records(parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    out: dict[str, list[Any]] = {}
    for part in parts:
        for k, arr in (part or {}).items():
            out.setdefault(k, []).append(arr)
    return {k: np.concatenate(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------
# Results


def latency_from_hist(hist: list[int]) -> Latency:
    counts = np.asarray(hist, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return Latency(0.0, 0.0, 0.0, 0)
    lows = np.array([_bucket_low(i) for i in range(len(counts))], dtype=np.float64)
    highs = np.array([_bucket_low(i + 1) for i in range(len(counts))], dtype=np.float64)
    mids = (lows + highs) / 2
    cum = np.cumsum(counts) / total

    def pct(p: float) -> float:
        return float(mids[int(np.searchsorted(cum, p))])

    nz = counts > 0
    cdf = [(float(x), float(y)) for x, y in zip(highs[nz], cum[nz])]
    return Latency(pct(0.5), pct(0.99), pct(0.999), int(total), cdf)


def _bucket_low(i: int) -> int:
    """Lower bound (ns) of latency bucket i; mirrors lat_bucket() in cxl_log_int.h."""
    if i < 32:
        return i
    j = i - 32
    msb, sub = 5 + j // 16, j % 16
    return (16 + sub) << (msb - 4)


def build_result(cfg: LogConfig, stats: dict[str, Any], recs: dict[str, Any] | None,
                 region: RegionInfo, rc: int, check_history: bool, processes: int = 1) -> LogResult:
    from harness.invariants import run_checks

    start = stats["first_publish_ns"]
    end = stats["last_ack_ns"] if cfg.ack else stats["last_publish_ns"]
    if not end or end < start:
        end = stats["end_ns"]
    elapsed = max(1e-9, (end - start) / 1e9) if start else 0.0
    payload = int(stats["bytes_published"])
    subs = cfg.subscribers
    lat = latency_from_hist(stats["lat_hist"])
    checks = run_checks(cfg, stats, recs, check_history)
    cfg_d = asdict(cfg)
    cfg_d.update(msgs_per_batch=cfg.msgs_per_batch, total_batches=cfg.total_batches, processes=processes)
    counters = {k: v for k, v in stats.items() if isinstance(v, int)}
    return LogResult(
        order=cfg.order, variant=cfg.variant, brokers=cfg.brokers, ack=cfg.ack,
        messages_published=int(stats["messages_published"]),
        messages_acked=int(stats["messages_acked"]),
        messages_ordered=int(stats["messages_ordered"]),
        messages_delivered=[int(x) for x in stats["sub_messages"][:subs]],
        batches=int(stats["batches_published"]), batches_ordered=int(stats["batches_ordered"]),
        batches_lost=int(stats["batches_lost"]),
        payload_bytes=payload, elapsed_s=elapsed,
        throughput_mib_s=payload / elapsed / 2**20 if elapsed else 0.0,
        messages_per_s=stats["messages_published"] / elapsed if elapsed else 0.0,
        batches_per_s=stats["batches_published"] / elapsed if elapsed else 0.0,
        latency=lat, region=region.to_dict(), counters=counters, checks=checks, config=cfg_d,
        stalled=bool(stats["stalled"]) or rc > 0, records=recs,
        placement=stats.get("placement") or {},
    )
