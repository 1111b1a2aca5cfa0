"""The C log over a region: the C configuration, format and attach, and LogHandle, which runs
the roles (one C call in a worker thread, interruptible) and reads statistics and records."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from harness.errors import ConfigError, CoreError, RegionError
from harness.log.config import (F_DETERMINISTIC, MAX_ROLES, REC_ACK, REC_COMMIT, REC_DELIVER, REC_LOSS,
                                REC_ORDER, REC_PUBLISH, ROLE_ALL, ROLE_KIND_NAMES, VARIANTS, LogConfig)
from harness.log.live import LIVE_HANDLES, LIVE_LOCK
from harness.native import Native, load
from harness.native import log as clog
from harness.order5 import gap_policy_code
from harness.region import Region

def c_fields(cfg: LogConfig, fault: int = 0, deterministic: bool = False) -> dict[str, int]:
    """The fields of the C configuration (``cxl_log_cfg_t``) for ``cfg``."""
    c = {
        "brokers": cfg.brokers,
        "publishers_per_broker": cfg.publishers_per_broker,
        "subscribers": cfg.subscribers,
        "order": cfg.order,
        "variant": VARIANTS[cfg.variant],
        "ack_level": cfg.ack,
        "pbr_slots": cfg.pbr_slots,
        "msg_size": cfg.msg_size,
        "msgs_per_batch": cfg.msgs_per_batch,
        "epoch_us": cfg.epoch_us,
        "goi_slots": cfg.goi_slots,
        "batches_per_publisher": cfg.batches_per_publisher,
        "seed": cfg.seed,
        "flags": cfg.flags() | (F_DETERMINISTIC if deterministic else 0),
        "fault": fault,
        "slot_timeout_ns": int(cfg.slot_timeout_ms * 1e6),
        "beat_bytes": cfg.beat_bytes,
        "watchdog_ns": int(cfg.watchdog_s * 1e9),
        "record_capacity": cfg.total_batches + 16 if cfg.recording else 0,
        "crash_client": cfg.crash_publisher + 1,
        "crash_kill": 1 if cfg.crash_kill else 0,
        "crash_after": cfg.crash_after,
        "crash_scanner": cfg.crash_scanner + 1,
        "crash_subscriber": cfg.crash_subscriber + 1,
    }
    if cfg.order == 5:
        c.update(gap_policy=gap_policy_code(cfg.gap_policy), client_spread=cfg.client_spread,
                 gap_timeout_ns=max(1, int(cfg.gap_timeout_ms * 1e6)), hold_cap=cfg.hold_cap,
                 gap_client=cfg.gap_client + 1, gap_seq=cfg.gap_seq)
    return c


def c_config(native: Native, cfg: LogConfig, fault: int = 0, deterministic: bool = False) -> Any:
    """The C configuration for ``cfg`` in ``native``'s build: an opaque handle."""
    return clog.log_cfg(native, c_fields(cfg, fault, deterministic))


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
    size = clog.layout_size(native, c_config(native, cfg))
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
    try:
        clog.layout_init(native, region.base, region.size, c)
    except CoreError:
        raise RegionError("could not format the region", "check the configuration") from None


def attach_check(region: Region, cfg: LogConfig) -> None:
    """Refuse a region whose magic, version or geometry do not match ``cfg``."""
    native = region.native
    try:
        clog.layout_attach(native, region.base, region.size, c_config(native, cfg))
    except CoreError as exc:
        raise RegionError(f"cannot attach: {exc.text}",
                          "format the region for this configuration, or use the matching one") from None


class LogHandle:
    """A cxl_log_t over a region; freed on close."""

    def __init__(self, region: Region, cfg: LogConfig, fault: int = 0, deterministic: bool = False):
        self.native = region.native
        self.cfg = cfg
        self.ccfg = c_config(self.native, cfg, fault, deterministic)
        self.ptr: Any = None  # the C log (cxl_log_t *), opaque
        try:
            self.ptr = clog.log_new(self.native, region.base, region.size, self.ccfg)
        except CoreError as exc:
            raise RegionError(f"cannot attach: {exc.text}",
                              "format the region for this configuration") from None
        self._place()

    def _place(self) -> None:
        """Apply the configuration's scheduling: bounded pinned workers or thread per role."""
        cpus = sorted(os.sched_getaffinity(0))[: clog.max_workers(self.native)]
        # A crashed role is told from a slow one by its thread being gone: an injected crash
        # therefore needs every role on a thread of its own.
        pooled = self.cfg.scheduling == "workers" and not self.cfg.crash_role
        workers = len(cpus) if pooled else 0
        if not clog.set_workers(self.native, self.ptr, workers, cpus):
            raise ConfigError(f"cannot place roles on CPUs {cpus}", "run with scheduling='threads'")

    def placement(self) -> dict[str, Any]:
        """Where the roles of the last run ran (worker thread and pinned CPU per role)."""
        seen: dict[int, int] = {}
        roles = []
        for p in clog.placement(self.native, self.ptr, MAX_ROLES):
            index = seen.get(p.kind, 0)
            seen[p.kind] = index + 1
            roles.append({"role": f"{ROLE_KIND_NAMES.get(p.kind, p.kind)} {index}",
                          "worker": p.worker, "cpu": p.cpu})
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
            reason = clog.log_error(self.native, self.ptr)
            raise RegionError(f"cannot run: {reason}",
                              "one sequencer and one scanner per broker may run on a region")
        return rc

    def _run_c(self, roles: int, pub_brokers: int, sub_mask: int, progress: bool) -> int:
        native, log = self.native, self.ptr
        rc: list[int] = []
        done = threading.Event()  # not Thread.join: an interrupted join may call a live thread ended

        def work() -> None:
            try:
                rc.append(clog.run_subset(native, log, roles, pub_brokers, sub_mask))
            finally:
                done.set()

        worker = threading.Thread(target=work, name="cxl-log-run")
        bar = None
        with LIVE_LOCK:
            LIVE_HANDLES.add(self)
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
                    bar.n = clog.progress(native, log)
                    bar.refresh()
        except BaseException:
            # stop and wait for the C call to return before anything is freed; asked again in
            # case the run had not yet started when the first request came
            while not done.is_set():
                clog.request_stop(native, log)
                done.wait(0.05)
            raise
        finally:
            with LIVE_LOCK:
                LIVE_HANDLES.discard(self)
            if bar is not None:
                bar.close()
        worker.join()
        return rc[0]

    def progress(self) -> int:
        """Messages ordered (or acknowledged) so far: what a progress display shows."""
        return clog.progress(self.native, self.ptr) if self.ptr is not None else 0

    def request_stop(self) -> None:
        """Ask the running roles to stop (safe from any thread; the run then returns)."""
        if self.ptr is not None:
            clog.request_stop(self.native, self.ptr)

    def stats(self) -> dict[str, Any]:
        out = clog.stats(self.native, self.ptr)
        out["placement"] = self.placement()
        return out

    def records(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kinds: dict[str, tuple[int, str]] = {"publish": (REC_PUBLISH, "cxl_rec_publish_t"), "order": (REC_ORDER, "cxl_rec_order_t"),
                 "commit": (REC_COMMIT, "cxl_rec_frontier_t"), "ack": (REC_ACK, "cxl_rec_frontier_t"),
                 "loss": (REC_LOSS, "cxl_rec_loss_t")}
        for k in range(self.cfg.subscribers):
            kinds[f"deliver{k}"] = (REC_DELIVER + k, "cxl_rec_deliver_t")
        for name, (kind, ctype) in kinds.items():
            arr = clog.records(self.native, self.ptr, kind, ctype)
            if arr is not None:
                out[name] = arr[arr["msg_count"] > 0] if name == "publish" else arr
        return out

    def close(self) -> None:
        if self.ptr is not None:
            clog.log_free(self.native, self.ptr)
            self.ptr = None


def region_size(cfg: LogConfig) -> int:
    need = layout_size(cfg)
    return (need + (2 << 20) - 1) // (2 << 20) * (2 << 20)
