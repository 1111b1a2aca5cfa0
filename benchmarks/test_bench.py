"""pytest-benchmark measurements (run: pytest benchmarks/ --benchmark-enable
--benchmark-json=FILE). Each test also asserts the measured operation did its work."""

from __future__ import annotations

import dataclasses

import pytest

from harness.benchmarks import (
    bench_region,
    drain_config,
    drain_once,
    profile_config,
    small_batch_config,
)
from harness.characterize import store_flush_fence_ns
from harness.runlog import run_log
from harness.profiles import load_profile


@pytest.fixture(scope="module")
def region():  # type: ignore[no-untyped-def]
    p = load_profile("ci")
    with bench_region(p, [profile_config(p, 256 << 20), drain_config(4, 1 << 14)]) as r:
        yield r


@pytest.mark.parametrize("lines_per_fence", [1, 2])
def test_store_flush_fence(benchmark, region, lines_per_fence) -> None:  # type: ignore[no-untyped-def]
    ns = benchmark.pedantic(store_flush_fence_ns, args=(region, lines_per_fence, 100_000),
                            rounds=5, iterations=1)
    benchmark.extra_info["ns_per_line"] = ns
    assert ns > 0


@pytest.mark.parametrize("order", [0, 2])
def test_publish_1kib_messages(benchmark, region, order) -> None:  # type: ignore[no-untyped-def]
    cfg = dataclasses.replace(profile_config(load_profile("ci"), 256 << 20), order=order)
    r = benchmark.pedantic(run_log, args=(cfg,), kwargs={"region": region, "check_history": False},
                           rounds=5, iterations=1)
    benchmark.extra_info.update(mib_s=r.throughput_mib_s, batches_per_s=r.batches_per_s)
    assert r.ok and r.messages_acked == r.messages_published


def test_sequencer_drain(benchmark, region) -> None:  # type: ignore[no-untyped-def]
    cfg = drain_config(4, 1 << 14)
    rate = benchmark.pedantic(drain_once, args=(region, cfg), rounds=5, iterations=1)
    benchmark.extra_info["batches_per_s"] = rate
    assert rate > 0


def test_sustained_small_batches(benchmark, region) -> None:  # type: ignore[no-untyped-def]
    cfg = small_batch_config(4, 4096)
    r = benchmark.pedantic(run_log, args=(cfg,), kwargs={"region": region, "check_history": False},
                           rounds=5, iterations=1)
    benchmark.extra_info["batches_per_s"] = r.batches_per_s
    assert r.ok and r.batches == 4 * 4096
