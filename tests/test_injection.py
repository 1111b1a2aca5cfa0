"""Injected latency is recorded with the region and validated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.region import Injection, Region, apply_injection

@pytest.fixture()
def buf() -> Iterator[Region]:
    with Region.emulated(1 << 20) as r:
        yield r
    apply_injection(Injection())


# Accuracy of the injected delays and the cost of zero injection: tests/test_characterize.py.


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
