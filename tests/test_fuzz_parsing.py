"""Fuzzing the parsing of shared memory: random byte flips over region images (batch headers,
GOI entries, control/sequencer/subscriber lines), then the scanners, sequencer and subscribers
run over the image.

The property, for every image: the run terminates (a stall is reported by the watchdog, never
waited on), every slot resolved as lost is counted and has a loss record, and either something
is reported (a failing check: corruption counters, checksum errors, stall, missing deliveries)
or what every subscriber delivered is exactly what was published, less the slots explicitly
resolved as lost -- no corrupted value is silently followed.

Replayed every run: the corpus in ``fixtures/fuzz-corpus/*.json`` (area-relative patches, so it
survives layout changes). Hypothesis runs a bounded number of new examples in CI
(``CXL_FUZZ_EXAMPLES``, default 40); failures it finds are worth adding to the corpus.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import RegionError
from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, LogHandle, merge_stats, format_region, layout_size
from harness.runlog import build_result
from harness.region import Region

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "fuzz-corpus"
AREAS = ("pbr", "goi", "ctrl-seq", "seqlines", "sublines")
WATCHDOG_S = 0.25
EXAMPLES = int(os.environ.get("CXL_FUZZ_EXAMPLES", "40"))

SCENARIOS: dict[str, LogConfig] = {
    "order2": LogConfig(order=2, brokers=2, subscribers=2, msg_size=48, batch_bytes=144,
                        total_bytes=2 * 12 * 144, ack=0, epoch_us=20, pbr_slots=16, goi_slots=32,
                        slot_timeout_ms=5.0, watchdog_s=WATCHDOG_S, record=True),
    "order2-mutex": LogConfig(order=2, variant="shared-mutex", brokers=1, subscribers=1, msg_size=100,
                              batch_bytes=200, total_bytes=12 * 200, ack=0, epoch_us=20, pbr_slots=16,
                              goi_slots=16, slot_timeout_ms=5.0, watchdog_s=WATCHDOG_S, record=True),
    "order0": LogConfig(order=0, brokers=2, subscribers=1, msg_size=64, batch_bytes=128,
                        total_bytes=2 * 12 * 128, ack=0, epoch_us=20, pbr_slots=16, goi_slots=16,
                        slot_timeout_ms=5.0, watchdog_s=WATCHDOG_S, record=True),
}


@dataclass
class Snapshot:
    """A filled region image (publishers ran, nothing consumed) and what was published."""

    cfg: LogConfig
    image: bytes
    areas: dict[str, tuple[int, int]]
    published: set[tuple[int, int, int]]  # (broker, pbr_index, checksum)
    fill_stats: dict[str, Any]  # the publishers' counters, merged into each run's


_SNAPSHOTS: dict[str, Snapshot] = {}


def snapshot(name: str) -> Snapshot:
    if name not in _SNAPSHOTS:
        cfg = SCENARIOS[name]
        size = (layout_size(cfg) + 4095) // 4096 * 4096
        with Region.emulated(size) as region:
            format_region(region, cfg)
            h = LogHandle(region, cfg)
            try:
                assert h.run(ROLE_PUBLISHERS) == 0
                pub = h.records()["publish"]
                fill_stats = h.stats()
            finally:
                h.close()
            image = bytes(region.native.ffi.buffer(region.base, region.size))
        claim, seqline, subline, pbr, log, _log_bytes, goi, end = struct.unpack_from("<8Q", image, 64)
        areas = {"pbr": (pbr, log - pbr), "goi": (goi, end - goi), "ctrl-seq": (128, 64),
                 "seqlines": (seqline, subline - seqline), "sublines": (subline, pbr - subline)}
        published = {(int(r["broker"]), int(r["pbr_index"]), int(r["checksum"])) for r in pub}
        _SNAPSHOTS[name] = Snapshot(cfg, image, areas, published, fill_stats)
    return _SNAPSHOTS[name]


@dataclass
class Outcome:
    ok: bool
    stalled: bool
    elapsed: float
    counters: dict[str, Any]
    delivered: list[set[tuple[int, int, int]]]
    failed: list[str]
    lost: set[tuple[int, int]]  # (broker, pbr_index) resolved explicitly as lost


def run_image(name: str, patches: list[tuple[str, int, int]]) -> Outcome:
    """Apply (area, offset-in-area, xor byte) patches to the scenario's image and consume it."""
    snap = snapshot(name)
    cfg = snap.cfg
    with Region.emulated(len(snap.image)) as region:
        buf = region.native.ffi.buffer(region.base, region.size)
        img = bytearray(snap.image)
        for area, off, xor in patches:
            start, length = snap.areas[area]
            img[start + off % length] ^= (xor & 0xFF) or 0xFF
        buf[:] = bytes(img)
        h = LogHandle(region, cfg)
        try:
            t0 = time.monotonic()
            try:
                rc = h.run(ROLE_SCANNERS | ROLE_SUBSCRIBERS)
            except RegionError as exc:
                # a flipped lease word reads as a live owner elsewhere: the run is refused,
                # with the reason, before anything is consumed -- detected, not followed
                assert "already running" in str(exc), exc
                return Outcome(False, False, time.monotonic() - t0, {"batches_lost": 0},
                               [set() for _ in range(cfg.subscribers)], ["refused"], set())
            elapsed = time.monotonic() - t0
            stats = h.stats()
            recs = h.records()
        finally:
            h.close()
        # as in multi-process mode: the publishers' counters come from another LogHandle
        result = build_result(cfg, merge_stats([snap.fill_stats, stats]), None, region.info(), rc, False)
    delivered = [{(int(d["broker"]), int(d["pbr_index"]), int(d["checksum"])) for d in recs[f"deliver{k}"]}
                 for k in range(cfg.subscribers)]
    lost = {(int(x["broker"]), int(x["pbr_index"])) for x in recs["loss"]}
    return Outcome(result.ok, result.stalled, elapsed, result.counters, delivered,
                   [c.id for c in result.failed()], lost)


def assert_property(name: str, out: Outcome) -> None:
    snap = snapshot(name)
    # terminates: the watchdog reports a stall within its time, plus scheduling slack
    assert out.elapsed < WATCHDOG_S + 5, f"run took {out.elapsed:.2f}s"
    if out.stalled:
        assert "run-completed" in out.failed
    # a slot resolved as lost is explicit: counted in the result, one loss record each
    assert out.counters["batches_lost"] == len(out.lost)
    if out.ok:  # nothing reported: then nothing wrong may have been delivered
        expected = {p for p in snap.published if (p[0], p[1]) not in out.lost}
        for k, got in enumerate(out.delivered):
            assert got == expected, f"subscriber {k} silently delivered other data"
    for k, got in enumerate(out.delivered):
        assert len(got) <= len(snap.published), f"subscriber {k} delivered more than was published"


def load_corpus() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted(CORPUS.glob("*.json"))]


@pytest.mark.parametrize("entry", load_corpus(), ids=lambda e: e[0])
def test_corpus_replay(entry: tuple[str, dict[str, Any]]) -> None:
    _, doc = entry
    out = run_image(doc["scenario"], [tuple(p) for p in doc["patches"]])  # type: ignore[misc]
    assert_property(doc["scenario"], out)
    for counter, minimum in doc.get("expect_min", {}).items():
        assert out.counters[counter] >= minimum, (counter, out.counters[counter])
    for check_id in doc.get("expect_failed", []):
        assert check_id in out.failed, (check_id, out.failed)
    if doc.get("expect_ok"):
        assert out.ok, out.failed


def test_corpus_is_not_empty() -> None:
    assert len(load_corpus()) >= 8


def test_clean_images_pass() -> None:
    for name in SCENARIOS:
        out = run_image(name, [])
        assert out.ok, (name, out.failed)
        assert all(d == snapshot(name).published for d in out.delivered)


patch_st = st.tuples(st.sampled_from(AREAS), st.integers(0, 1 << 20), st.integers(1, 255))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), patches=st.lists(patch_st, min_size=1, max_size=6))
def test_random_byte_flips_are_detected_or_harmless(name: str, patches: list[tuple[str, int, int]]) -> None:
    out = run_image(name, patches)
    assert_property(name, out)


@settings(max_examples=max(10, EXAMPLES // 2), deadline=None,
          derandomize=os.environ.get("CI") == "true", suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), slot=st.integers(0, 1 << 12),
       field=st.sampled_from([0, 8, 24, 64, 72, 80, 120]), value=st.integers(0, (1 << 64) - 1))
def test_any_header_word_any_value(name: str, slot: int, field: int, value: int) -> None:
    """Whole 64-bit words of a header replaced by arbitrary values (not only flips)."""
    snap = snapshot(name)
    start, length = snap.areas["pbr"]
    off = (slot * 128) % length + field
    old = struct.unpack_from("<Q", snap.image, start + off)[0]
    patches = [("pbr", off + i, ((old ^ value) >> (8 * i)) & 0xFF) for i in range(8)
               if ((old ^ value) >> (8 * i)) & 0xFF]
    out = run_image(name, patches)
    assert_property(name, out)
