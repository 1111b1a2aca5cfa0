"""Full rings and slow consumers: publishers back off, never overwrite; a stalled sequencer is
reported by the progress watchdog within its time, never waited on forever."""

from __future__ import annotations

import struct
import time

import pytest

from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, LogConfig, LogHandle, format_region, layout_size
from harness.runlog import build_result, run_log
from harness.region import Region

H_SLOT_ABS, H_TOKEN = 0, 120


@pytest.mark.parametrize("order,variant,pbr_slots,ack", [
    (2, "per-scanner", 2, 1), (2, "shared-mutex", 4, 2), (2, "per-scanner", 4, 0), (0, "per-scanner", 2, 1),
])
def test_tiny_rings_and_slow_consumer_back_off_and_stay_correct(order: int, variant: str, pbr_slots: int,
                                                                ack: int) -> None:
    cfg = LogConfig(order=order, variant=variant, brokers=2, subscribers=1, msg_size=128, batch_bytes=512,
                    total_bytes=2 * 120 * 512, ack=ack, epoch_us=1000, pbr_slots=pbr_slots, goi_slots=8,
                    watchdog_s=20.0, record=True)
    r = run_log(cfg)
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    assert r.counters["backpressure_waits"] > 0  # publishers did wait for the ring
    assert r.batches == cfg.total_batches and r.batches_lost == 0
    assert r.messages_delivered == [r.messages_published]
    # the history validator saw every batch once, in place: nothing was overwritten unread
    assert {c.id for c in r.checks if c.group == "history"}
    # with a ring of pbr_slots, the ring wrapped many times
    assert cfg.total_batches // cfg.brokers >= 20 * pbr_slots


def _region(cfg: LogConfig) -> Region:
    region = Region.emulated((layout_size(cfg) + 4095) // 4096 * 4096)
    format_region(region, cfg)
    return region


@pytest.mark.parametrize("ack", [1, 2])
def test_stalled_sequencer_is_reported_by_the_watchdog(ack: int) -> None:
    """Publishers with ACK 1 but no scanner/sequencer: the ring fills, nothing is ever
    acknowledged. The watchdog stops the run and the result says so."""
    cfg = LogConfig(order=2, brokers=2, subscribers=0, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 64 * 256, ack=ack, pbr_slots=4, watchdog_s=0.4, record=False)
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            t0 = time.monotonic()
            rc = h.run(ROLE_PUBLISHERS)
            elapsed = time.monotonic() - t0
            stats = h.stats()
        finally:
            h.close()
        r = build_result(cfg, stats, None, region.info(), rc, False)
        buf = region.native.ffi.buffer(region.base, region.size)
        pbr = struct.unpack_from("<8Q", buf, 64)[3]
        # never overwrite: exactly one ring's worth per broker, each slot still this lap's record
        assert stats["batches_published"] == cfg.brokers * cfg.pbr_slots
        for b in range(cfg.brokers):
            for s in range(cfg.pbr_slots):
                off = pbr + (b * cfg.pbr_slots + s) * 128
                assert struct.unpack_from("<Q", buf, off + H_SLOT_ABS)[0] == s
                assert struct.unpack_from("<Q", buf, off + H_TOKEN)[0] == s + 1
    assert r.stalled and stats["stalled"] == 1
    assert stats["stall_role"] & 0b1  # the publishers were still waiting
    assert 0.4 <= elapsed < 0.4 + 3.0
    failed = {c.id: c.detail for c in r.failed()}
    assert "run-completed" in failed and "publishers" in failed["run-completed"]
    assert stats["backpressure_waits"] > 0


def test_sequencer_without_subscribers_reading_is_reported() -> None:
    """Subscribers configured but not running: the GOI (8 entries) fills, the sequencer has no
    room and waits; the watchdog reports it with the roles still running."""
    cfg = LogConfig(order=2, brokers=1, subscribers=1, msg_size=64, batch_bytes=128,
                    total_bytes=64 * 128, ack=1, pbr_slots=64, goi_slots=8, watchdog_s=0.4, record=False)
    with _region(cfg) as region:
        h = LogHandle(region, cfg)
        try:
            t0 = time.monotonic()
            rc = h.run(ROLE_PUBLISHERS | ROLE_SCANNERS)
            elapsed = time.monotonic() - t0
            stats = h.stats()
        finally:
            h.close()
    assert rc != 0 and stats["stalled"] == 1
    assert stats["committed_seq"] == cfg.goi_slots  # never past what the subscriber can read
    assert stats["stall_role"] & 0b100  # the sequencer
    assert elapsed < 0.4 + 3.0
