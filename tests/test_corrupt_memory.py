"""Corrupt shared memory: any bad value in a batch header, a GOI entry or the control block is
detected, counted in the run result and never followed (no crash, no hang: a stall is
reported by the watchdog).

Each test formats a region, fills it (publishers only, ACK 0), corrupts bytes through
``ffi.buffer`` and then runs the consumers. Offsets come from the layout's offsets line
(cxl_layout.h): the control block's line 1 holds claim, seqline, subline, pbr, log,
log_bytes, goi, end.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest

from harness.errors import RegionError
from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, LogHandle, LogResult, attach_check, format_region, layout_size
from harness.runlog import build_result
from harness.region import Region

# cxl_layout.h
HDR = 128
GOI = 64
H_SLOT_ABS, H_BROKER, H_MSG_COUNT, H_LOG_OFFSET, H_SIZE, H_CHECKSUM, H_TOKEN = 0, 8, 24, 64, 72, 80, 120
H_CLIENT, H_CLIENT_BATCH_SEQ = 12, 16
G_LOG_OFFSET, G_BROKER, G_SIZE, G_MSG_COUNT, G_CHECKSUM, G_TOKEN = 8, 32, 40, 44, 48, 56
G_PBR_INDEX, G_CLIENT_BATCH_SEQ, G_CLIENT = 16, 24, 36
C_NEXT_GLOBAL = 256
C_MAGIC, C_VERSION, C_BROKERS, C_GEOM_CHECK = 0, 8, 24, 56
C_COMMITTED = 128 + 8
SUB_LINE = 128
SEQ_LOST = 40  # cxl_seq_line_t.lost_batches


def small_cfg(**kw: Any) -> LogConfig:
    """Two brokers, 16 batches of 4 x 64-byte messages each; rings big enough to fill."""
    base = dict(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                total_bytes=2 * 16 * 256, ack=0, epoch_us=20, pbr_slots=16, goi_slots=64,
                slot_timeout_ms=20.0, watchdog_s=0.5, record=False)
    base.update(kw)
    return LogConfig(**base)


@dataclass
class Layout:
    claim: int
    seqline: int
    subline: int
    pbr: int
    log: int
    log_bytes: int
    goi: int
    end: int


class Image:
    """A formatted region, its log handle, and byte-level access to it."""

    def __init__(self, cfg: LogConfig) -> None:
        self.cfg = cfg
        size = (layout_size(cfg) + 4095) // 4096 * 4096
        self.region = Region.emulated(size)
        format_region(self.region, cfg)
        self.handle = LogHandle(self.region, cfg)
        ffi = self.region.native.ffi
        self.buf = ffi.buffer(self.region.base, self.region.size)
        self.lay = Layout(*struct.unpack_from("<8Q", self.buf, 64))

    def run(self, roles: int) -> tuple[int, float]:
        t0 = time.monotonic()
        rc = self.handle.run(roles)
        return rc, time.monotonic() - t0

    def fill(self) -> None:
        rc, _ = self.run(ROLE_PUBLISHERS)
        assert rc == 0

    def hdr(self, broker: int, slot: int) -> int:
        return self.lay.pbr + (broker * self.cfg.pbr_slots + slot % self.cfg.pbr_slots) * HDR

    def goi(self, pos: int) -> int:
        return self.lay.goi + (pos % self.cfg.goi_slots) * GOI

    def put(self, fmt: str, off: int, value: int) -> None:
        struct.pack_into(fmt, self.buf, off, value)

    def get(self, fmt: str, off: int) -> int:
        return int(struct.unpack_from(fmt, self.buf, off)[0])

    def result(self, rc: int) -> LogResult:
        return build_result(self.cfg, self.handle.stats(), None, self.region.info(), rc, False)

    def close(self) -> None:
        self.handle.close()
        self.region.close()


@pytest.fixture
def image_factory():
    made: list[Image] = []

    def make(**kw: Any) -> Image:
        img = Image(small_cfg(**kw))
        made.append(img)
        return img

    yield make
    for img in made:
        img.close()


def consume(img: Image) -> tuple[LogResult, float]:
    rc, elapsed = img.run(ROLE_SCANNERS | ROLE_SUBSCRIBERS)
    return img.result(rc), elapsed


def check(r: LogResult, cid: str) -> bool:
    return next(c.ok for c in r.checks if c.id == cid)


def test_clean_fill_then_consume_passes(image_factory) -> None:
    """The drive itself (fill, then consume) is clean when nothing is corrupted."""
    img = image_factory()
    img.fill()
    r, _ = consume(img)
    assert r.ok, [c.detail for c in r.failed()]
    assert r.counters["corrupt_headers"] == r.counters["foreign_tokens"] == 0
    assert r.messages_delivered == [r.messages_published]


# ------------------------------------------------------------------------- batch headers

HEADER_CASES = {
    # field, struct format, bad value
    "size-past-stride": (H_SIZE, "<Q", 1 << 40),
    "size-zero": (H_SIZE, "<Q", 0),
    "offset-past-log": (H_LOG_OFFSET, "<Q", 1 << 50),
    "offset-misaligned": (H_LOG_OFFSET, "<Q", 8),
    "msg-count-zero": (H_MSG_COUNT, "<I", 0),
    "msg-count-too-large": (H_MSG_COUNT, "<I", 1_000_000),
    "identity-other-slot": (H_SLOT_ABS, "<Q", 5),
    "identity-other-broker": (H_BROKER, "<I", 7),
    # identity fields checked against what the run can contain, also with records off
    "client-of-another-broker": (H_CLIENT, "<I", 0),   # client 0 publishes on broker 0
    "client-out-of-range": (H_CLIENT, "<I", 1000),
    "client-batch-seq-past-quota": (H_CLIENT_BATCH_SEQ, "<Q", 1 << 40),
}


@pytest.mark.parametrize("order", [2, 0])
@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_corrupt_header_field_is_detected(image_factory, case: str, order: int) -> None:
    field, fmt, value = HEADER_CASES[case]
    img = image_factory(order=order)
    img.fill()
    img.put(fmt, img.hdr(1, 3) + field, value)
    r, elapsed = consume(img)
    assert r.counters["corrupt_headers"] == 1
    # resolved explicitly as lost, never followed: in the broker's shared frontier line ...
    assert img.get("<Q", img.lay.seqline + 64 * 1 + SEQ_LOST) == 1
    assert r.batches_lost == 1  # ... and in the run result
    assert not r.stalled and elapsed < 5
    assert not check(r, "shared-memory-sane")
    survivors = r.batches - 1
    stats = img.handle.stats()
    assert stats["sub_batches"][0] == survivors
    assert stats["sub_checksum_errors"][0] == 0
    if order == 2:
        assert stats["committed_seq"] == survivors  # dense over the survivors


def test_order0_loss_is_counted_in_the_result(image_factory) -> None:
    img = image_factory(order=0)
    img.fill()
    img.put("<Q", img.hdr(0, 1) + H_SIZE, 0)
    r, _ = consume(img)
    assert r.counters["corrupt_headers"] == 1
    assert r.batches_lost == 1


def test_token_for_another_slot_is_foreign_and_resolved_after_timeout(image_factory) -> None:
    img = image_factory(slot_timeout_ms=30.0)
    img.fill()
    # a token from two laps ahead: neither this lap's (slot+1) nor the previous lap's
    img.put("<Q", img.hdr(0, 2) + H_TOKEN, 2 + 2 * img.cfg.pbr_slots + 1)
    r, elapsed = consume(img)
    assert r.counters["foreign_tokens"] == 1
    assert r.batches_lost == 1  # claimed but never validly committed: lost after the timeout
    assert not r.stalled and elapsed < 5
    assert img.handle.stats()["sub_batches"][0] == r.batches - 1


def test_foreign_token_without_slot_timeout_is_a_reported_stall(image_factory) -> None:
    img = image_factory(slot_timeout_ms=0.0, watchdog_s=0.3)
    img.fill()
    img.put("<Q", img.hdr(0, 2) + H_TOKEN, 999)
    r, elapsed = consume(img)
    assert r.counters["foreign_tokens"] == 1
    assert r.stalled and not check(r, "run-completed")
    assert elapsed < 0.3 + 3  # reported within the watchdog time, not waited on
    assert r.counters["stall_role"] & 0b10  # the scanners were still waiting


def test_corrupt_checksum_is_caught_at_delivery(image_factory) -> None:
    img = image_factory()
    img.fill()
    off = img.hdr(1, 0) + H_CHECKSUM
    img.put("<Q", off, img.get("<Q", off) ^ 1)
    r, _ = consume(img)
    assert img.handle.stats()["sub_checksum_errors"][0] == 1
    assert not check(r, "payload-checksums")


def test_redirected_log_offset_is_caught_at_delivery(image_factory) -> None:
    """A valid-looking offset that points at another slot's payload: in range, so the scanner
    accepts it, but the payload does not match the checksum."""
    img = image_factory()
    img.fill()
    a, b = img.hdr(0, 4) + H_LOG_OFFSET, img.hdr(0, 5) + H_LOG_OFFSET
    img.put("<Q", a, img.get("<Q", b))
    r, _ = consume(img)
    assert img.handle.stats()["sub_checksum_errors"][0] == 1
    assert not r.ok


def test_smaller_message_count_is_caught_at_delivery(image_factory) -> None:
    img = image_factory()
    img.fill()
    img.put("<I", img.hdr(1, 7) + H_MSG_COUNT, 2)  # in range (4 per batch), but wrong
    r, _ = consume(img)
    assert img.handle.stats()["sub_checksum_errors"][0] == 1
    assert not check(r, "payload-checksums")


# ------------------------------------------------------------------------- GOI entries


def ordered_image(image_factory, **kw: Any) -> Image:
    """Publish and order everything (no subscriber running yet), so the GOI is written."""
    img = image_factory(**kw)
    rc, _ = img.run(ROLE_PUBLISHERS | ROLE_SCANNERS)
    assert rc == 0
    assert img.get("<Q", C_COMMITTED) == img.cfg.total_batches
    return img


GOI_CASES = {
    "broker-out-of-range": (G_BROKER, "<I", 9),
    "msg-count-zero": (G_MSG_COUNT, "<I", 0),
    "msg-count-too-large": (G_MSG_COUNT, "<I", 70000),
    "size-past-stride": (G_SIZE, "<I", 0xFFFFFFF0),
    "size-below-headers": (G_SIZE, "<I", 1),
    "offset-past-log": (G_LOG_OFFSET, "<Q", 1 << 45),
    "offset-misaligned": (G_LOG_OFFSET, "<Q", 65),
    "client-out-of-range": (G_CLIENT, "<I", 1000),
    "client-batch-seq-past-quota": (G_CLIENT_BATCH_SEQ, "<Q", 1 << 40),
    "pbr-index-past-the-broker": (G_PBR_INDEX, "<Q", 1 << 40),
}


def test_goi_client_of_another_broker_is_detected(image_factory) -> None:
    img = ordered_image(image_factory)
    broker = img.get("<I", img.goi(5) + G_BROKER)
    img.put("<I", img.goi(5) + G_CLIENT, 1 - broker)  # one publisher per broker: client == broker
    rc, _ = img.run(ROLE_SUBSCRIBERS)
    stats = img.handle.stats()
    assert stats["corrupt_goi"] == 1
    assert stats["sub_batches"][0] == img.cfg.total_batches - 1


@pytest.mark.parametrize("case", sorted(GOI_CASES))
def test_corrupt_goi_field_is_detected(image_factory, case: str) -> None:
    field, fmt, value = GOI_CASES[case]
    img = ordered_image(image_factory)
    img.put(fmt, img.goi(5) + field, value)
    rc, elapsed = img.run(ROLE_SUBSCRIBERS)
    r = img.result(rc)
    stats = img.handle.stats()
    assert stats["corrupt_goi"] == 1
    assert stats["sub_batches"][0] == img.cfg.total_batches - 1  # skipped, never followed
    assert not r.stalled and elapsed < 5
    assert not check(r, "shared-memory-sane")


def test_goi_token_for_another_position_stalls_and_is_reported(image_factory) -> None:
    img = ordered_image(image_factory, watchdog_s=0.3)
    img.put("<Q", img.goi(9) + G_TOKEN, 9 + 1 + img.cfg.goi_slots)  # next lap's token
    rc, elapsed = img.run(ROLE_SUBSCRIBERS)
    r = img.result(rc)
    stats = img.handle.stats()
    assert stats["corrupt_goi"] == 1  # counted once, however long it waits
    assert stats["sub_batches"][0] == 9  # delivered the readable prefix only
    assert r.stalled and elapsed < 3.5
    assert not check(r, "run-completed")


def test_goi_checksum_flip_is_caught(image_factory) -> None:
    img = ordered_image(image_factory)
    off = img.goi(3) + G_CHECKSUM
    img.put("<Q", off, img.get("<Q", off) ^ (1 << 63))
    rc, _ = img.run(ROLE_SUBSCRIBERS)
    assert img.handle.stats()["sub_checksum_errors"][0] == 1
    assert not img.result(rc).ok


# ------------------------------------------------------------------------- control block


def test_committed_seq_beyond_the_ring_is_corrupt_ctrl(image_factory) -> None:
    img = ordered_image(image_factory, watchdog_s=0.3)
    img.put("<Q", C_COMMITTED, 1 << 60)
    rc, elapsed = img.run(ROLE_SUBSCRIBERS)
    r = img.result(rc)
    stats = img.handle.stats()
    # more than the run can ever order: not followed at all (nothing delivered), counted once
    # however often it was polled, and listed with its offset
    assert stats["corrupt_ctrl"] == 1
    assert stats["sub_batches"][0] == 0
    assert stats["corrupt_goi"] == 0
    assert stats["corrupt_listed"] == 1
    assert (stats["corrupt_off"][0], stats["corrupt_val"][0], stats["corrupt_kind"][0]) == (
        C_COMMITTED, 1 << 60, 2)
    assert "control value at offset 0x88 = 0x1000000000000000" in next(
        c.detail for c in r.checks if c.id == "shared-memory-sane")
    assert r.stalled and elapsed < 3.5


def test_subscriber_position_ahead_of_the_sequence_is_corrupt_ctrl(image_factory) -> None:
    img = image_factory()
    img.fill()
    img.put("<Q", img.lay.subline, 1 << 40)  # subscriber 0's goi_pos
    r, elapsed = consume(img)
    assert r.counters["corrupt_ctrl"] >= 1
    assert not check(r, "shared-memory-sane")
    assert elapsed < 5


def test_order0_frontier_beyond_the_broker_is_corrupt_ctrl(image_factory) -> None:
    img = image_factory(order=0, watchdog_s=0.3)
    img.fill()
    img.run(ROLE_SCANNERS)  # ackers publish the frontiers
    img.put("<Q", img.lay.seqline + 64 * 1 + 8, 1 << 33)  # broker 1's ordered_batches
    rc, elapsed = img.run(ROLE_SUBSCRIBERS)
    stats = img.handle.stats()
    assert stats["corrupt_ctrl"] == 1  # once, however often it was polled
    # broker 1's impossible frontier is not followed (nothing of it delivered); broker 0 is
    assert stats["sub_batches"][0] == img.cfg.total_batches // 2
    assert elapsed < 5


ATTACH_CASES = {
    "magic": (C_MAGIC, "<Q", 0x1234, "bad magic"),
    "version": (C_VERSION, "<I", 2, "layout version 2"),
    "brokers": (C_BROKERS, "<I", 3, "geometry checksum mismatch"),
    "geom-check": (C_GEOM_CHECK, "<Q", 42, "geometry checksum mismatch"),
}


@pytest.mark.parametrize("case", sorted(ATTACH_CASES))
def test_attach_refuses_bad_control_block(image_factory, case: str) -> None:
    field, fmt, value, words = ATTACH_CASES[case]
    img = image_factory()
    img.put(fmt, field, value)
    with pytest.raises(RegionError) as ei:
        attach_check(img.region, img.cfg)
    assert words in str(ei.value)
    assert "\n" not in str(ei.value)
    with pytest.raises(RegionError, match=words):
        LogHandle(img.region, img.cfg)


@pytest.mark.parametrize("other", [dict(brokers=1), dict(pbr_slots=8), dict(order=0),
                                   dict(subscribers=2), dict(goi_slots=128)])
def test_attach_refuses_region_made_for_another_geometry(image_factory, other: dict[str, Any]) -> None:
    img = image_factory()
    with pytest.raises(RegionError, match="geometry mismatch on"):
        attach_check(img.region, replace(img.cfg, **other))


def test_attach_refuses_region_file_of_another_layout_version(tmp_path) -> None:
    cfg = small_cfg()
    path = tmp_path / "region"
    size = (layout_size(cfg) + 4095) // 4096 * 4096
    with Region.file(path, size) as region:
        format_region(region, cfg)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, C_VERSION, 99)
    path.write_bytes(bytes(data))
    with Region.file(path, size, create=False) as region:
        with pytest.raises(RegionError, match="layout version 99, this build reads version"):
            attach_check(region, cfg)
    assert path.read_bytes() == bytes(data)  # refused without writing anything


def test_consumed_through_beyond_the_claims_is_not_followed(image_factory) -> None:
    """consumed_through = 2^40 before: the publisher believed 2^40 slots free and overwrote
    unscanned ones. Now it stops at a full ring, counted once, listed with its offset."""
    img = image_factory(total_bytes=2 * 48 * 256, watchdog_s=0.3, subscribers=0)
    off = img.lay.seqline + 64 * 0  # broker 0's consumed_through
    img.put("<Q", off, 1 << 40)
    rc, _ = img.run(ROLE_PUBLISHERS)  # no scanner: nothing is really consumed
    stats = img.handle.stats()
    assert stats["published_by_broker"][0] == img.cfg.pbr_slots  # never past the full ring
    assert stats["corrupt_ctrl"] == 1
    assert (stats["corrupt_off"][0], stats["corrupt_val"][0]) == (off, 1 << 40)
    assert rc == 1 and stats["stalled"] == 1


def test_next_global_planted_far_ahead_is_not_followed(image_factory) -> None:
    """next_global = 2^62 before: committed_seq 4.6e18 and no corrupt counter. The sequencer
    is the only reserver: it keeps its own count and never follows the shared word."""
    img = image_factory(total_bytes=2 * 16 * 256)
    img.put("<Q", C_NEXT_GLOBAL, 1 << 62)
    rc, _ = img.run(ROLE_PUBLISHERS | ROLE_SCANNERS | ROLE_SUBSCRIBERS)
    r = img.result(rc)
    stats = img.handle.stats()
    assert stats["committed_seq"] == img.cfg.total_batches
    assert stats["sub_batches"][0] == img.cfg.total_batches
    assert stats["corrupt_ctrl"] == 1 and stats["corrupt_off"][0] == C_NEXT_GLOBAL
    assert not check(r, "shared-memory-sane") and check(r, "dense-sequence")


def test_committed_seq_all_ones_does_not_wrap_done(image_factory) -> None:
    """committed_seq = 2^64-1 before: done = committed + 1 wrapped to 0."""
    img = ordered_image(image_factory, watchdog_s=0.3)
    img.put("<Q", C_COMMITTED, (1 << 64) - 1)
    rc, elapsed = img.run(ROLE_SUBSCRIBERS)
    stats = img.handle.stats()
    assert stats["corrupt_ctrl"] == 1 and stats["sub_batches"][0] == 0
    assert rc == 1 and elapsed < 3.5


def test_committed_seq_going_back_is_a_regression(image_factory) -> None:
    """A subscriber that sees committed_seq decrease counts it (commit-monotonic-observed)."""
    img = ordered_image(image_factory, watchdog_s=0.3)
    rc, _ = img.run(ROLE_SUBSCRIBERS)  # delivers everything, remembers committed_seq
    assert rc == 0 and img.result(rc).ok
    total = img.cfg.total_batches
    img.put("<Q", C_COMMITTED, total - 5)  # planted: committed_seq moves backwards
    rc, elapsed = img.run(ROLE_SUBSCRIBERS)
    r = img.result(rc)
    assert img.handle.stats()["committed_regressions"] >= 1
    assert not check(r, "commit-monotonic-observed")
    assert elapsed < 3.5
