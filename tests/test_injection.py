"""Injected latency: a requested delay costs what it says (ratio to the request, +-5%)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from harness.native import load
from harness.region import Injection, Region, apply_injection

FLUSHES = 20_000
LINES = 64


@pytest.fixture()
def buf() -> Iterator[Region]:
    with Region.emulated(1 << 20) as r:
        yield r
    apply_injection(Injection())


def _per_flush_ns(region: Region, flush_ns: float) -> float:
    apply_injection(Injection(flush_ns=flush_ns))
    return load().lib.cxl_bench_flush_calls(region.base, LINES, FLUSHES) / FLUSHES


def _added(region: Region, flush_ns: float, runs: int = 7) -> float:
    """Median over interleaved runs of (time with injection - time without), per flush."""
    load().lib.cxl_calibrate_delay()  # the busy-wait is calibrated against the clock we measure with
    deltas = []
    for _ in range(runs):
        base = _per_flush_ns(region, 0.0)
        deltas.append(_per_flush_ns(region, flush_ns) - base)
    return statistics.median(deltas)


@pytest.mark.parametrize("requested", [250.0, 1000.0, 2000.0])
def test_injected_flush_delay_is_accurate(buf: Region, requested: float) -> None:
    ratio = _added(buf, requested) / requested
    if not 0.95 <= ratio <= 1.05:  # one retry on a noisy machine; the bound stays the same
        ratio = _added(buf, requested) / requested
    assert 0.95 <= ratio <= 1.05, f"injected {requested} ns measured as {ratio:.3f}x"


def test_zero_injection_costs_almost_nothing(buf: Region) -> None:
    """With nothing injected, an invalidate on coherent memory is only the seam's check of
    the injection switch: it must stay under 5 ns per call."""
    apply_injection(Injection())
    lib = load().lib
    per_op = statistics.median(lib.cxl_bench_inval_calls(buf.base, LINES, 200_000) / 200_000
                               for _ in range(7))
    assert per_op < 5.0, f"{per_op:.2f} ns per seam call with zero injection"
    apply_injection(Injection(invalidate_ns=250))
    injected = lib.cxl_bench_inval_calls(buf.base, LINES, 20_000) / 20_000
    assert injected > 200, "the same call with 250 ns injected must cost it (the check can fail)"


def test_injected_latency_is_recorded_on_the_region(buf: Region) -> None:
    apply_injection(Injection(flush_ns=250, fence_ns=100, invalidate_ns=250, write_bw_gbps=21))
    inj = buf.info().injected
    assert inj["flush_ns"] == pytest.approx(250, abs=1)
    assert inj["fence_ns"] == pytest.approx(100, abs=1)
    assert inj["invalidate_ns"] == pytest.approx(250, abs=1)
    assert inj["write_bw_gbps"] == pytest.approx(21, rel=0.02)


def test_negative_injection_is_refused() -> None:
    from harness.errors import RegionError

    with pytest.raises(RegionError, match="negative"):
        Injection(flush_ns=-1)
