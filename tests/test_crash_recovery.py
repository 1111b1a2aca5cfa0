"""Crashed roles in multi-process mode: each role group is its own OS process on a shared
region file; the test kills one with SIGKILL in the middle of the run.

* A publisher killed mid-run must not stall the other brokers: it claims a slot only once the
  ring has room, so only a slot it was writing when it died is resolved as lost (after
  ``slot_timeout_ms``, a loss record naming it); everything the other broker published is
  ordered and delivered, the global sequence stays dense, and the broker that can never
  finish is reported by the watchdog.
* A subscriber killed and restarted (``resume_subscribers=True``) continues from the position
  it last published: no gap, no duplicate.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, RoleGroup, format_region, layout_size, start_role_processes
from harness.region import Region

LOSS_TIMEOUT = 1  # cxl_rec_loss_t.reason: claimed, never committed


def region_file(tmp_path: Path, cfg: LogConfig) -> Region:
    size = (layout_size(cfg) + 4095) // 4096 * 4096
    region = Region.file(tmp_path / "region", size, create=True, lock=True)
    format_region(region, cfg)
    return region


def word(region: Region, off: int) -> int:
    return int(struct.unpack_from("<Q", region.native.ffi.buffer(region.base, region.size), off)[0])


def offsets(region: Region) -> tuple[int, ...]:
    return struct.unpack_from("<8Q", region.native.ffi.buffer(region.base, region.size), 64)


def wait_until(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_killed_publisher_loses_at_most_its_uncommitted_slot_and_other_broker_completes(
        tmp_path: Path) -> None:
    """Broker 1's publisher is killed mid-run. It claims a slot only once the ring has room, so
    while it waits for ring space it holds nothing: every slot it claimed is either ordered or
    -- only the one it was writing when it died -- declared lost, by identity."""
    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 150 * 256, ack=0, epoch_us=2000, pbr_slots=4, goi_slots=1024,
                    slot_timeout_ms=300.0, watchdog_s=1.5, record=True, processes=True)
    per_broker = cfg.total_batches // 2
    with region_file(tmp_path, cfg) as region:
        claim1 = offsets(region)[0] + 64 * 1
        groups = [RoleGroup(ROLE_PUBLISHERS, pub_brokers=1 << 0), RoleGroup(ROLE_PUBLISHERS, pub_brokers=1 << 1),
                  RoleGroup(ROLE_SCANNERS), RoleGroup(ROLE_SUBSCRIBERS)]
        procs = start_role_processes(str(region.path), region.size, cfg, groups, workdir=str(tmp_path))
        try:
            wait_until(lambda: word(region, claim1) >= 12, 60, "broker 1 to claim 12 slots")
            procs[1].kill()
            claimed = word(region, claim1)
            assert claimed < per_broker
            t0 = time.monotonic()
            pub0, scan, sub = (procs[i].wait_result(cfg.watchdog_s + 60) for i in (0, 2, 3))
            waited = time.monotonic() - t0
        finally:
            for p in procs:
                if p.proc.poll() is None:
                    p.kill()
    assert pub0.rc == 0 and pub0.stats["batches_published"] == per_broker
    order = scan.records["order"]
    loss = scan.records["loss"]
    ordered_b1 = int((order["broker"] == 1).sum())
    # every claimed slot resolved: ordered, or (the one being written) declared lost
    assert ordered_b1 + len(loss) == claimed
    assert scan.stats["batches_lost"] == len(loss) <= 1
    for x in loss:
        assert (int(x["broker"]), int(x["pbr_index"]), int(x["client"]), int(x["reason"])) == (
            1, claimed - 1, 1, LOSS_TIMEOUT)
    assert sorted(order["pbr_index"][order["broker"] == 1].tolist()) == list(range(ordered_b1))
    assert int((order["broker"] == 0).sum()) == per_broker
    total = per_broker + ordered_b1
    assert scan.stats["committed_seq"] == scan.stats["batches_ordered"] == total
    assert sorted(order["seq"].tolist()) == list(range(total))
    assert scan.stats["order_gaps"] == 0
    d = sub.records["deliver0"]
    assert d["pos"].tolist() == list(range(total))
    assert sub.stats["sub_checksum_errors"][0] == 0 and sub.stats["sub_order_errors"][0] == 0
    # broker 1 can never finish its quota: reported by the watchdog, not waited on forever
    assert scan.stats["stalled"] == 1 and scan.stats["stall_role"] & 0b10
    assert waited < cfg.watchdog_s + 30


def test_publisher_process_killed_mid_batch_has_that_slot_declared_lost(tmp_path: Path) -> None:
    """crash_kill: broker 1's publisher SIGKILLs its own process in the middle of batch 12 (slot
    claimed, half the payload written). Exactly that slot is declared lost, naming publisher 1;
    nothing else is."""
    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 60 * 256, ack=1, epoch_us=500, pbr_slots=8, goi_slots=1024,
                    slot_timeout_ms=100.0, watchdog_s=1.0, record=True, processes=True,
                    crash_publisher=1, crash_after=12, crash_kill=True)
    per_broker = cfg.total_batches // 2
    with region_file(tmp_path, cfg) as region:
        groups = [RoleGroup(ROLE_PUBLISHERS, pub_brokers=1 << 0), RoleGroup(ROLE_PUBLISHERS, pub_brokers=1 << 1),
                  RoleGroup(ROLE_SCANNERS), RoleGroup(ROLE_SUBSCRIBERS)]
        procs = start_role_processes(str(region.path), region.size, cfg, groups, workdir=str(tmp_path))
        try:
            pub0, scan, sub = (procs[i].wait_result(cfg.watchdog_s + 60) for i in (0, 2, 3))
            assert procs[1].proc.wait(30) == -9
        finally:
            for p in procs:
                if p.proc.poll() is None:
                    p.kill()
    loss = scan.records["loss"]
    assert [(int(x["broker"]), int(x["pbr_index"]), int(x["client"]), int(x["reason"]), int(x["alive"]))
            for x in loss] == [(1, 12, 1, LOSS_TIMEOUT, 0)]
    assert scan.stats["batches_ordered"] == per_broker + 12
    assert sub.stats["sub_batches"][0] == per_broker + 12
    # the ACK never covers the lost slot
    assert scan.stats["batches_acked"] == per_broker + 12


def test_killed_subscriber_restarted_resumes_without_gaps_or_duplicates(tmp_path: Path) -> None:
    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 300 * 256, ack=0, epoch_us=500, pbr_slots=32, goi_slots=1024,
                    watchdog_s=10.0, record=True, processes=True, resume_subscribers=True)
    total = cfg.total_batches
    with region_file(tmp_path, cfg) as region:
        subline = offsets(region)[2]
        groups = [RoleGroup(ROLE_PUBLISHERS), RoleGroup(ROLE_SCANNERS), RoleGroup(ROLE_SUBSCRIBERS)]
        procs = start_role_processes(str(region.path), region.size, cfg, groups, workdir=str(tmp_path))
        try:
            wait_until(lambda: word(region, subline) >= 40, 60, "the subscriber to pass position 40")
            procs[2].kill()
            resumed_at = word(region, subline)  # goi_pos: everything before it was delivered
            assert 40 <= resumed_at < total
            released = [word(region, subline + 64 + 8 * b) for b in range(cfg.brokers)]
            time.sleep(0.2)  # the others go on (publishers soon wait for the dead subscriber)
            (restarted,) = start_role_processes(str(region.path), region.size, cfg,
                                                [RoleGroup(ROLE_SUBSCRIBERS)], workdir=str(tmp_path))
            procs.append(restarted)
            results = [p.wait_result(cfg.watchdog_s + 60) for p in (procs[0], procs[1], restarted)]
        finally:
            for p in procs:
                if p.proc.poll() is None:
                    p.kill()
    pub, scan, sub = results
    assert pub.rc == scan.rc == sub.rc == 0
    assert scan.stats["committed_seq"] == total
    d = sub.records["deliver0"]
    pos = d["pos"].tolist()
    # no gap and no duplicate: exactly the positions after the published one, once each
    assert pos == list(range(resumed_at, total))
    assert sub.stats["sub_batches"][0] == total - resumed_at
    assert sub.stats["sub_checksum_errors"][0] == 0
    assert sub.stats["sub_order_errors"][0] == 0  # per-broker order continues across the restart
    assert sub.stats["corrupt_ctrl"] == 0
    # what it delivered is what the sequencer ordered at those positions
    order = scan.records["order"]
    by_seq = {int(s): (int(b), int(i)) for s, b, i in zip(order["seq"], order["broker"], order["pbr_index"])}
    assert all(by_seq[int(p)] == (int(b), int(i)) for p, b, i in zip(d["pos"], d["broker"], d["pbr_index"]))
    # per broker, it continued right after the ring slots the killed one had released
    for b in range(cfg.brokers):
        mine = np.sort(d["pbr_index"][d["broker"] == b])
        if len(mine):
            assert int(mine[0]) == released[b]
