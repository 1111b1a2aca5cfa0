"""What a run gives back: LogResult (figures, counters, checks, records) built from the C
statistics, and the latency percentiles from the C histogram."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.log.config import LogConfig
from harness.native import lat_bucket_low
from harness.region import RegionInfo
from harness.results import Check

@dataclass
class Latency:
    p50_ns: float
    p99_ns: float
    p999_ns: float
    samples: int
    cdf: list[tuple[float, float]] = field(default_factory=list)


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

    def summary_line(self) -> str:
        """One line: verdict, configuration, throughput, commit latency, checks, memory."""
        r = self
        verdict = "PASS" if r.ok else "FAIL"
        return (f"{verdict} order={r.order} variant={r.variant} brokers={r.brokers} ack={r.ack}: "
                f"{r.throughput_mib_s:,.0f} MiB/s, {r.messages_per_s:,.0f} msg/s, {r.batches_per_s:,.0f} "
                f"batches/s over {r.elapsed_s:.3f}s; commit latency p50 {r.latency.p50_ns / 1e3:,.1f} us "
                f"p99 {r.latency.p99_ns / 1e3:,.1f} us; checks {sum(c.ok for c in r.checks)}/{len(r.checks)} "
                f"passed [{r.region['backend']}, {r.region['flush_instruction']}]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("records", None)
        d["latency_ns"] = {"p50": self.latency.p50_ns, "p99": self.latency.p99_ns,
                           "p999": self.latency.p999_ns}
        return d


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
    """Lower bound (ns) of latency bucket i, from the core."""
    return lat_bucket_low(i)


def make_result(cfg: LogConfig, stats: dict[str, Any], recs: dict[str, Any] | None,
                region: RegionInfo, rc: int, checks: list[Check], processes: int = 1) -> LogResult:
    """The result of one run from the C statistics and records, with the checks made on them
    (harness.runlog.build_result runs the checks first)."""
    start = stats["first_publish_ns"]
    end = stats["last_ack_ns"] if cfg.ack else stats["last_publish_ns"]
    if not end or end < start:
        end = stats["end_ns"]
    elapsed = max(1e-9, (end - start) / 1e9) if start else 0.0
    payload = int(stats["bytes_published"])
    subs = cfg.subscribers
    lat = latency_from_hist(stats["lat_hist"])
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
