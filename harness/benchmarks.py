"""Throughput benchmarks: ratios measured in the same run, interleaved A B A B ...

Absolute figures on a shared machine drift from minute to minute; a ratio of two things
measured alternately on the same region in the same process does not. Every comparison here
runs A, then B, then A, then B ..., pairs the i-th A with the i-th B, and reports the median
of the pairwise ratios with its spread ((max - min) / median).

- Order 2 / Order 0 publish throughput (the seed: ordering should cost nothing);
- Order 2 / raw non-temporal copy bandwidth of the same region with the same chunk size
  (copy threads = the CPUs the publishers can use);
- the seed's ablations: (a) per-scanner buffers / one shared mutex with 1, 2, 4, 8 brokers;
  (b) one fence per two header lines / one fence per line (speed-up per line);
  (c) per-epoch / per-batch reservation of global sequence numbers;
- sequencer capacity: rings pre-filled (publishing not timed), scanners + sequencer drain them
  with the full reader discipline (batches/s); and sustained small batches (1 KiB, 10
  messages) with publishers and sequencer together, against what one core can publish with
  flushed headers, measured in the same run.

``target_checks`` compares results with a profile's targets: ratio minimums on emulated
profiles, absolute targets on real devices. ``write_outputs`` writes pyperf JSON (so
``python -m pyperf compare_to`` works) and one JSON summary of our own.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.characterize import CopySource, store_flush_fence_ns
from harness.log import (ROLE_PUBLISHERS, ROLE_SCANNERS, LogConfig, LogHandle, LogResult, format_region,
                         layout_size, workload_config)
from harness.runlog import run_log
from harness.native import bench
from harness.profiles import Profile
from harness.region import Region
from harness.site import Site
from harness.results import TargetCheck
from harness.stats import (
    Paired,
    Plan,
    Samples,
    Sampler,
    Timed,
    Verdict,
    judge,
    measure_pairs,
    measure_single,
)

SMALL_MSG = 102  # 10 messages of 102 B + 16 B headers: the seed's "1 KiB batches of 10 messages"
SMALL_BATCH = 1024


# ------------------------------------------------------------------------------------------
# Results


@dataclass
class Ratio:
    """A same-run comparison: interleaved samples of A and B and their pairwise ratios; the
    figure (median, 95% interval, outliers) is ``stats``, computed once."""

    name: str
    description: str
    a_label: str
    b_label: str
    unit: str  # unit of the A and B samples
    a: list[float]
    b: list[float]
    ratios: list[float]
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, list[float]] = field(default_factory=dict)  # e.g. A's batches/s, p99
    measurement: dict[str, Any] = field(default_factory=dict)  # how it was sampled and stopped

    @property
    def stats(self) -> Samples:
        return Samples.of(self.ratios)

    @property
    def median(self) -> float:
        return self.stats.median

    @property
    def spread(self) -> float:
        return self.stats.spread

    @property
    def runs(self) -> int:
        return len(self.ratios)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ratio", "name": self.name, "description": self.description,
            "a_label": self.a_label, "b_label": self.b_label, "unit": self.unit,
            "ratio": self.stats.to_dict(),
            "a": Samples.of(self.a, self.unit).to_dict(),
            "b": Samples.of(self.b, self.unit).to_dict(),
            "runs": self.runs, "params": dict(self.params), "measurement": dict(self.measurement),
            "extra": {k: Samples.of(v).to_dict() for k, v in self.extra.items() if v},
        }


@dataclass
class Measure:
    """A single quantity measured several times (e.g. drain batches/s)."""

    name: str
    description: str
    unit: str
    samples: list[float]
    params: dict[str, Any] = field(default_factory=dict)
    measurement: dict[str, Any] = field(default_factory=dict)

    @property
    def stats(self) -> Samples:
        return Samples.of(self.samples, self.unit)

    @property
    def median(self) -> float:
        return self.stats.median

    @property
    def spread(self) -> float:
        return self.stats.spread

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "measure", "name": self.name, "description": self.description,
                "unit": self.unit, **self.stats.to_dict(), "runs": len(self.samples),
                "params": dict(self.params), "measurement": dict(self.measurement)}


Result = Ratio | Measure


def _measurement(p: Paired, plan: Plan) -> dict[str, Any]:
    return {"pairs": len(p.ratios), "stopped": p.stopped, "seconds": round(p.seconds, 3),
            "sample_seconds": Samples.of(p.sample_seconds).median if p.sample_seconds else None,
            "repeats_per_sample": [p.a_repeats, p.b_repeats],
            "other_cpu_share": p.other_cpu, "precision": plan.precision,
            "min_sample_s": plan.min_sample_s, "budget_s": plan.budget_s,
            "method": "interleaved A/B pairs; 95% order-statistic interval of the median of "
                      "pairwise ratios; pairs added until the interval is within the "
                      "precision or the budget is spent"}


def ratio_of(name: str, description: str, a: Sampler, b: Sampler, plan: Plan, a_label: str,
             b_label: str, unit: str, params: dict[str, Any] | None = None,
             extra: dict[str, list[float]] | None = None) -> Ratio:
    """Measure A against B with ``plan`` and wrap the result."""
    if extra is not None:
        extra.clear()  # what the calibration and warm-up noted is not a sample
    p = measure_pairs(a, b, plan)
    kept = {k: v[-len(p.ratios) * a.repeats:] for k, v in (extra or {}).items()}
    return Ratio(name, description, a_label, b_label, unit, p.a, p.b, p.ratios,
                 params=dict(params or {}), extra=kept, measurement=_measurement(p, plan))


# ------------------------------------------------------------------------------------------
# Configurations and regions


def profile_config(profile: Profile, total_bytes: int | None = None, **kw: Any) -> LogConfig:
    """The profile's workload as a publish-only (ACK 1, no subscribers) run, records off."""
    base = workload_config(profile, subscribers=0)
    return replace(base, **{"total_bytes": total_bytes or base.total_bytes, "record": False, **kw})


def small_batch_config(brokers: int, batches_per_publisher: int, **kw: Any) -> LogConfig:
    """1 KiB batches of 10 messages. Cached copies: for 102-byte messages the non-temporal
    path writes partial lines and is several times slower (see the closing note)."""
    base: dict[str, Any] = dict(order=2, brokers=brokers, msg_size=SMALL_MSG, batch_bytes=SMALL_BATCH,
                ack=1, subscribers=0, record=False, nt_copy=False, verify=False)
    base.update(kw)
    per_batch = (SMALL_BATCH // SMALL_MSG) * SMALL_MSG
    base["total_bytes"] = brokers * batches_per_publisher * per_batch
    cfg = LogConfig(**base)
    assert cfg.batches_per_publisher == batches_per_publisher
    return cfg


@contextmanager
def bench_region(profile: Profile, cfgs: Sequence[LogConfig], *, device: str | None = None,
                 allow_destructive: bool = False, site: Site | None = None) -> Iterator[Region]:
    """One region large enough for every configuration, with the profile's device model (on
    the run's ``site`` when it has one)."""
    biggest = max(cfgs, key=layout_size)
    site = site or Site(profile, device=device, allow_destructive=allow_destructive)
    with site.open_for(biggest) as region:
        yield region


def _log_run(cfg: LogConfig, region: Region) -> LogResult:
    r = run_log(cfg, region=region, check_history=False)
    if not r.ok:
        failed = "; ".join(f"{c.id}: {c.detail}" for c in r.failed())
        raise AssertionError(f"benchmark run of {cfg} failed its checks: {failed}")
    return r


def log_sampler(cfg: LogConfig, region: Region, metric: str = "throughput_mib_s",
                extra: dict[str, list[float]] | None = None,
                notes: dict[str, Any] | None = None) -> Sampler:
    """Runs the log once per call; work is MiB (or batches) over the run's own elapsed time.
    ``extra`` collects each run's batches/s and p99 commit latency, ``notes`` the last run's
    role placement."""
    def once() -> Timed:
        res = _log_run(cfg, region)
        if notes is not None:
            notes["placement"] = res.placement
        if extra is not None:
            extra.setdefault("a_batches_per_s", []).append(res.batches_per_s)
            extra.setdefault("a_p99_us", []).append(res.latency.p99_ns / 1e3)
        rate = float(getattr(res, metric))
        return Timed(rate * res.elapsed_s, res.elapsed_s)
    return Sampler(once, "rate")


def log_ratio(name: str, description: str, cfg_a: LogConfig, cfg_b: LogConfig, region: Region,
              plan: Plan, a_label: str, b_label: str, metric: str = "throughput_mib_s",
              unit: str = "MiB/s") -> Ratio:
    """Interleaved runs of two log configurations on the same region."""
    extra: dict[str, list[float]] = {}
    bextra: dict[str, list[float]] = {}
    notes: dict[str, Any] = {}
    a = log_sampler(cfg_a, region, metric, extra, notes)
    b = log_sampler(cfg_b, region, metric, bextra)
    r = ratio_of(name, description, a, b, plan, a_label, b_label, unit,
                 params=_cfg_params(cfg_a, cfg_b), extra=extra)
    r.params["placement"] = notes.get("placement", {})
    keep = len(r.ratios) * b.repeats
    r.extra["b_batches_per_s"] = bextra.get("a_batches_per_s", [])[-keep:]
    return r


def _cfg_params(cfg_a: LogConfig, cfg_b: LogConfig) -> dict[str, Any]:
    da, db = asdict(cfg_a), asdict(cfg_b)
    return {"config": da, "b_differs": {k: db[k] for k in db if db[k] != da[k]}}


# ------------------------------------------------------------------------------------------
# The comparisons


def order2_vs_order0(region: Region, cfg: LogConfig, plan: Plan, *,
                     planted_extra_fence: bool = False) -> Ratio:
    """Order 2 / Order 0 publish throughput, same workload, same region.

    ``planted_extra_fence`` slows the Order 2 side by a fence per message (a planted defect,
    used to show that the ratio check can fail)."""
    a = replace(cfg, order=2, extra_fence=planted_extra_fence)
    return log_ratio("order2_vs_order0", "Order 2 / Order 0 publish throughput",
                     a, replace(cfg, order=0), region, plan,
                     "Order 2" + (" (planted extra fence per message)" if planted_extra_fence else ""),
                     "Order 0")


def order5_vs_order2(region: Region, cfg: LogConfig, plan: Plan, order5: dict[str, Any]) -> Ratio:
    """Order 5 / Order 2 publish throughput, same workload, same region: the price of per-client
    FIFO with each client spread over ``order5["client_spread"]`` brokers (its batches held and
    released in client order). Informational unless the profile sets a target: how much the
    hold path costs depends on how far the brokers drift apart, which the host decides."""
    a = replace(cfg, **order5)
    spread = int(order5.get("client_spread", 1))
    return log_ratio("order5_vs_order2", "Order 5 / Order 2 publish throughput",
                     a, replace(cfg, order=2), region, plan,
                     f"Order 5 (each client over {spread} broker(s))", "Order 2")


def copy_once(region: Region, src: CopySource, area: int, chunk: int, nt: bool, threads: int,
              total_bytes: int) -> Timed:
    """``total_bytes`` of raw writes into the first ``area`` bytes of the region by ``threads``
    threads on disjoint parts (the C call releases the GIL), from a common start to the last
    finish. Like the publishers, every thread copies from a small cache-resident source
    (``src``), so the ceiling is the region's write bandwidth, not a DRAM-to-DRAM copy. Work
    is MiB."""
    native, base = region.native, region.base
    per = (area // threads) // chunk * chunk
    if per <= 0:
        raise ValueError(f"copy area {area} B too small for {threads} thread(s) of {chunk} B chunks")
    iters = max(1, -(-total_bytes // (per * threads)))
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            bench.write(native, base, i * per, per, src.ptr, src.nbytes, chunk, nt, iters)
        except BaseException as exc:  # a thread's failure must fail the sample, not vanish
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return Timed(per * threads * iters / 2**20, elapsed)


@dataclass(frozen=True)
class CopyWay:
    chunk: int
    nt: bool
    threads: int

    @property
    def label(self) -> str:
        return (f"{'NT' if self.nt else 'cached'} copy, {self.chunk} B chunks, "
                f"{self.threads} thread(s)")


def best_copy(region: Region, src: CopySource, area: int, total_bytes: int, threads: int,
              chunks: Sequence[int], tries: int = 3) -> tuple[CopyWay, dict[str, float]]:
    """The fastest way to write ``total_bytes`` into the region: every chunk size, NT and
    cached, best of ``tries`` after a warm-up; returns it and each way's best MiB/s."""
    seen: dict[str, float] = {}
    best: tuple[float, CopyWay] | None = None
    for chunk in sorted(set(chunks)):
        for nt in (True, False):
            way = CopyWay(chunk, nt, threads)
            copy_once(region, src, area, chunk, nt, threads, min(total_bytes, area))  # warm-up
            rates = []
            for _ in range(tries):
                t = copy_once(region, src, area, chunk, nt, threads, total_bytes)
                rates.append(t.work / t.seconds)
            seen[way.label] = max(rates)
            if best is None or seen[way.label] > best[0]:
                best = (seen[way.label], way)
    assert best is not None
    return best[1], seen


CEILING_CHUNKS = (4096, 65536)
COPY_SOURCE_BYTES = 1 << 17  # a cache-resident source, like the publishers' payload pool


def order2_vs_nt_copy(region: Region, cfg: LogConfig, plan: Plan, *,
                      planted_extra_fence: bool = False) -> Ratio:
    """Order 2 publish throughput / the best raw copy bandwidth of the same region for the
    same bytes: the same number of writing threads as the log's publishers, the same total
    bytes per sample, the fastest of NT and cached copies over several chunk sizes. A ratio
    above 1 means the baseline was no ceiling: the verdict calls it a measurement error."""
    threads = cfg.brokers * cfg.publishers_per_broker
    area = min(region.size, layout_size(cfg))
    src = CopySource(region, COPY_SOURCE_BYTES)
    way, ways = best_copy(region, src, area, cfg.total_bytes, threads,
                          (cfg.msg_size, *CEILING_CHUNKS))
    cfg2 = replace(cfg, order=2, extra_fence=planted_extra_fence)
    extra: dict[str, list[float]] = {}
    copy = Sampler(lambda: copy_once(region, src, area, way.chunk, way.nt, threads, cfg.total_bytes),
                   "rate")
    return ratio_of("order2_vs_nt_copy", "Order 2 publish throughput / best raw copy bandwidth "
                    "of the same region (same bytes, same writer threads)", log_sampler(
                        cfg2, region, extra=extra), copy, plan, "Order 2", way.label, "MiB/s",
                    params={"config": asdict(cfg2), "copy_bytes": cfg.total_bytes,
                            "copy_area": area, "chunk": way.chunk, "nt": way.nt,
                            "copy_threads": threads, "ways_mib_s": ways}, extra=extra)


def mutex_ablation(region: Region, cfg: LogConfig, plan: Plan,
                   brokers: Sequence[int] = (1, 2, 4, 8), *,
                   planted_extra_fence: bool = False) -> list[Ratio]:
    """(a) per-scanner buffers / one shared mutex, for each broker count.
    ``planted_extra_fence`` slows the per-scanner side (shows the check can fail)."""
    out = []
    for n in brokers:
        c = replace(cfg, brokers=n, order=2)
        out.append(log_ratio(f"per_scanner_vs_mutex_b{n}", f"per-scanner buffers / shared mutex, "
                             f"{n} broker(s)",
                             replace(c, variant="per-scanner", extra_fence=planted_extra_fence),
                             replace(c, variant="shared-mutex"), region, plan,
                             "per-scanner", "shared-mutex"))
    return out


def _fence_sampler(region: Region, lines_per_fence: int, iters: int) -> Sampler:
    def once() -> Timed:
        return Timed(iters, store_flush_fence_ns(region, lines_per_fence, iters) * iters / 1e9)
    return Sampler(once, "cost")


def fence_amortisation(region: Region, plan: Plan, iters: int = 100_000,
                       lines_per_fence: int = 2) -> Ratio:
    """(b) time per line with one fence per line / with one fence per two lines (speed-up).
    ``lines_per_fence=1`` plants the defect of no amortisation (the check must then fail).
    Samples are in seconds per line (shown as ns/line)."""
    r = ratio_of("fence_amortisation", "speed-up per line of one fence per two lines over one "
                 "fence per line (store + flush each line)", _fence_sampler(region, 1, iters),
                 _fence_sampler(region, lines_per_fence, iters), plan, "one fence per line",
                 "one fence per two lines", "ns/line", params={"iters": iters})
    r.a = [x * 1e9 for x in r.a]
    r.b = [x * 1e9 for x in r.b]
    return r


def header_fence_ablation(region: Region, cfg: LogConfig, plan: Plan) -> Ratio:
    """(b) in the log: one fence per two header lines / one fence per header line."""
    return log_ratio("header_fence_ablation", "Order 2 throughput, one fence per two header "
                     "lines / one fence per line", replace(cfg, fence_per_line=False),
                     replace(cfg, fence_per_line=True), region, plan, "fence per two lines",
                     "fence per line", metric="batches_per_s", unit="batches/s")


def drain_timed(region: Region, cfg: LogConfig) -> Timed:
    """Scanners + sequencer draining rings that publishers filled beforehand (batches)."""
    assert cfg.ack == 0 and cfg.batches_per_publisher <= cfg.pbr_slots
    format_region(region, cfg)
    h = LogHandle(region, cfg)
    try:
        if h.run(ROLE_PUBLISHERS) != 0:
            raise AssertionError("pre-filling the rings stalled")
        t0 = time.perf_counter_ns()
        rc = h.run(ROLE_SCANNERS)
        dt = time.perf_counter_ns() - t0
        st = h.stats()
    finally:
        h.close()
    if rc != 0 or st["batches_ordered"] != cfg.total_batches or st["order_gaps"]:
        raise AssertionError(f"drain ordered {st['batches_ordered']} of {cfg.total_batches} "
                             f"batches (rc {rc}, gaps {st['order_gaps']})")
    return Timed(cfg.total_batches, dt / 1e9)


def drain_once(region: Region, cfg: LogConfig) -> float:
    """Batches/s of one drain (see :func:`drain_timed`)."""
    t = drain_timed(region, cfg)
    return t.work / t.seconds


def drain_config(brokers: int = 4, slots: int = 1 << 16, **kw: Any) -> LogConfig:
    return small_batch_config(brokers, slots, pbr_slots=slots, ack=0, **kw)


def sequencer_drain(region: Region, plan: Plan, cfg: LogConfig) -> Measure:
    p = measure_single(Sampler(lambda: drain_timed(region, cfg), "rate"), plan)
    return Measure("drain_batches_per_s", "sequencer-only drain of pre-filled rings (4 scanners + "
                   "epoch sequencer, full reader discipline); wall time of the drain includes "
                   "thread start and join", "batches/s", p.a,
                   params={"config": asdict(cfg), "batches": cfg.total_batches},
                   measurement=_measurement(p, plan))


def reservation_ablation(region: Region, plan: Plan, cfg: LogConfig) -> Ratio:
    """(c) per-epoch / per-batch reservation, on the sequencer-bound drain."""
    per_batch = replace(cfg, reserve_per_batch=True)
    return ratio_of("reservation_per_epoch_vs_per_batch", "sequencer drain batches/s, one "
                    "reservation per epoch / one per batch",
                    Sampler(lambda: drain_timed(region, cfg), "rate"),
                    Sampler(lambda: drain_timed(region, per_batch), "rate"), plan,
                    "per-epoch", "per-batch", "batches/s", params={"config": asdict(cfg)})


def publish_ceiling_timed(region: Region, cfg: LogConfig) -> Timed:
    """Batches one publisher thread (one core) publishes with flushed headers: publishers
    only, rings large enough that nothing waits; first to last publish."""
    assert cfg.brokers == 1 and cfg.ack == 0 and cfg.batches_per_publisher <= cfg.pbr_slots
    format_region(region, cfg)
    h = LogHandle(region, cfg)
    try:
        h.run(ROLE_PUBLISHERS)
        st = h.stats()
    finally:
        h.close()
    span: float = (st["last_publish_ns"] - st["first_publish_ns"]) / 1e9
    return Timed(float(st["batches_published"]), max(float(span), 1e-9))


def sustained_vs_ceiling(region: Region, plan: Plan, brokers: int = 4,
                         batches_per_publisher: int = 25_000, *,
                         planted_extra_fence: bool = False) -> Ratio:
    """Sustained 1 KiB batches (publishers + scanners + sequencer, ACK 1) / single-core ceiling.
    ``planted_extra_fence`` slows the sustained side only (shows the check can fail): a fence
    per message after non-temporal stores, so each fence has writes to wait for (an empty
    fence costs next to nothing, on the device model as on hardware)."""
    sustained = small_batch_config(brokers, batches_per_publisher, extra_fence=planted_extra_fence,
                                   nt_copy=planted_extra_fence)
    total = brokers * batches_per_publisher
    ceiling = small_batch_config(1, total, ack=0, pbr_slots=1 << (total - 1).bit_length(),
                                 extra_fence=False)
    extra: dict[str, list[float]] = {}
    return ratio_of("sustained_vs_ceiling", "sustained 1 KiB batches of 10 messages (publishers "
                    "and sequencer together) / what one core publishes with flushed headers",
                    log_sampler(sustained, region, "batches_per_s", extra),
                    Sampler(lambda: publish_ceiling_timed(region, ceiling), "rate"), plan,
                    f"sustained, {brokers} brokers, ACK 1", "one publisher alone, no ordering",
                    "batches/s", params={"config": asdict(sustained),
                                         "ceiling_config": asdict(ceiling)}, extra=extra)


# ------------------------------------------------------------------------------------------
# The whole suite


def measurement_plan(profile: Profile, quick: bool = False) -> Plan:
    """The profile's sampling rules; ``--quick`` halves the sample length and takes a fifth of
    the budget (verdicts may then be INCONCLUSIVE more often, never less honest)."""
    m = profile.measurement
    plan = Plan(min_sample_s=m.min_sample_ms / 1e3, precision=m.precision_pct / 100.0,
                min_pairs=m.min_pairs, max_pairs=m.max_pairs, budget_s=m.budget_s)
    if quick:
        plan = Plan(plan.min_sample_s / 2, plan.precision, plan.min_pairs, plan.max_pairs,
                    plan.budget_s / 5, plan.warmup)
    return plan


@dataclass(frozen=True)
class SuitePlan:
    sampling: Plan
    total_bytes: int
    mutex_total_bytes: int
    drain_slots: int
    sustained_batches: int
    brokers_list: tuple[int, ...] = (1, 2, 4, 8)

    @classmethod
    def make(cls, profile: Profile, quick: bool) -> SuitePlan:
        sampling = measurement_plan(profile, quick)
        if quick:  # the profile's broker count only
            return cls(sampling, 128 << 20, 64 << 20, 1 << 14, 5_000, (profile.workload.brokers,))
        return cls(sampling, 1 << 30, 256 << 20, 1 << 16, 25_000)


from harness.comparisons import COMPARISONS  # noqa: E402  (re-exported)


def run_suite(profile: Profile, *, quick: bool = False, plan: SuitePlan | None = None,
              device: str | None = None, allow_destructive: bool = False,
              only: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None, site: Site | None = None) -> dict[str, Result]:
    """Every comparison on the profile's memory; returns results by name."""
    plan = plan or SuitePlan.make(profile, quick)
    sp = plan.sampling
    cfg = profile_config(profile, plan.total_bytes)
    mcfg = profile_config(profile, plan.mutex_total_bytes)
    dcfg = drain_config(profile.workload.brokers, plan.drain_slots)
    total = profile.workload.brokers * plan.sustained_batches
    ceil = small_batch_config(1, total, ack=0, pbr_slots=1 << (total - 1).bit_length())
    sizing = [cfg, replace(cfg, **profile.workload.order5_settings()),
              replace(mcfg, brokers=max(plan.brokers_list)), dcfg, ceil]
    want = set(only) if only else None

    def on(name: str) -> bool:
        if want is not None and name not in want:
            return False
        if progress is not None:
            progress(name)
        return True

    out: dict[str, Result] = {}
    with bench_region(profile, sizing, device=device, allow_destructive=allow_destructive, site=site) as region:
        if on("fence_amortisation"):
            out["fence_amortisation"] = fence_amortisation(region, sp)
        if on("order2_vs_order0"):
            out["order2_vs_order0"] = order2_vs_order0(region, cfg, sp)
        if on("order5_vs_order2"):
            out["order5_vs_order2"] = order5_vs_order2(region, cfg, sp,
                                                       profile.workload.order5_settings())
        if on("order2_vs_nt_copy"):
            out["order2_vs_nt_copy"] = order2_vs_nt_copy(region, cfg, sp)
        if on("per_scanner_vs_mutex"):
            for r in mutex_ablation(region, mcfg, sp, plan.brokers_list):
                out[r.name] = r
        if on("header_fence_ablation"):
            out["header_fence_ablation"] = header_fence_ablation(region, mcfg, sp)
        if on("drain_batches_per_s"):
            out["drain_batches_per_s"] = sequencer_drain(region, sp, dcfg)
        if on("reservation_per_epoch_vs_per_batch"):
            out["reservation_per_epoch_vs_per_batch"] = reservation_ablation(region, sp, dcfg)
        if on("sustained_vs_ceiling"):
            out["sustained_vs_ceiling"] = sustained_vs_ceiling(
                region, sp, profile.workload.brokers, plan.sustained_batches)
    return out


# ------------------------------------------------------------------------------------------
# Targets


RATIO_RESULTS = {
    "order2_vs_order0": "order2_vs_order0",
    "order5_vs_order2": "order5_vs_order2",
    "order2_vs_nt_copy": "order2_vs_nt_copy",
    "fence_amortisation": "fence_amortisation",
}
CEILINGS = {"order2_vs_nt_copy": 1.0}  # the baseline is a ceiling: above it is an error


def busy_share(result: Result | None) -> float | None:
    """Median share of the machine other processes used while ``result`` was sampled."""
    shares = result.measurement.get("other_cpu_share") if result is not None else None
    return Samples.of(shares).median if shares else None


def is_real_device(profile: Profile) -> bool:
    return profile.memory.backend in ("devdax", "numa")


def judge_target(id: str, description: str, kind: Literal["ratio", "absolute"], bound: float,
                 comparison: Literal["min", "max"], source: str, result: str | None,
                 samples: Samples | None, precision: float, unit: str = "",
                 busy: float | None = None) -> TargetCheck:
    if samples is None:
        return TargetCheck(id, description, kind, bound, comparison, source, result, None,
                           Verdict.MISSED, f"not measured ({result})", unit)
    j = judge(samples, bound, comparison, precision=precision, ceiling=CEILINGS.get(id),
              busy=busy)
    return TargetCheck(id, description, kind, bound, comparison, source, result, samples,
                       j.verdict, j.reason, unit)


def target_checks(profile: Profile, results: Mapping[str, Result],
                  minimums: Mapping[str, float] | None = None,
                  precision: float | None = None) -> list[TargetCheck]:
    """Judge results against the profile's targets.

    Emulated profiles: every ratio target the profile states (per-scanner vs mutex at the
    profile's broker count). Real devices: the absolute targets (Order 2 MiB/s and batches/s,
    p99 commit latency, from the Order 2 side of ``order2_vs_order0``) plus any ratio targets.
    ``minimums`` overrides ratio minimums (CI margins on a noisy machine); the source says so.
    A target whose measurement is missing is MISSED (it was asked for and not measured).
    """
    prec = precision if precision is not None else profile.measurement.precision_pct / 100.0
    checks: list[TargetCheck] = []
    ratios = asdict(profile.targets.ratios)
    overrides = dict(minimums or {})
    for key, goal in ratios.items():
        if goal is None and key not in overrides:
            continue
        floor = overrides.get(key, goal)
        assert floor is not None
        src = (f"CI margin (profile goal {goal})" if key in overrides else f"profile {profile.name}")
        rname = RATIO_RESULTS.get(key) or f"per_scanner_vs_mutex_b{profile.workload.brokers}"
        res = results.get(rname)
        label = res.description if res is not None else key
        checks.append(judge_target(key, label, "ratio", float(floor), "min", src, rname,
                                   res.stats if isinstance(res, Ratio) else None, prec,
                                   busy=busy_share(res)))
    if is_real_device(profile):
        checks += _absolute_checks(profile, results, prec)
    return checks


def _absolute_checks(profile: Profile, results: Mapping[str, Result],
                     precision: float) -> list[TargetCheck]:
    ab = profile.targets.absolute
    o2 = results.get("order2_vs_order0")
    o2r = o2 if isinstance(o2, Ratio) else None

    def side(values: Sequence[float] | None) -> Samples | None:
        return Samples.of(values) if values else None

    values: dict[str, tuple[Samples | None, float | None, Literal["min", "max"], str]] = {
        "order2_mib_s": (side(o2r.a if o2r else None), ab.order2_mib_s, "min", "MiB/s"),
        "batches_per_s": (side(o2r.extra.get("a_batches_per_s") if o2r else None),
                          ab.batches_per_s, "min", "batches/s"),
        "p99_commit_latency_us": (side(o2r.extra.get("a_p99_us") if o2r else None),
                                  ab.p99_commit_latency_us, "max", "µs"),
    }
    out = []
    for key, (samples, target, kind, unit) in values.items():
        if target is None:
            continue
        out.append(judge_target(key, f"absolute {key} (Order 2 side of order2_vs_order0)",
                                "absolute", float(target), kind, f"profile {profile.name}",
                                "order2_vs_order0", samples, precision, unit,
                                busy=busy_share(o2r)))
    return out


# ------------------------------------------------------------------------------------------
# Outputs: pyperf JSON for the micro benchmarks, one JSON summary of our own


SECONDS_PER_UNIT: dict[str, Callable[[float], float]] = {
    "MiB/s": lambda v: 1.0 / v,  # seconds per MiB
    "batches/s": lambda v: 1.0 / v,  # seconds per batch
    "ns/line": lambda v: v * 1e-9,  # seconds per line
}
# Historic pyperf names of some sides, kept so comparisons with older files line up.
_PYPERF_NAMES = {("fence_amortisation", "a"): "store_flush_fence_per_line",
                 ("fence_amortisation", "b"): "store_flush_fence_per_two_lines",
                 ("order2_vs_nt_copy", "a"): "order2_publish_per_mib",
                 ("order2_vs_nt_copy", "b"): "nt_copy_per_mib",
                 ("order2_vs_order0", "b"): "order0_publish_per_mib",
                 ("drain_batches_per_s", "a"): "sequencer_drain_per_batch",
                 ("sustained_vs_ceiling", "a"): "sustained_small_batch",
                 ("sustained_vs_ceiling", "b"): "single_core_publish_small_batch"}


def pyperf_suite(results: Mapping[str, Result], metadata: Mapping[str, Any] | None = None) -> Any:
    """A pyperf BenchmarkSuite with both sides of every result, in seconds per unit of work
    (MiB, batch, line); each sample is one pyperf run, so pyperf sees the run-to-run spread.
    ``metadata`` (host, CPU, kernel, date, profile, commit) goes on every run."""
    import pyperf

    benches = []
    meta = {k: (v if isinstance(v, (int, float)) else str(v))
            for k, v in (metadata or {}).items() if v is not None}

    def add(name: str, seconds: Sequence[float], desc: str) -> None:
        vals = [v for v in seconds if v > 0]
        if not vals:
            return
        runs = [pyperf.Run([v], metadata={"name": name, "unit": "second", "description": desc,
                                          **meta}, collect_metadata=False) for v in vals]
        benches.append(pyperf.Benchmark(runs))

    for key, r in results.items():
        to_s = SECONDS_PER_UNIT.get(r.unit)
        if to_s is None:
            continue
        sides = ([("a", r.a_label, r.a), ("b", r.b_label, r.b)] if isinstance(r, Ratio)
                 else [("a", r.description, r.samples)])
        for tag, label, values in sides:
            name = _PYPERF_NAMES.get((key, tag), f"{key}.{tag}")
            add(name, [to_s(v) for v in values if v > 0], f"{key}: {label} (seconds per "
                f"{r.unit.split('/')[0]})")
    return pyperf.BenchmarkSuite(benches)


def noise_warnings(state: dict[str, Any], results: Mapping[str, Result]) -> list[str]:
    """pyperf-check style warnings from the machine's state and the results' own noise."""
    from harness.noise import warnings

    other = [x for r in results.values() for x in r.measurement.get("other_cpu_share", [])]
    return warnings(state, spreads=[(r.name, r.spread) for r in results.values()], other_cpu=other)


def run_metadata() -> dict[str, Any]:
    """pyperf-style metadata of this machine and checkout (keys pyperf knows where it has one)."""
    import datetime
    import platform

    from harness.machine import cpu_description, git_revision

    return {"hostname": platform.node(), "cpu_model_name": cpu_description(),
            "platform": platform.platform(), "python_version": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": git_revision(), "cpu_count": os.cpu_count() or 1}


def summary(profile: Profile, results: Mapping[str, Result], checks: Sequence[TargetCheck],
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our own JSON summary (read by the HTML report)."""
    return {
        "schema": "cxl-harness-bench/1",
        "profile": profile.name,
        "backend": profile.memory.backend,
        "results": {k: v.to_dict() for k, v in results.items()},
        "targets": [c.to_dict() for c in checks],
        "ok": not any(c.fails() for c in checks),
        "ok_strict": not any(c.fails(strict=True) for c in checks),
        **dict(extra or {}),
    }


def write_outputs(out_dir: str | Path, profile: Profile, results: Mapping[str, Result],
                  checks: Sequence[TargetCheck], extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pyperf": out / "pyperf.json", "summary": out / "bench-summary.json"}
    meta = {"profile": profile.name, **run_metadata()}
    pyperf_suite(results, meta).dump(str(paths["pyperf"]), replace=True)
    paths["summary"].write_text(json.dumps(summary(profile, results, checks, extra), indent=2,
                                           default=str) + "\n")
    return paths
