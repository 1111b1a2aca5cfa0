"""Loss and ACK semantics (a slot is declared lost only when its publisher really stopped; ACK
never covers a lost slot; lost slots never block the ring; the verdict counts losses), the
ownership leases of the sequencer and scanners, re-running a handle, impossible sizes, and
dirty starts."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from harness.errors import ConfigError, RegionError
from harness.log import LOSS_TIMEOUT, ROLE_ALL, ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, LogHandle, attach_check, c_config, format_region, layout_size
from harness.runlog import build_result, run_log
from harness.native import load
from harness.region import Region

# cxl_layout.h
CTRL_SEQ_OWNER = 384                # cxl_ctrl_t.seq_owner
PROTO = 320                         # cxl_ctrl_t.proto: scanline at +24, publine at +32
OWNER_OWNER, OWNER_HOST, OWNER_PID = 0, 8, 16
SUB_RELEASED = 64                   # cxl_sub_line_t.released[]
SEQ_CONSUMED = 0                    # cxl_seq_line_t.consumed_through
C_NEXT_GLOBAL = 256


def _region(cfg: LogConfig) -> Region:
    region = Region.emulated((layout_size(cfg) + 4095) // 4096 * 4096)
    format_region(region, cfg)
    return region


def _buf(region: Region) -> Any:
    return region.native.ffi.buffer(region.base, region.size)


def _get(region: Region, off: int, fmt: str = "<Q") -> int:
    return int(struct.unpack_from(fmt, _buf(region), off)[0])


def _put(region: Region, off: int, value: int, fmt: str = "<Q") -> None:
    struct.pack_into(fmt, _buf(region), off, value)


def _offsets(region: Region) -> tuple[int, ...]:
    return struct.unpack_from("<8Q", _buf(region), 64)


def _check(r: Any, cid: str) -> Any:
    return next(c for c in r.checks if c.id == cid)


# ------------------------------------------------------------------ the false loss (issue 13)

@pytest.mark.parametrize("brokers", [2, 4])
def test_slow_subscriber_and_big_batches_declare_nothing_lost(brokers: int) -> None:
    """8 MiB batches, 2-slot rings, slot_timeout_ms=2 and a verifying subscriber: publishers are
    held back by the ring all the time, none of them stops. Before: 8 of 32 declared lost, ACK
    covering all 32 and PASS (4 brokers), or a deadlock (2 brokers)."""
    cfg = LogConfig(order=2, brokers=brokers, subscribers=1, msg_size=1024, batch_bytes=8 << 20,
                    total_bytes=32 * (8 << 20), ack=1, epoch_us=50, pbr_slots=2, goi_slots=64,
                    slot_timeout_ms=2.0, watchdog_s=20.0, record=True)
    r = run_log(cfg)
    assert r.batches_lost == 0, _check(r, "no-unexpected-loss").detail
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    assert r.counters["batches_acked"] == r.batches == 32
    assert r.counters["backpressure_waits"] > 0


# ------------------------------------------------------------------ a crashed publisher

def _crash_cfg(**kw: Any) -> LogConfig:
    base = dict(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=512,
                total_bytes=2 * 40 * 512, ack=1, epoch_us=200, pbr_slots=8, goi_slots=256,
                slot_timeout_ms=50.0, watchdog_s=1.0, record=True, crash_publisher=1,
                crash_after=5)
    base.update(kw)
    return LogConfig(**base)


def test_crashed_publisher_thread_loss_is_named_and_expected() -> None:
    cfg = _crash_cfg()
    r = run_log(cfg)
    assert r.batches_lost == 1
    loss = r.records["loss"]
    assert [(int(x["broker"]), int(x["pbr_index"]), int(x["client"]), int(x["reason"]), int(x["alive"]))
            for x in loss] == [(1, 5, 1, LOSS_TIMEOUT, 0)]
    named = _check(r, "crash-losses-named")
    assert named.ok and "broker 1 slot 5 (publisher 1)" in named.detail
    assert named.counterexamples[0]["expected"] is True
    assert _check(r, "no-unexpected-loss").ok
    # broker 0 complete and ordered; broker 1 up to the crash; the run is judged as the crash
    # made it (the watchdog ended it: broker 1 can never finish)
    assert r.stalled
    assert _check(r, "run-completed").ok
    assert r.ok, [(c.id, c.detail) for c in r.failed()]


@pytest.mark.parametrize("ppb", [1, 2])
def test_order0_crashed_publisher_loss_keeps_its_position(ppb: int) -> None:
    """Order 0: the broker's acker declares the crashed publisher's slot lost and its frontier
    moves past it; the slot's position (its ring index) stays empty and subscribers skip it.
    The history checks count that position as resolved (before, dense-prefix failed every such
    run, and with two publishers per broker delivery-contiguous too)."""
    cfg = _crash_cfg(order=0, publishers_per_broker=ppb, pbr_slots=128)
    r = run_log(cfg)
    assert r.batches_lost == 1
    (loss,) = r.records["loss"]
    assert int(loss["client"]) == 1 and int(loss["broker"]) == 1 // ppb  # publisher 1's slot
    order = r.records["order"]
    mine = order[order["broker"] == int(loss["broker"])]
    assert int(loss["pbr_index"]) not in set(mine["seq"].tolist())  # the position stays empty
    assert (mine["seq"] == mine["pbr_index"]).all()                 # positions are ring indexes
    assert _check(r, "dense-prefix").ok and _check(r, "delivery-contiguous").ok
    assert r.ok, [(c.id, c.detail) for c in r.failed()]


def test_loss_of_a_publisher_not_crashed_on_purpose_fails_the_run() -> None:
    """The same crash, judged as if nobody had been crashed on purpose: the loss fails it."""
    cfg = _crash_cfg()
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            rc = h.run()
            raw = h.stats()
            recs = h.records()
        finally:
            h.close()
        judged = build_result(replace(cfg, crash_publisher=-1, crash_after=0), raw, recs,
                              region.info(), rc, True)
    bad = _check(judged, "no-unexpected-loss")
    assert not bad.ok
    assert bad.counterexamples[0]["broker"] == 1 and bad.counterexamples[0]["pbr_index"] == 5
    assert not judged.ok


def test_ack_never_covers_the_lost_slot() -> None:
    cfg = _crash_cfg(ack=2)
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            h.run()
            st = h.stats()
        finally:
            h.close()
        seql = _offsets(region)[1]
        frontier_b1 = _get(region, seql + 64 * 1 + 24)  # durable_batches: slots resolved
    assert frontier_b1 == 6                               # slots 0..5 resolved, 5 of them lost
    assert st["batches_acked"] == st["batches_ordered"] == 40 + 5
    assert st["messages_acked"] == st["messages_ordered"]


def _lost_without_publisher(claimed: int, timeout_ms: float) -> tuple[Region, LogConfig, dict[str, Any], Any]:
    """Broker 0's slots 0..claimed-1 are claimed and never committed, nobody holds them (their
    publisher is gone): the scanner declares each lost after its own timeout."""
    cfg = LogConfig(order=2, brokers=1, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=16 * 256, ack=1, epoch_us=100, pbr_slots=2, goi_slots=16,
                    slot_timeout_ms=timeout_ms, watchdog_s=0.3 + 3 * timeout_ms / 1000, record=True)
    region = _region(cfg)
    _put(region, _offsets(region)[0], claimed)  # the claim counter of broker 0
    h = LogHandle(region, cfg)
    try:
        h.run(ROLE_SCANNERS | ROLE_SUBSCRIBERS)
        st, recs = h.stats(), h.records()
    finally:
        h.close()
    return region, cfg, st, recs


def test_each_pending_slot_gets_its_own_timeout() -> None:
    region, cfg, st, recs = _lost_without_publisher(3, 100.0)
    with region:
        t = np.sort(recs["loss"]["ns"].astype(np.int64))
    assert len(t) == 3
    # before: all three within a microsecond of each other (the clock never restarted)
    assert (np.diff(t) >= 0.9 * cfg.slot_timeout_ms * 1e6).all(), np.diff(t)


def test_lost_slots_are_released_for_reuse() -> None:
    region, cfg, st, recs = _lost_without_publisher(2, 20.0)
    with region:
        off = _offsets(region)
        consumed = _get(region, off[1] + SEQ_CONSUMED)
        released = _get(region, off[2] + SUB_RELEASED)
    assert st["batches_lost"] == 2 and consumed == 2
    assert released == 2  # before: 0, and a 2-slot ring was blocked for good


# ------------------------------------------------------------------ leases (one sequencer)

def _file_region(tmp_path: Any, cfg: LogConfig) -> Region:
    region = Region.file(tmp_path / "region", (layout_size(cfg) + 4095) // 4096 * 4096, create=True)
    format_region(region, cfg)
    return region


def test_second_sequencer_on_a_live_region_is_refused_then_allowed_after_it_ends(tmp_path: Any) -> None:
    cfg = LogConfig(order=2, brokers=1, subscribers=0, msg_size=64, batch_bytes=256,
                    total_bytes=8 * 256, ack=0, pbr_slots=4, goi_slots=16, watchdog_s=1.0, record=False)
    with _file_region(tmp_path, cfg) as region:
        first, second = LogHandle(region, cfg), LogHandle(region, cfg)
        try:
            t = threading.Thread(target=first.run, args=(ROLE_SCANNERS,))  # waits for publishers
            t.start()
            deadline = time.monotonic() + 5
            while _get(region, CTRL_SEQ_OWNER) == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            host = _get(region, CTRL_SEQ_OWNER + OWNER_HOST)
            assert _get(region, CTRL_SEQ_OWNER + OWNER_PID) == os.getpid()
            with pytest.raises(RegionError, match="sequencer of this region is already running") as ei:
                second.run(ROLE_SCANNERS)
            assert "\n" not in str(ei.value)
            t.join()
            assert _get(region, CTRL_SEQ_OWNER) == 0  # released when its run ended
            # a lease left by a process that is gone (same host) is taken over
            dead = subprocess.Popen([sys.executable, "-c", "pass"])
            dead.wait()
            _put(region, CTRL_SEQ_OWNER + OWNER_OWNER, 0x1234)
            _put(region, CTRL_SEQ_OWNER + OWNER_HOST, host)
            _put(region, CTRL_SEQ_OWNER + OWNER_PID, dead.pid)
            second.run(ROLE_PUBLISHERS | ROLE_SCANNERS)
            assert second.stats()["batches_ordered"] == cfg.total_batches
            # ... but one held by a live process is not
            live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            try:
                _put(region, CTRL_SEQ_OWNER + OWNER_OWNER, 0x5678)
                _put(region, CTRL_SEQ_OWNER + OWNER_PID, live.pid)
                with pytest.raises(RegionError, match=f"pid {live.pid}"):
                    first.run(ROLE_SCANNERS)
            finally:
                live.kill()
                live.wait()
        finally:
            first.close()
            second.close()


@pytest.mark.parametrize("other,what", [(dict(ack=2), "ack_level"),
                                        (dict(publishers_per_broker=2), "publishers_per_broker"),
                                        (dict(total_bytes=4 * 16 * 256), "batches_per_publisher")])
def test_attach_covers_protocol_parameters(other: dict[str, Any], what: str) -> None:
    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 16 * 256, ack=1, pbr_slots=16, goi_slots=64)
    with _region(cfg) as region:
        attach_check(region, cfg)
        with pytest.raises(RegionError, match=f"protocol mismatch on {what}"):
            attach_check(region, replace(cfg, **other))


# ------------------------------------------------------------------ re-running a handle

def test_handle_runs_again_after_a_watchdog_stop() -> None:
    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 32 * 256, ack=1, pbr_slots=4, goi_slots=64, watchdog_s=0.3,
                    record=False)
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            assert h.run(ROLE_PUBLISHERS) == 1          # the ring fills: the watchdog stops it
            assert h.stats()["stalled"] == 1
            rc = h.run(ROLE_ALL)                        # before: returned at once, stop still set
            st = h.stats()
        finally:
            h.close()
        r = build_result(cfg, st, None, region.info(), rc, False)
    assert rc == 0 and st["stalled"] == 0
    assert st["batches_published"] == st["batches_ordered"] == cfg.total_batches
    assert r.ok, [(c.id, c.detail) for c in r.failed()]


# ------------------------------------------------------------------ impossible sizes

def test_layout_arithmetic_refuses_wrapping_sizes() -> None:
    native = load()
    cfg = LogConfig(order=2, brokers=8, pbr_slots=1 << 30, goi_slots=1 << 40, batch_bytes=1 << 20,
                    msg_size=1 << 20)
    c = c_config(native, cfg)
    assert native.lib.cxl_layout_size(c) > 0  # huge, but it fits in 64 bits
    c.goi_slots = 1 << 58                        # before: an 8,704-byte layout (then a heap overflow)
    assert native.lib.cxl_layout_size(c) == 0
    c.goi_slots = 1 << 16
    c.batches_per_publisher = 1 << 62
    assert native.lib.cxl_layout_size(c) == 0


@pytest.mark.parametrize("kw,name", [(dict(goi_slots=1 << 58), "goi_slots"),
                                     (dict(pbr_slots=1 << 32), "pbr_slots"),
                                     (dict(seed=-1), "seed"),
                                     (dict(total_bytes=1 << 80, batch_bytes=64, msg_size=64), "total_bytes"),
                                     (dict(crash_publisher=9), "crash_publisher")])
def test_log_config_refuses_impossible_values(kw: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=name) as ei:
        LogConfig(**kw)
    assert "\n" not in str(ei.value)


# ------------------------------------------------------------------ dirty start

def _dirty_cfg(**kw: Any) -> LogConfig:
    base = dict(order=2, brokers=2, subscribers=2, msg_size=64, batch_bytes=512,
                total_bytes=2 * 64 * 512, ack=2, epoch_us=100, pbr_slots=8, goi_slots=32,
                slot_timeout_ms=200.0, watchdog_s=0.5, record=True)
    base.update(kw)
    return LogConfig(**base)


def _dirty_run(cfg: LogConfig, region: Region) -> Any:
    """Format, then let the readers look at every ring and the GOI first (scanners and
    subscribers alone, until the watchdog ends them): whatever the region held before must not
    be taken for a record. Then the whole run, on the same handle."""
    format_region(region, cfg)
    h = LogHandle(region, cfg)
    try:
        assert h.run(ROLE_SCANNERS | ROLE_SUBSCRIBERS) == 1  # nothing published yet: a stall
        rc = h.run(ROLE_ALL)
        stats, recs = h.stats(), h.records()
    finally:
        h.close()
    return build_result(cfg, stats, recs, region.info(), rc, True)


def test_region_holding_random_bytes_runs_correctly_once_formatted() -> None:
    cfg = _dirty_cfg()
    size = (layout_size(cfg) + 4095) // 4096 * 4096
    with Region.emulated(size) as region:
        _buf(region)[:] = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()
        r = _dirty_run(cfg, region)
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    assert r.batches_lost == 0 and r.messages_delivered == [r.messages_published] * 2
    assert r.counters["foreign_tokens"] == r.counters["corrupt_goi"] == r.counters["corrupt_ctrl"] == 0


@pytest.mark.parametrize("order", [0, 2])
def test_region_holding_a_previous_run_runs_correctly_once_formatted(order: int) -> None:
    first = _dirty_cfg(order=order, seed=3, total_bytes=2 * 61 * 512)  # ends mid-lap
    second = _dirty_cfg(order=order, seed=4, total_bytes=2 * 48 * 512)
    size = (max(layout_size(first), layout_size(second)) + 4095) // 4096 * 4096
    with Region.emulated(size) as region:
        assert run_log(first, region=region).ok
        r = _dirty_run(second, region)  # stale tokens, frontiers, leases of the first run
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    assert r.batches == second.total_batches and r.batches_lost == 0
    assert r.counters["foreign_tokens"] == 0


# ------------------------------------------------------------------ slow or crashed holder

PUB_HOLDING, PUB_BEAT, PUB_HOST, PUB_PID, PUB_TID = 0, 8, 16, 24, 28


def _host_identity() -> int:
    """This host's identity as the C core writes it (left in a lease line after a run)."""
    cfg = LogConfig(order=2, brokers=1, subscribers=0, msg_size=64, batch_bytes=256,
                    total_bytes=256, ack=0, pbr_slots=2, goi_slots=4, record=False)
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            h.run()
        finally:
            h.close()
        return _get(region, CTRL_SEQ_OWNER + OWNER_HOST)


@pytest.mark.parametrize("holder", ["alive", "gone"])
def test_a_holder_whose_thread_exists_is_slow_not_crashed(holder: str) -> None:
    """Slot 0 is claimed and its holder's beat stands still for 10 timeouts. A holder thread
    that still exists on this host is slow: nothing declared lost (before: lost after one
    timeout). One whose thread is gone is crashed: the slot is declared lost, naming it."""
    host = _host_identity()
    cfg = LogConfig(order=2, brokers=1, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=8 * 256, ack=1, epoch_us=100, pbr_slots=2, goi_slots=16,
                    slot_timeout_ms=20.0, watchdog_s=0.4, record=True)
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    tid = threading.get_native_id() if holder == "alive" else ended.native_id
    with _region(cfg) as region:
        publine = _get(region, PROTO + 32)
        _put(region, _offsets(region)[0], 1)  # broker 0: slot 0 claimed
        _put(region, publine + PUB_HOLDING, 1)
        _put(region, publine + PUB_BEAT, 5)
        _put(region, publine + PUB_HOST, host)
        _put(region, publine + PUB_PID, os.getpid(), "<I")
        _put(region, publine + PUB_TID, tid or 0, "<I")
        h = LogHandle(region, cfg)
        try:
            h.run(ROLE_SCANNERS | ROLE_SUBSCRIBERS)  # the watchdog ends it: nothing to order
            st, recs = h.stats(), h.records()
        finally:
            h.close()
    if holder == "alive":
        assert st["batches_lost"] == 0 and len(recs["loss"]) == 0
    else:
        assert st["batches_lost"] == 1
        assert [(int(x["pbr_index"]), int(x["client"])) for x in recs["loss"]] == [(0, 0)]


def test_second_scanner_for_a_broker_is_refused(tmp_path: Any) -> None:
    """Order 0: the broker's acker is its scanner; one per broker."""
    cfg = LogConfig(order=0, brokers=2, subscribers=0, msg_size=64, batch_bytes=256,
                    total_bytes=8 * 256, ack=1, pbr_slots=4, goi_slots=16, watchdog_s=1.0, record=False)
    with _file_region(tmp_path, cfg) as region:
        scanline = _get(region, PROTO + 24)
        first, second = LogHandle(region, cfg), LogHandle(region, cfg)
        try:
            t = threading.Thread(target=first.run, args=(ROLE_SCANNERS,))
            t.start()
            deadline = time.monotonic() + 5
            while _get(region, scanline + 128) == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            with pytest.raises(RegionError, match="scanner of broker 0 of this region is already running"):
                second.run(ROLE_SCANNERS)
            t.join()
        finally:
            first.close()
            second.close()


def test_history_of_a_false_loss_is_a_lost_write() -> None:
    """The run records of a batch its publisher completed, declared lost anyway and so never
    ordered or delivered: with the loss marked as a false one (publisher alive) the history's
    no-lost-ack check fails; a loss of a stopped publisher is excused there (and judged by the
    in-run no-unexpected-loss check)."""
    from harness.history import check_history
    from harness.invariants import history_from_records

    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 16 * 256, ack=1, pbr_slots=8, goi_slots=64, record=True)
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            h.run()
            recs = h.records()
        finally:
            h.close()
    victim = (1, 7)  # broker 1, slot 7: drop its order and delivery, add a loss record

    def planted(alive: int) -> dict[str, Any]:
        out = dict(recs)
        o = recs["order"]
        out["order"] = o[~((o["broker"] == victim[0]) & (o["pbr_index"] == victim[1]))]
        d = recs["deliver0"]
        gone = (d["broker"] == victim[0]) & (d["pbr_index"] == victim[1])
        out["deliver0"] = d[~gone]
        loss = np.zeros(1, dtype=recs["loss"].dtype)
        loss["ns"], loss["broker"], loss["pbr_index"] = int(d["ns"][gone][0]), victim[0], victim[1]
        loss["client"], loss["reason"], loss["alive"] = 1, LOSS_TIMEOUT, alive
        out["loss"] = loss
        return out

    def verdict(r: dict[str, Any]) -> bool:
        report = check_history(history_from_records(cfg, r), cfg.order)
        return next(x.passed for x in report.results if x.check_id == "no-lost-ack")

    assert verdict(recs)
    assert verdict(planted(alive=0))
    assert not verdict(planted(alive=1))
