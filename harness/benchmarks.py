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
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.characterize import CopySource, cpu_count, store_flush_fence_ns, summarize
from harness.log import (
    ROLE_PUBLISHERS,
    ROLE_SCANNERS,
    LogConfig,
    LogHandle,
    LogResult,
    format_region,
    layout_size,
    run_log,
)
from harness.profiles import Profile
from harness.region import Injection, Region, apply_injection
from harness.runner import open_region, profile_injection

SMALL_MSG = 102  # 10 messages of 102 B + 16 B headers: the seed's "1 KiB batches of 10 messages"
SMALL_BATCH = 1024


# ------------------------------------------------------------------------------------------
# Results


@dataclass
class Ratio:
    """A same-run comparison: samples of A and B (interleaved) and their pairwise ratios."""

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

    @property
    def median(self) -> float:
        return float(statistics.median(self.ratios))

    @property
    def spread(self) -> float:
        return summarize(self.ratios)["spread"]

    @property
    def runs(self) -> int:
        return len(self.ratios)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ratio", "name": self.name, "description": self.description,
            "a_label": self.a_label, "b_label": self.b_label, "unit": self.unit,
            "ratio": {**summarize(self.ratios), "samples": list(self.ratios)},
            "a": {**summarize(self.a), "samples": list(self.a)},
            "b": {**summarize(self.b), "samples": list(self.b)},
            "runs": self.runs, "params": dict(self.params),
            "extra": {k: {**summarize(v), "samples": list(v)} for k, v in self.extra.items() if v},
        }


@dataclass
class Measure:
    """A single quantity measured several times (e.g. drain batches/s)."""

    name: str
    description: str
    unit: str
    samples: list[float]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def spread(self) -> float:
        return summarize(self.samples)["spread"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "measure", "name": self.name, "description": self.description,
                "unit": self.unit, **summarize(self.samples), "samples": list(self.samples),
                "runs": len(self.samples), "params": dict(self.params)}


Result = Ratio | Measure


def interleave(a: Callable[[], float], b: Callable[[], float], runs: int,
               warmup: int = 1) -> tuple[list[float], list[float]]:
    """Run A B A B ... (after ``warmup`` untimed pairs); return the A and B samples."""
    for _ in range(warmup):
        a()
        b()
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(runs):
        xs.append(a())
        ys.append(b())
    return xs, ys


# ------------------------------------------------------------------------------------------
# Configurations and regions


def profile_config(profile: Profile, total_bytes: int | None = None, **kw: Any) -> LogConfig:
    """The profile's workload as a publish-only (ACK 1, no subscribers) run, records off."""
    w = profile.workload
    base: dict[str, Any] = dict(order=2, brokers=w.brokers, msg_size=w.msg_size, batch_bytes=w.batch_bytes,
                epoch_us=w.epoch_us, total_bytes=total_bytes or (w.total_mib << 20), ack=1,
                subscribers=0, record=False)
    base.update(kw)
    return LogConfig(**base)


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
                 allow_destructive: bool = False) -> Iterator[Region]:
    """One region large enough for every configuration, with the profile's injection on."""
    biggest = max(cfgs, key=layout_size)
    with open_region(profile, biggest, device=device, allow_destructive=allow_destructive) as region:
        profile_injection(profile)
        try:
            yield region
        finally:
            apply_injection(Injection())


def _log_run(cfg: LogConfig, region: Region) -> LogResult:
    r = run_log(cfg, region=region, check_history=False)
    if not r.ok:
        failed = "; ".join(f"{c.id}: {c.detail}" for c in r.failed())
        raise AssertionError(f"benchmark run of {cfg} failed its checks: {failed}")
    return r


def log_ratio(name: str, description: str, cfg_a: LogConfig, cfg_b: LogConfig, region: Region,
              runs: int, a_label: str, b_label: str, metric: str = "throughput_mib_s",
              unit: str = "MiB/s") -> Ratio:
    """Interleaved runs of two log configurations on the same region."""
    extra: dict[str, list[float]] = {}
    bextra: dict[str, list[float]] = {}
    xs, ys = interleave(_log_side(cfg_a, region, extra, metric),
                        _log_side(cfg_b, region, bextra, metric), runs)
    extra = _trim(extra, runs)
    extra["b_batches_per_s"] = _trim(bextra, runs).get("a_batches_per_s", [])
    return Ratio(name, description, a_label, b_label, unit, xs, ys,
                 [x / y for x, y in zip(xs, ys)], params=_cfg_params(cfg_a, cfg_b), extra=extra)


def _cfg_params(cfg_a: LogConfig, cfg_b: LogConfig) -> dict[str, Any]:
    da, db = asdict(cfg_a), asdict(cfg_b)
    return {"config": da, "b_differs": {k: db[k] for k in db if db[k] != da[k]}}


# ------------------------------------------------------------------------------------------
# The comparisons


def order2_vs_order0(region: Region, cfg: LogConfig, runs: int, *,
                     planted_extra_fence: bool = False) -> Ratio:
    """Order 2 / Order 0 publish throughput, same workload, same region.

    ``planted_extra_fence`` slows the Order 2 side by a fence per message (a planted defect,
    used to show that the ratio check can fail)."""
    a = replace(cfg, order=2, extra_fence=planted_extra_fence)
    return log_ratio("order2_vs_order0", "Order 2 / Order 0 publish throughput",
                     a, replace(cfg, order=0), region, runs,
                     "Order 2" + (" (planted extra fence per message)" if planted_extra_fence else ""),
                     "Order 0")


def nt_copy_mib_s(region: Region, src: CopySource, nbytes: int, chunk: int, threads: int,
                  min_bytes: int = 1 << 30) -> float:
    """MiB/s of raw non-temporal copies into the region, ``threads`` threads on disjoint parts
    (the C call releases the GIL), timed from a common start to the last finish."""
    lib, ffi = region.native.lib, region.native.ffi
    per = (nbytes // threads) // chunk * chunk
    barrier = threading.Barrier(threads + 1)
    base = ffi.cast("char *", region.base)

    iters = max(1, -(-min_bytes // (per * threads)))  # long enough that thread start is noise

    def work(i: int) -> None:
        barrier.wait()
        lib.cxl_bench_copy(base + i * per, src.ptr + i * per, per, chunk, 1, iters)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return per * threads * iters / (time.perf_counter() - t0) / 2**20


def _log_side(cfg: LogConfig, region: Region, extra: dict[str, list[float]],
              metric: str) -> Callable[[], float]:
    """A callable that runs the log once and notes batches/s and p99 commit latency."""
    def run() -> float:
        res = _log_run(cfg, region)
        extra.setdefault("a_batches_per_s", []).append(res.batches_per_s)
        extra.setdefault("a_p99_us", []).append(res.latency.p99_ns / 1e3)
        return float(getattr(res, metric))
    return run


def _trim(extra: dict[str, list[float]], runs: int) -> dict[str, list[float]]:
    return {k: v[len(v) - runs:] for k, v in extra.items()}  # drop the warm-up


def order2_vs_nt_copy(region: Region, cfg: LogConfig, runs: int, *,
                      planted_extra_fence: bool = False) -> Ratio:
    """Order 2 publish throughput / raw non-temporal copy bandwidth of the same region, chunk =
    message size, as many copy threads as the publishers have CPUs."""
    threads = max(1, min(cfg.brokers * cfg.publishers_per_broker, cpu_count()))
    nbytes = min(region.size, layout_size(cfg)) // cfg.msg_size * cfg.msg_size
    src = CopySource(region, nbytes)
    cfg2 = replace(cfg, order=2, extra_fence=planted_extra_fence)
    extra: dict[str, list[float]] = {}
    xs, ys = interleave(_log_side(cfg2, region, extra, "throughput_mib_s"),
                        lambda: nt_copy_mib_s(region, src, nbytes, cfg.msg_size, threads), runs)
    return Ratio("order2_vs_nt_copy", "Order 2 publish throughput / raw non-temporal copy "
                 "bandwidth of the same region and chunk size", "Order 2",
                 f"NT copy, {cfg.msg_size} B chunks, {threads} thread(s)", "MiB/s", xs, ys,
                 [x / y for x, y in zip(xs, ys)],
                 params={"config": asdict(cfg2), "copy_bytes": nbytes, "chunk": cfg.msg_size,
                         "copy_threads": threads}, extra=_trim(extra, runs))


def mutex_ablation(region: Region, cfg: LogConfig, runs: int,
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
                             replace(c, variant="shared-mutex"), region, runs,
                             "per-scanner", "shared-mutex"))
    return out


def fence_amortisation(region: Region, runs: int, iters: int = 200_000,
                       lines_per_fence: int = 2) -> Ratio:
    """(b) time per line with one fence per line / with one fence per two lines (speed-up).
    ``lines_per_fence=1`` plants the defect of no amortisation (the check must then fail)."""
    xs, ys = interleave(lambda: store_flush_fence_ns(region, 1, iters),
                        lambda: store_flush_fence_ns(region, lines_per_fence, iters), runs)
    return Ratio("fence_amortisation", "speed-up per line of one fence per two lines over one "
                 "fence per line (store + flush each line)", "one fence per line",
                 "one fence per two lines", "ns/line", xs, ys, [x / y for x, y in zip(xs, ys)],
                 params={"iters": iters})


def header_fence_ablation(region: Region, cfg: LogConfig, runs: int) -> Ratio:
    """(b) in the log: one fence per two header lines / one fence per header line."""
    return log_ratio("header_fence_ablation", "Order 2 throughput, one fence per two header "
                     "lines / one fence per line", replace(cfg, fence_per_line=False),
                     replace(cfg, fence_per_line=True), region, runs, "fence per two lines",
                     "fence per line", metric="batches_per_s", unit="batches/s")


def drain_once(region: Region, cfg: LogConfig) -> float:
    """Batches/s of scanners + sequencer draining rings that publishers filled beforehand."""
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
    return cfg.total_batches / (dt / 1e9)


def drain_config(brokers: int = 4, slots: int = 1 << 16, **kw: Any) -> LogConfig:
    return small_batch_config(brokers, slots, pbr_slots=slots, ack=0, **kw)


def sequencer_drain(region: Region, runs: int, cfg: LogConfig) -> Measure:
    drain_once(region, cfg)  # warm-up: page faults, caches
    samples = [drain_once(region, cfg) for _ in range(runs)]
    return Measure("drain_batches_per_s", "sequencer-only drain of pre-filled rings (4 scanners + "
                   "epoch sequencer, full reader discipline); wall time of the drain includes "
                   "thread start and join", "batches/s", samples,
                   params={"config": asdict(cfg), "batches": cfg.total_batches})


def reservation_ablation(region: Region, runs: int, cfg: LogConfig) -> Ratio:
    """(c) per-epoch / per-batch reservation, on the sequencer-bound drain."""
    xs, ys = interleave(lambda: drain_once(region, cfg),
                        lambda: drain_once(region, replace(cfg, reserve_per_batch=True)), runs)
    return Ratio("reservation_per_epoch_vs_per_batch", "sequencer drain batches/s, one "
                 "reservation per epoch / one per batch", "per-epoch", "per-batch", "batches/s",
                 xs, ys, [x / y for x, y in zip(xs, ys)], params={"config": asdict(cfg)})


def publish_ceiling_once(region: Region, cfg: LogConfig) -> float:
    """Batches/s one publisher thread (one core) reaches with flushed headers: publishers only,
    rings large enough that nothing waits; first to last publish."""
    assert cfg.brokers == 1 and cfg.ack == 0 and cfg.batches_per_publisher <= cfg.pbr_slots
    format_region(region, cfg)
    h = LogHandle(region, cfg)
    try:
        h.run(ROLE_PUBLISHERS)
        st = h.stats()
    finally:
        h.close()
    span: float = (st["last_publish_ns"] - st["first_publish_ns"]) / 1e9
    return float(st["batches_published"]) / max(float(span), 1e-9)


def sustained_vs_ceiling(region: Region, runs: int, brokers: int = 4,
                         batches_per_publisher: int = 25_000, *,
                         planted_extra_fence: bool = False) -> Ratio:
    """Sustained 1 KiB batches (publishers + scanners + sequencer, ACK 1) / single-core ceiling.
    ``planted_extra_fence`` slows the sustained side only (shows the check can fail)."""
    sustained = small_batch_config(brokers, batches_per_publisher, extra_fence=planted_extra_fence)
    total = brokers * batches_per_publisher
    ceiling = small_batch_config(1, total, ack=0, pbr_slots=1 << (total - 1).bit_length(),
                                 extra_fence=False)
    extra: dict[str, list[float]] = {}
    xs, ys = interleave(_log_side(sustained, region, extra, "batches_per_s"),
                        lambda: publish_ceiling_once(region, ceiling), runs)
    return Ratio("sustained_vs_ceiling", "sustained 1 KiB batches of 10 messages (publishers and "
                 "sequencer together) / what one core publishes with flushed headers",
                 f"sustained, {brokers} brokers, ACK 1", "one publisher alone, no ordering",
                 "batches/s", xs, ys, [x / y for x, y in zip(xs, ys)],
                 params={"config": asdict(sustained), "ceiling_config": asdict(ceiling)},
                 extra=_trim(extra, runs))


# ------------------------------------------------------------------------------------------
# The whole suite


@dataclass(frozen=True)
class SuitePlan:
    runs: int
    total_bytes: int
    mutex_total_bytes: int
    drain_slots: int
    sustained_batches: int
    brokers_list: tuple[int, ...] = (1, 2, 4, 8)

    @classmethod
    def make(cls, quick: bool, runs: int | None = None) -> SuitePlan:
        if quick:
            return cls(runs or 3, 128 << 20, 64 << 20, 1 << 14, 5_000)
        return cls(runs or 5, 1 << 30, 256 << 20, 1 << 16, 25_000)


def run_suite(profile: Profile, *, quick: bool = False, runs: int | None = None,
              device: str | None = None, allow_destructive: bool = False,
              only: Sequence[str] | None = None) -> dict[str, Result]:
    """Every comparison on the profile's memory; returns results by name."""
    plan = SuitePlan.make(quick, runs)
    cfg = profile_config(profile, plan.total_bytes)
    mcfg = profile_config(profile, plan.mutex_total_bytes)
    dcfg = drain_config(profile.workload.brokers, plan.drain_slots)
    total = profile.workload.brokers * plan.sustained_batches
    ceil = small_batch_config(1, total, ack=0, pbr_slots=1 << (total - 1).bit_length())
    sizing = [cfg, replace(mcfg, brokers=max(plan.brokers_list)), dcfg, ceil]
    want = set(only) if only else None

    def on(name: str) -> bool:
        return want is None or name in want

    out: dict[str, Result] = {}
    with bench_region(profile, sizing, device=device, allow_destructive=allow_destructive) as region:
        if on("fence_amortisation"):
            out["fence_amortisation"] = fence_amortisation(region, plan.runs)
        if on("order2_vs_order0"):
            out["order2_vs_order0"] = order2_vs_order0(region, cfg, plan.runs)
        if on("order2_vs_nt_copy"):
            out["order2_vs_nt_copy"] = order2_vs_nt_copy(region, cfg, plan.runs)
        if on("per_scanner_vs_mutex"):
            for r in mutex_ablation(region, mcfg, plan.runs, plan.brokers_list):
                out[r.name] = r
        if on("header_fence_ablation"):
            out["header_fence_ablation"] = header_fence_ablation(region, mcfg, plan.runs)
        if on("drain_batches_per_s"):
            out["drain_batches_per_s"] = sequencer_drain(region, plan.runs, dcfg)
        if on("reservation_per_epoch_vs_per_batch"):
            out["reservation_per_epoch_vs_per_batch"] = reservation_ablation(region, plan.runs, dcfg)
        if on("sustained_vs_ceiling"):
            out["sustained_vs_ceiling"] = sustained_vs_ceiling(
                region, plan.runs, profile.workload.brokers, plan.sustained_batches)
    return out


# ------------------------------------------------------------------------------------------
# Targets


@dataclass
class TargetCheck:
    id: str
    description: str
    measured: float | None
    target: float
    kind: str  # "min" or "max"
    source: str  # where the target comes from
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RATIO_RESULTS = {
    "order2_vs_order0": "order2_vs_order0",
    "order2_vs_nt_copy": "order2_vs_nt_copy",
    "fence_amortisation": "fence_amortisation",
}


def is_real_device(profile: Profile) -> bool:
    return profile.memory.backend in ("devdax", "numa")


def target_checks(profile: Profile, results: Mapping[str, Result],
                  minimums: Mapping[str, float] | None = None) -> list[TargetCheck]:
    """Compare results with the profile's targets.

    Emulated profiles: every ratio target the profile states (per-scanner vs mutex at the
    profile's broker count). Real devices: the absolute targets (Order 2 MiB/s and batches/s,
    p99 commit latency, from the Order 2 side of ``order2_vs_order0``) plus any ratio targets.
    ``minimums`` overrides ratio minimums (CI margins on a noisy machine); the source says so.
    A target whose measurement is missing fails (it was asked for and not measured).
    """
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
        measured = res.median if isinstance(res, Ratio) else None
        ok = measured is not None and measured >= floor
        detail = (f"not measured ({rname})" if measured is None else
                  f"median {measured:.3f} (spread {res.spread:.2f}, {res.runs} runs) "  # type: ignore[union-attr]
                  f"{'>=' if ok else '<'} {floor}")
        checks.append(TargetCheck(key, f"ratio {key}", measured, floor, "min", src, ok, detail))
    if is_real_device(profile):
        checks += _absolute_checks(profile, results)
    return checks


def _absolute_checks(profile: Profile, results: Mapping[str, Result]) -> list[TargetCheck]:
    ab = profile.targets.absolute
    o2 = results.get("order2_vs_order0")
    o2r = o2 if isinstance(o2, Ratio) else None
    values = {
        "order2_mib_s": (statistics.median(o2r.a) if o2r else None, ab.order2_mib_s, "min"),
        "batches_per_s": (statistics.median(o2r.extra["a_batches_per_s"])
                          if o2r and o2r.extra.get("a_batches_per_s") else None,
                          ab.batches_per_s, "min"),
        "p99_commit_latency_us": (statistics.median(o2r.extra["a_p99_us"])
                                  if o2r and o2r.extra.get("a_p99_us") else None,
                                  ab.p99_commit_latency_us, "max"),
    }
    out = []
    for key, (measured, target, kind) in values.items():
        if target is None:
            continue
        ok = measured is not None and (measured >= target if kind == "min" else measured <= target)
        op = (">=" if kind == "min" else "<=") if ok else ("<" if kind == "min" else ">")
        detail = "not measured" if measured is None else f"median {measured:,.1f} {op} {target:,}"
        out.append(TargetCheck(key, f"absolute {key}", measured, target, kind,
                               f"profile {profile.name}", ok, detail))
    return out


# ------------------------------------------------------------------------------------------
# Outputs: pyperf JSON for the micro benchmarks, one JSON summary of our own


def pyperf_suite(results: Mapping[str, Result], metadata: Mapping[str, Any] | None = None) -> Any:
    """A pyperf BenchmarkSuite of the micro measurements, values in seconds per operation:
    each sample is one pyperf run (so pyperf's statistics see the run-to-run spread)."""
    import pyperf

    benches = []
    meta = {k: str(v) for k, v in (metadata or {}).items()}

    def add(name: str, seconds: Sequence[float], desc: str) -> None:
        vals = [s for s in seconds if s > 0]
        if not vals:
            return
        runs = [pyperf.Run([v], metadata={"name": name, "unit": "second", "description": desc, **meta},
                           collect_metadata=False) for v in vals]
        benches.append(pyperf.Benchmark(runs))

    fa = results.get("fence_amortisation")
    if isinstance(fa, Ratio):
        add("store_flush_fence_per_line", [x * 1e-9 for x in fa.a], "store+flush+fence, per line")
        add("store_flush_fence_per_two_lines", [x * 1e-9 for x in fa.b],
            "store+flush per line, one fence per two lines, per line")
    nt = results.get("order2_vs_nt_copy")
    if isinstance(nt, Ratio):
        add("nt_copy_per_mib", [1.0 / x for x in nt.b], f"raw NT copy, seconds per MiB ({nt.b_label})")
        add("order2_publish_per_mib", [1.0 / x for x in nt.a], "Order 2 publish, seconds per MiB")
    o = results.get("order2_vs_order0")
    if isinstance(o, Ratio):
        add("order0_publish_per_mib", [1.0 / x for x in o.b], "Order 0 publish, seconds per MiB")
    d = results.get("drain_batches_per_s")
    if isinstance(d, Measure):
        add("sequencer_drain_per_batch", [1.0 / x for x in d.samples], "sequencer drain, per batch")
    s = results.get("sustained_vs_ceiling")
    if isinstance(s, Ratio):
        add("sustained_small_batch", [1.0 / x for x in s.a], "sustained 1 KiB batch, per batch")
        add("single_core_publish_small_batch", [1.0 / x for x in s.b],
            "one publisher, 1 KiB batch, per batch")
    return pyperf.BenchmarkSuite(benches)


def summary(profile: Profile, results: Mapping[str, Result], checks: Sequence[TargetCheck],
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our own JSON summary (read by the HTML report)."""
    return {
        "schema": "cxl-harness-bench/1",
        "profile": profile.name,
        "backend": profile.memory.backend,
        "results": {k: v.to_dict() for k, v in results.items()},
        "targets": [c.to_dict() for c in checks],
        "ok": all(c.ok for c in checks),
        **dict(extra or {}),
    }


def write_outputs(out_dir: str | Path, profile: Profile, results: Mapping[str, Result],
                  checks: Sequence[TargetCheck], extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pyperf": out / "pyperf.json", "summary": out / "bench-summary.json"}
    pyperf_suite(results, {"profile": profile.name}).dump(str(paths["pyperf"]), replace=True)
    paths["summary"].write_text(json.dumps(summary(profile, results, checks, extra), indent=2,
                                           default=str) + "\n")
    return paths
