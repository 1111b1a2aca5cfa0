"""Device characterisation, in the spirit of Intel MLC: what the memory behind a profile costs.

Every figure is measured through the C seam (so the region's device model counts exactly as
the log sees it) in calibrated samples that each last at least the profile's
``measurement.min_sample_ms`` (:class:`harness.stats.Sampler`), and reported as the median
with its distribution-free 95% interval:

- load latency: a dependent pointer chase, invalidate before each load;
- store + flush + fence per line, with one fence per 1, 2 and 4 lines, and the speed-up of
  two lines per fence over one (interleaved pairs, :func:`harness.stats.measure_pairs`);
- invalidate + reload per line;
- copy bandwidth into the region, regular and non-temporal, several chunk sizes, one writer,
  and non-temporal with two writers together; read bandwidth out of the region.

On an emulated profile each figure the device model states is compared with its *target*
(what the device costs): target, measured median [interval], error, and the mean absolute
error over them, ``emulation_error_pct``. Each such figure is measured a second time right
after, on the same region with the same sampling, with the model doing every operation but
padding none (:meth:`harness.region.Region.unpadded`): the host's own capability. A target
the measurement misses on the slow side while the host's capability is, on its interval,
slower than the target is HOST-LIMITED (padding only adds time); the emulation error is also
given over the figures the host can reach (``emulation_error_reachable_pct``). The model's
counters (how many operations the host alone overran) are kept per figure as a diagnostic.
On a real device the figures are compared with the profile's ``expected`` figures and, on a
NUMA node, the firmware's HMAT.
The load chase on an emulated region covers a cache-resident set: the host's DRAM is not the
device being emulated, and a chase beyond the LLC would measure the host instead.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from harness.discovery import NumaNode
from harness.errors import CoreError, DeviceError
from harness.interrupt import in_worker
from harness.native import bench, load
from harness.native import devmodel as cdevmodel
from harness.native import region as cregion
from harness.profiles import DeviceModel, Expectation, Profile
from harness.region import HUGE_2M, ModelStats, Region, round_up
from harness.site import Site, device_model_for
from harness.stats import Plan as SamplePlan
from harness.stats import Samples, Sampler, Timed, Verdict, judge, measure_pairs, measure_single

PASS, FAIL, NO_EXPECTATION = "pass", "fail", "no-expectation"
COPY_CHUNKS = (256, 1024, 4096, 65536)
EXPECTATION_CHUNK = 65536  # copy_bw_gbps / nt_copy_bw_gbps / write bandwidth at this chunk
EMULATED_CHASE_BYTES = 1 << 20  # cache-resident: the device model, not the host's DRAM
READ_CHUNK = 1 << 20  # seam reads for the read bandwidth: long enough to hide the latency


# ------------------------------------------------------------------------------------------
# One measured figure


def summarize(values: list[float]) -> dict[str, Any]:
    """median, 95% interval of the median, min, max and spread ((max - min) / median)."""
    sm = Samples.of(values)
    lo, hi = sm.interval
    return {"median": sm.median, "interval": [lo, hi], "coverage": sm.coverage,
            "min": sm.sorted[0], "max": sm.sorted[-1],
            "spread": sm.spread if math.isfinite(sm.spread) else 0.0}


@dataclass
class Figure:
    """A measured quantity: its samples, what it should be, and the verdict.

    ``expected`` is the device model's target on an emulated profile (``target=True``) or the
    profile's expected figure on a real device."""

    name: str
    label: str
    unit: str
    samples: list[float]
    expected: float | None = None
    tolerance_pct: float | None = None
    target: bool = False  # expected is a device-model target (emulated profile)
    # the host's own capability: the same figure on the same region, same sampling, with the
    # model doing every operation but padding none (Region.unpadded); None: not measured
    host: list[float] | None = None
    firmware: float | None = None  # HMAT figure of a NUMA-node device, same unit
    firmware_label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> None:
        """No baseline: an emulated figure is the device's cost itself, not an added one."""
        return None

    @property
    def stats(self) -> Samples:
        return Samples.of(self.samples, self.unit)

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return self.stats.median

    @property
    def interval(self) -> tuple[float, float]:
        return self.stats.interval

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        return float(summarize(self.samples)["spread"])

    @property
    def compared(self) -> float:
        """The value the expectation is compared with: the median."""
        return self.median

    @property
    def error_pct(self) -> float | None:
        """(median - expected) / expected, in percent."""
        if self.expected is None or not self.expected:
            return None
        return (self.median - self.expected) / self.expected * 100.0

    @property
    def status(self) -> str:
        """pass / fail on the median (the summary's calibration status)."""
        if self.expected is None or self.tolerance_pct is None:
            return NO_EXPECTATION
        ok = Expectation(self.expected, self.tolerance_pct).within(self.compared)
        return PASS if ok else FAIL

    @property
    def higher_is_faster(self) -> bool:
        """Bandwidths and speed-ups: more is faster; costs (ns): less is faster."""
        return self.unit in ("GB/s", "x")

    @property
    def host_stats(self) -> Samples | None:
        return Samples.of(self.host, self.unit) if self.host else None

    @property
    def verdict(self) -> tuple[FigureVerdict, str] | None:
        """MET when the whole 95% interval is within the tolerance of the expectation, MISSED
        when it is wholly outside, INCONCLUSIVE otherwise (with the reason). A target the
        measurement misses on the slow side is HOST-LIMITED instead when the host's own
        capability (:attr:`host`) is, on its interval, slower than the target: no padding can
        make the host faster than it is by itself (:func:`target_verdict`)."""
        if self.expected is None or self.tolerance_pct is None:
            return None
        if not self.target:
            v, why = band_verdict(self.stats, self.expected, self.tolerance_pct / 100.0)
            return FigureVerdict(str(v)), why
        return target_verdict(self.stats, self.expected, self.tolerance_pct / 100.0,
                              self.host_stats, self.higher_is_faster)

    @property
    def host_limited(self) -> bool:
        """The target is faster than this host reaches by itself (decided on the intervals)."""
        v = self.verdict
        return v is not None and v[0] is FigureVerdict.HOST_LIMITED

    @property
    def host_error_pct(self) -> float | None:
        """(host capability - target) / target, in percent: how far the host alone is from
        the target (negative for a cost: faster than the target, i.e. reachable)."""
        h = self.host_stats
        if h is None or not self.expected:
            return None
        return (h.median - self.expected) / self.expected * 100.0

    def host_capability(self) -> dict[str, Any] | None:
        h = self.host_stats
        if h is None:
            return None
        lo, hi = h.interval
        return {"median": h.median, "interval": [lo, hi], "n": h.n, "coverage": h.coverage,
                "unit": self.unit, "vs_target_pct": self.host_error_pct,
                "method": "same figure, same region and sampling, the model padding nothing"}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "label": self.label, "unit": self.unit, "runs": self.runs,
            **summarize(self.samples), "samples": list(self.samples),
            "expected": self.expected, "tolerance_pct": self.tolerance_pct,
            "expected_kind": None if self.expected is None else ("target" if self.target else "expected"),
            "compared": self.compared, "error_pct": self.error_pct, "status": self.status,
            "host_limited": self.host_limited, "host_capability": self.host_capability(),
            "params": dict(self.params),
        }
        v = self.verdict
        if v is not None:
            d["verdict"], d["verdict_reason"] = str(v[0]), v[1]
        if self.firmware is not None:
            d["firmware"] = {"value": self.firmware, "source": self.firmware_label,
                             "error_pct": (self.median - self.firmware) / self.firmware * 100.0
                             if self.firmware else None}
        return d


def band_verdict(samples: Samples, value: float, tolerance: float,
                 busy: float | None = None) -> tuple[Verdict, str]:
    """Is the median within ``value`` +- ``tolerance`` (relative)? MET when the whole interval
    is inside the band, MISSED when it is wholly outside, INCONCLUSIVE otherwise. ``busy``:
    other processes' median share of the CPUs during the samples (:func:`harness.stats.judge`
    decides only what that much noise cannot explain)."""
    precision = tolerance / 2
    lo = judge(samples, value * (1 - tolerance), "min", precision=precision, busy=busy)
    hi = judge(samples, value * (1 + tolerance), "max", precision=precision, busy=busy)
    if lo.verdict == Verdict.MET and hi.verdict == Verdict.MET:
        return Verdict.MET, f"{samples.text()} within {value:g} +-{tolerance:.0%}"
    for j in (lo, hi):
        if j.verdict == Verdict.MISSED:
            return Verdict.MISSED, j.reason
    return Verdict.INCONCLUSIVE, lo.reason if lo.verdict != Verdict.MET else hi.reason


class FigureVerdict(StrEnum):
    """A figure against its target or expectation (equal to the same words of Verdict)."""

    MET = "MET"
    HOST_LIMITED = "HOST-LIMITED"
    MISSED = "MISSED"
    INCONCLUSIVE = "INCONCLUSIVE"


def target_verdict(measured: Samples, target: float, tolerance: float, host: Samples | None,
                   higher_is_faster: bool) -> tuple[FigureVerdict, str]:
    """An emulated figure against the device model's target, with the interval deciding:

    - MET: the measured interval lies within ``target`` +- ``tolerance``;
    - HOST-LIMITED: not MET, the measurement is on the slow side of the target, and the
      host's own capability (``host``: the same figure with the model padding nothing) is
      wholly slower than the target -- padding only adds time, so the host cannot emulate a
      device faster than itself;
    - MISSED: wholly outside the band, and either on the fast side (the model paid too
      little) or the host's own capability reaches the target (the model paid too much);
    - INCONCLUSIVE: the intervals cannot tell (too noisy, straddling a bound), or the host's
      capability reads slower than the padded figure itself on both intervals -- impossible
      when nothing disturbed them, as padding only adds time.
    """
    band, why = band_verdict(measured, target, tolerance)
    if band is Verdict.MET:
        return FigureVerdict.MET, why
    slow = measured.median < target if higher_is_faster else measured.median > target
    if host is None or not slow:
        return FigureVerdict(str(band)), why
    (m_lo, m_hi), (h_lo, h_hi) = measured.interval, host.interval
    if (m_lo > h_hi) if higher_is_faster else (m_hi < h_lo):
        # padding only adds time: the host alone can be no slower than the padded figure
        return FigureVerdict.INCONCLUSIVE, (
            f"measurement error: the host alone read {host.text('.4g')}, slower than the padded "
            f"figure {measured.text('.4g')} on both intervals, so one of them was disturbed; rerun")
    hj = judge(host, target, "min" if higher_is_faster else "max", precision=tolerance / 2)
    if hj.verdict is Verdict.MISSED:
        return FigureVerdict.HOST_LIMITED, (
            f"the host alone reaches {host.text('.4g')}, slower than the target {target:g} on "
            f"its whole interval; measured {measured.text('.4g')}")
    if hj.verdict is Verdict.INCONCLUSIVE and band is Verdict.MISSED:
        return FigureVerdict.INCONCLUSIVE, (
            f"{why}; but whether the host alone reaches the target is undecided: {hj.reason}")
    return FigureVerdict(str(band)), (why + f"; the host alone reaches {host.text('.4g')}"
                                      if band is Verdict.MISSED else why)


def _expect(e: Expectation | None) -> dict[str, Any]:
    return {"expected": e.value if e else None, "tolerance_pct": e.tolerance_pct if e else None}


@dataclass
class Characterization:
    profile: str
    backend: str
    region: dict[str, Any]
    injected: dict[str, Any]  # the device model's targets the region carries ({} = none)
    llc_bytes: int
    quick: bool
    figures: list[Figure]
    numa_node: dict[str, Any] | None = None

    def figure(self, name: str) -> Figure:
        for f in self.figures:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        return all(f.status != FAIL for f in self.figures)

    def failed(self) -> list[Figure]:
        return [f for f in self.figures if f.status == FAIL]

    @property
    def emulated(self) -> bool:
        return any(f.target for f in self.figures)

    @property
    def emulation_error_pct(self) -> float | None:
        """Mean absolute % error of the figures the device model states (None: no model)."""
        errs = [abs(f.error_pct) for f in self.figures if f.target and f.error_pct is not None]
        return float(statistics.fmean(errs)) if errs else None

    @property
    def emulation_error_reachable_pct(self) -> float | None:
        """The same over the figures this host can reach: every stated figure but the
        HOST-LIMITED ones (whose target is faster than the host by itself)."""
        errs = [abs(f.error_pct) for f in self.figures
                if f.target and f.error_pct is not None and not f.host_limited]
        return float(statistics.fmean(errs)) if errs else None

    def emulation_error(self) -> dict[str, Any] | None:
        """Both emulation errors, labelled, with the figures each covers (None: no model)."""
        stated = [f for f in self.figures if f.target and f.error_pct is not None]
        if not stated:
            return None
        return {"over_all_stated_figures_pct": self.emulation_error_pct,
                "over_host_reachable_figures_pct": self.emulation_error_reachable_pct,
                "stated_figures": [f.name for f in stated],
                "host_limited_figures": [f.name for f in stated if f.host_limited],
                "definition": "mean absolute % error of the measured median against the target; "
                              "'host reachable' leaves out the HOST-LIMITED figures, whose target "
                              "is faster than this host is by itself"}

    def comparison(self) -> dict[str, Any]:
        """The device/calibration section: every figure with a target, expectation or
        firmware figure, its measured median [interval] and error, and the overall error."""
        rows = []
        for f in self.figures:
            if f.expected is None and f.firmware is None:
                continue
            lo, hi = f.interval
            v = f.verdict
            rows.append({"name": f.name, "unit": f.unit, "target" if f.target else "expected": f.expected,
                         "tolerance_pct": f.tolerance_pct, "measured": f.median,
                         "interval": [lo, hi], "n": f.runs, "error_pct": f.error_pct,
                         "status": f.status, "verdict": str(v[0]) if v else None,
                         "verdict_reason": v[1] if v else None, "host_limited": f.host_limited,
                         "host_capability": f.host_capability(),
                         **({"firmware": f.firmware, "firmware_source": f.firmware_label}
                            if f.firmware is not None else {}),
                         **({"model": f.params["model"]} if "model" in f.params else {})})
        if self.emulated:
            return {"kind": "emulation", "figures": rows,
                    "emulation_error_pct": self.emulation_error_pct,
                    "emulation_error_reachable_pct": self.emulation_error_reachable_pct,
                    "emulation_error": self.emulation_error(),
                    "host_limited": [f.name for f in self.figures if f.host_limited]}
        errs = [abs(f.error_pct) for f in self.figures if f.error_pct is not None]
        return {"kind": "device", "figures": rows,
                "profile_error_pct": float(statistics.fmean(errs)) if errs else None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "backend": self.backend, "region": self.region,
            "injected": self.injected, "llc_bytes": self.llc_bytes, "quick": self.quick,
            "numa_node": self.numa_node, "ok": self.ok,
            "emulation_error_pct": self.emulation_error_pct,
            "emulation_error_reachable_pct": self.emulation_error_reachable_pct,
            "emulation_error": self.emulation_error(),
            "calibration": self.comparison(),
            "figures": [f.to_dict() for f in self.figures],
        }


# ------------------------------------------------------------------------------------------
# Machine facts


def llc_bytes(sysfs_root: str | Path = "/") -> int:
    """Size of the largest CPU cache (the last level) from sysfs; 32 MiB if unknown."""
    best = 0
    cache = Path(sysfs_root) / "sys/devices/system/cpu/cpu0/cache"
    for idx in sorted(cache.glob("index*")):
        try:
            text = (idx / "size").read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if digits.isdigit():
            best = max(best, int(digits) * mult)
    return best or 32 << 20


# ------------------------------------------------------------------------------------------
# Primitive measurements (each returns one sample)


def load_latency_ns(region: Region, nbytes: int, steps: int, seed: int = 1) -> float:
    """ns per dependent load (invalidate + load) over a random cycle of nbytes."""
    ns = bench.pointer_chase(region.native, region.base, nbytes, steps, seed)
    if ns == 0:
        raise DeviceError(f"pointer chase over {nbytes} bytes could not run", "use a larger region")
    return float(ns) / steps


def store_flush_fence_ns(region: Region, lines_per_fence: int, iters: int, lines: int = 4096) -> float:
    """ns per line: store a word, flush the line, one fence every lines_per_fence lines."""
    ns = bench.store_flush_fence(region.native, region.base, lines, lines_per_fence, iters)
    return float(ns) / iters


def inval_reload_ns(region: Region, iters: int, lines: int = 4096) -> float:
    return float(bench.inval_reload(region.native, region.base, lines, iters)) / iters


def flush_ns(region: Region, iters: int, lines: int = 4096) -> float:
    """ns per flush instruction (flushes back to back, one fence at the end)."""
    return float(bench.flush_calls(region.native, region.base, lines, iters)) / iters


def fence_ns(region: Region, iters: int) -> float:
    return float(bench.fence_calls(region.native, iters)) / iters


def invalidate_ns(region: Region, iters: int, lines: int = 4096) -> float:
    return float(bench.inval_calls(region.native, region.base, lines, iters)) / iters


class CopySource:
    """A host buffer (touched, so it is real memory) to copy into the region from."""

    def __init__(self, region: Region, nbytes: int) -> None:
        self.nbytes = nbytes
        self.array = np.full(nbytes, 0x5A, dtype=np.uint8)
        self.ptr = bench.host_pointer(region.native, self.array)


def copy_gbps(region: Region, src: CopySource, nbytes: int, chunk: int, nt: bool,
              offset: int = 0) -> float:
    """GB/s (1e9 bytes/s) copying nbytes into the region in chunks (nt: non-temporal)."""
    nbytes = nbytes // chunk * chunk
    ns = bench.copy(region.native, region.base, offset, src.ptr, nbytes, chunk, nt)
    return nbytes / max(1, int(ns))


def read_gbps(region: Region, dst: Any, nbytes: int, chunk: int = READ_CHUNK) -> float:
    """GB/s reading nbytes out of the region through the seam (invalidate + copy out)."""
    nbytes = max(chunk, nbytes // chunk * chunk)
    return nbytes / max(1, bench.seam_read_pass(region.native, dst, region.base, nbytes, chunk))


@dataclass(frozen=True)
class Together:
    """One pass of several writers released together: GB/s while all of them were writing
    (from the first start to the last finish when they never all were), how far apart (ns)
    they started, how long they all wrote at once, and how many passes it took to get one
    where they did (``together``: the last pass did)."""

    gbps: float
    span_ns: int
    skew_ns: int
    overlap_ns: int
    passes: int = 1

    @property
    def together(self) -> bool:
        """All of them were writing for at least half of the pass."""
        return 2 * self.overlap_ns >= self.span_ns


TOGETHER_PASSES = 8  # passes tried for one where the writers really ran together


def write_together(region: Region, src: CopySource, nbytes: int, chunk: int, nt: bool,
                   writers: int, stagger_ns: int = 0) -> Together:
    """GB/s of ``writers`` C threads writing nbytes together into disjoint parts of the region,
    released by a spin barrier, over the time all of them were writing. Python threads behind
    a barrier started up to a scheduler slice apart on the busy 2-core VM (two writers then
    wrote one after the other, and the figure read one writer plus a gap); even spinning C
    threads do when another process preempts one of them at the release, and a writer
    preempted mid-pass leaves the others writing alone. So the figure is the bytes written
    while all of them were writing over that time, and a pass where they were not for at least
    half of it (:attr:`Together.together`) is run again, up to TOGETHER_PASSES times (the last
    counts, from the first start to the last finish). ``stagger_ns`` plants a start skew
    (writer i starts i x stagger_ns late): tests show the check catches it."""
    per = (nbytes // writers) // chunk * chunk
    if per <= 0:
        raise DeviceError(f"{nbytes} bytes is too little for {writers} writers of {chunk} B chunks",
                          "use a larger region")
    got = Together(0.0, 1, 0, 0)
    for attempt in range(1, TOGETHER_PASSES + 1):
        try:
            p = cdevmodel.write_together(region.native, region.base, per, src.ptr, src.nbytes, chunk,
                                         nt, writers, stagger_ns)
        except CoreError as exc:
            raise DeviceError(f"{writers} writers could not be run together ({exc.problem})",
                              "run with fewer writers") from None
        span = max(1, p.span_ns)
        got = Together(per * writers / span, span, p.skew_ns, p.overlap_ns, attempt)
        if got.together:
            got = replace(got, gbps=p.overlap_bytes / max(1, p.overlap_ns))
            break
    return got


def copy_writers_gbps(region: Region, src: CopySource, nbytes: int, chunk: int, nt: bool,
                      writers: int) -> float:
    """GB/s of ``writers`` threads writing nbytes together into disjoint parts of the region,
    while all of them were writing (:func:`write_together`)."""
    return write_together(region, src, nbytes, chunk, nt, writers).gbps


# ------------------------------------------------------------------------------------------
# The region to characterise


@contextmanager
def characterization_region(profile: Profile, size: int, *, device: str | None = None,
                            allow_destructive: bool = False, sysfs_root: str = "/",
                            site: Site | None = None) -> Iterator[tuple[Region, int | None]]:
    """Map ``size`` bytes of the memory a profile names (on ``site``, when the run has one);
    yields (region, NUMA node or None)."""
    site = replace(site, profile=profile) if site is not None else Site(
        profile, device=device, allow_destructive=allow_destructive, sysfs_root=sysfs_root)
    with site.map(size, what="characterisation") as region:
        yield region, site.choice.node


def _numa_info(node: int | None, site: Site) -> NumaNode | None:
    return site.numa_node(node)


# ------------------------------------------------------------------------------------------
# The characterisation


@dataclass(frozen=True)
class Plan:
    """How much to measure: buffer sizes and how samples are taken (``samples``)."""

    samples: SamplePlan
    chase_bytes: int
    copy_bytes: int
    copy_chunks: tuple[int, ...] = COPY_CHUNKS

    @property
    def runs(self) -> int:
        return self.samples.min_pairs

    @classmethod
    def for_profile(cls, profile: Profile, quick: bool, llc: int, runs: int | None = None) -> Plan:
        """Many short samples (0.5 ms quick, 1 ms otherwise; each a few hundred calls of the
        C loop or more): on a shared machine another process's time slice (a few ms) lands in
        a few samples, which read long, and the median of many short samples stays clear of
        them, where every long sample would carry a share. Precision and pair limits follow
        the profile's ``measurement``."""
        m = profile.measurement
        if quick:
            sp = SamplePlan(min_sample_s=0.0005, precision=m.precision_pct / 100, min_pairs=15,
                            max_pairs=41, budget_s=1.5, warmup=2)
            sizes = (64 << 20, 4 << 20)
        else:
            sp = SamplePlan(min_sample_s=0.001, precision=m.precision_pct / 200,
                            min_pairs=max(m.min_pairs, 21), max_pairs=max(m.max_pairs, 81),
                            budget_s=min(m.budget_s, 10.0), warmup=3)
            chase = round_up(2 * llc, HUGE_2M)
            sizes = (chase, 8 << 20)
        if runs is not None:
            if runs < 1:
                raise DeviceError(f"--runs {runs}: at least one sample is needed", "pass --runs 6 or more")
            sp = replace(sp, min_pairs=runs, max_pairs=runs)
        return cls(sp, *sizes)


def _iters(once: Callable[[int], int], plan: SamplePlan, floor: int = 16) -> int:
    """Operations per C call so that a call lasts about a fifth of a sample."""
    probe = 64
    per = max(1, int(once(probe))) / probe
    return max(floor, min(10_000_000, int(plan.min_sample_s * 1e9 / 5 / per)))


def _cost(once: Callable[[int], int], plan: SamplePlan) -> list[float]:
    """ns per operation, calibrated samples: ``once(n)`` returns ns for n ops."""
    iters = _iters(once, plan)
    sampler = Sampler(lambda: Timed(float(iters), once(iters) / 1e9), "cost")
    return [v * 1e9 for v in measure_single(sampler, plan).a]


def _rate(once: Callable[[], float], nbytes: int, plan: SamplePlan) -> list[float]:
    """GB/s, calibrated samples: ``once()`` returns GB/s for one pass of nbytes."""
    def timed() -> Timed:
        gbps = once()
        return Timed(float(nbytes), nbytes / gbps / 1e9)
    return [v / 1e9 for v in measure_single(Sampler(timed, "rate"), plan).a]


class _Model:
    """The region's device model around one figure: reset before, what it did after."""

    def __init__(self, region: Region) -> None:
        self.region = region

    @contextmanager
    def figure(self, kind: str, out: dict[str, Any]) -> Iterator[None]:
        self.region.reset_model()
        yield
        st: ModelStats | None = self.region.model_stats()
        if st is not None:
            ops = st.ops[kind]
            out["model"] = {"kind": kind, "ops": ops.ops, "short_fraction": ops.short_fraction,
                            "mean_short_ns": ops.mean_short_ns, "utilisation": st.utilisation,
                            "multiplier": st.multiplier}


def characterize(profile: Profile, *, quick: bool = False, runs: int | None = None,
                 device: str | None = None, allow_destructive: bool = False,
                 sysfs_root: str = "/", applied_model: DeviceModel | None = None,
                 scale: float = 1.0, site: Site | None = None) -> Characterization:
    """Measure the memory a profile names and compare it with the profile's device-model
    targets (emulated) or expected figures (real device).

    ``applied_model`` replaces the device model the region really carries while the targets
    stay the profile's: tests plant a miscalibrated seam there to show the check catches it.
    ``scale`` lengthens every figure's sampling budget (the retry of a noisy measurement).
    """
    llc = llc_bytes(sysfs_root)
    plan = Plan.for_profile(profile, quick, llc, runs)
    if scale != 1.0:
        plan = replace(plan, samples=plan.samples.scaled(scale))
    size = max(plan.chase_bytes, plan.copy_bytes, profile.memory.size_mib << 20)
    load()  # calibrate the TSC before any target is converted to cycles
    region_profile = profile if applied_model is None else replace(profile, device_model=applied_model)
    site = site or Site(profile, device=device, allow_destructive=allow_destructive, sysfs_root=sysfs_root)
    with characterization_region(region_profile, size, site=site) as (region, node):
        targets = device_model_for(profile, region.backend)
        # on a worker thread: Ctrl-C stops the measurement at its next C call (harness.interrupt)
        figures = in_worker(lambda: _measure_all(region, profile, plan, llc, targets), "cxl-characterize")
        info = region.info()
        numa = _numa_info(node, site)
        if numa is not None:
            _attach_hmat(figures, numa)
        return Characterization(
            profile=profile.name, backend=region.backend, region=info.to_dict(),
            injected=targets.to_dict() if targets is not None else {}, llc_bytes=llc,
            quick=quick, figures=figures,
            numa_node=None if numa is None else {
                "id": numa.id, "read_latency_ns": numa.read_latency_ns,
                "write_latency_ns": numa.write_latency_ns,
                "read_bandwidth_mbps": numa.read_bandwidth_mbps,
                "write_bandwidth_mbps": numa.write_bandwidth_mbps},
        )


def _measure_all(region: Region, profile: Profile, plan: Plan, llc: int,
                 model: DeviceModel | None) -> list[Figure]:
    exp = profile.expected
    sp = plan.samples
    tracker = _Model(region)
    figures: list[Figure] = []

    def target(value: float) -> dict[str, Any]:
        assert model is not None
        return {"expected": value, "tolerance_pct": model.tolerance_pct, "target": True}

    def add(fig: Figure) -> None:
        figures.append(fig)

    def measured(fn: Callable[[], list[float]], kind: str, params: dict[str, Any],
                 stated: bool) -> tuple[list[float], list[float] | None]:
        """The figure's samples with the model, and -- for a figure the model states -- the
        host's own capability right after: the same samples with the model padding nothing."""
        with tracker.figure(kind, params):
            samples = fn()
        if not stated:
            return samples, None
        with region.unpadded():
            return samples, fn()

    # load latency
    emulated = model is not None and (model.load_ns > 0 or model.read_bw_gbps > 0)
    chase = min(EMULATED_CHASE_BYTES if emulated else plan.chase_bytes, region.size)
    params: dict[str, Any] = {"region_bytes": chase, "llc_bytes": llc, "exceeds_llc": chase > llc,
                              "cache_resident_by_design": emulated}
    stated = model is not None and model.load_ns > 0
    lat, host = measured(lambda: _cost(lambda n: bench.pointer_chase(
        region.native, region.base, chase, n, 1), sp), "load", params, stated)
    add(Figure("load_latency_ns", "load latency (pointer chase, invalidate before each load)", "ns",
               lat, host=host, params=params, **(target(model.load_ns) if model and stated
                                                 else _expect(exp.load_latency_ns))))

    # flush + fence, one fence per 1, 2 and 4 lines
    it = _iters(_flush_fence_once(region, 1), sp)  # per call, for the interleaved pairs
    per: dict[int, list[float]] = {}
    for k in (1, 2, 4):
        params = {"lines_per_fence": k}
        stated = model is not None and model.flush_fence_ns > 0
        per[k], host = measured(partial(_cost, _flush_fence_once(region, k), sp), "flush_fence",
                                params, stated)
        name = "flush_fence_ns" if k == 1 else f"flush_fence_{k}lines_ns"
        label = ("store + flush + fence, one fence per line" if k == 1
                 else f"store + flush per line, one fence per {k} lines")
        want: dict[str, Any] = {}
        if model is not None and model.flush_fence_ns > 0:
            want = target(model.fence_ns(k) / k)
        elif k == 1:
            want = _expect(exp.flush_fence_ns)
        add(Figure(name, label, "ns/line", per[k], host=host, params=params, **want))

    # the amortisation, as a same-run ratio of interleaved pairs
    def line_sampler(k: int) -> Sampler:
        return Sampler(lambda: Timed(float(it), bench.store_flush_fence(
            region.native, region.base, 4096, k, it) / 1e9), "cost")
    pairs = measure_pairs(line_sampler(1), line_sampler(2), sp)
    goal = model.fence_ns(1) / (model.fence_ns(2) / 2) if model and model.flush_fence_ns > 0 else None
    add(Figure("fence_amortisation", "speed-up of one fence per two lines over one fence per line "
               "(same run, interleaved pairs)", "x", pairs.ratios,
               params={"goal": profile.targets.ratios.fence_amortisation, "model_predicts": goal,
                       "stopped": pairs.stopped}))

    params = {"lines": 4096}
    with tracker.figure("load", params):
        inv = _cost(lambda n: bench.inval_reload(region.native, region.base, 4096, n), sp)
    add(Figure("inval_reload_ns", "invalidate + reload of a line", "ns/line", inv, params=params))

    # bandwidth
    src = CopySource(region, min(plan.copy_bytes, 4 << 20))
    copy_bytes = min(plan.copy_bytes, region.size)
    for nt in (False, True):
        _write_once(region, src, copy_bytes, 65536, nt)  # first touch and warm-up, not timed
    for nt in (False, True):
        key = exp.nt_copy_bw_gbps if nt else exp.copy_bw_gbps
        for chunk in plan.copy_chunks:
            params = {"bytes": copy_bytes, "chunk": chunk, "nt": nt, "writers": 1}
            want = {}
            if chunk == EXPECTATION_CHUNK:
                if model is not None and model.write_bw_gbps > 0:
                    want = target(model.write_bw_gbps) if nt else {}
                else:
                    want = _expect(key)
            samples, host = measured(partial(_rate, partial(_write_once, region, src, copy_bytes,
                                                            chunk, nt), copy_bytes, sp),
                                     "write", params, bool(want.get("target")))
            kind = "non-temporal" if nt else "regular"
            add(Figure(f"{'nt_' if nt else ''}copy_gbps_{chunk}", f"{kind} copy into the region, "
                       f"{chunk} B chunks", "GB/s", samples, host=host, params=params, **want))
    params = {"bytes": copy_bytes, "chunk": EXPECTATION_CHUNK, "nt": True, "writers": 2}
    stated = model is not None and model.write_bw_gbps > 0
    two, host = measured(lambda: _rate(lambda: copy_writers_gbps(
        region, src, copy_bytes, EXPECTATION_CHUNK, True, 2), copy_bytes, sp), "write", params, stated)
    add(Figure("nt_copy_2writers_gbps", "non-temporal copy into the region, two writers together, "
               f"{EXPECTATION_CHUNK} B chunks", "GB/s", two, host=host, params=params,
               **(target(model.write_bw_gbps) if model and stated else {})))
    if model is not None and model.read_bw_gbps > 0:
        read_bytes = min(copy_bytes, 16 << 20)
        dst = cregion.scratch(region.native, READ_CHUNK)
        params = {"bytes": read_bytes, "chunk": READ_CHUNK}
        rd, host = measured(lambda: _rate(lambda: read_gbps(region, dst, read_bytes), read_bytes, sp),
                            "load", params, True)
        add(Figure("read_gbps", f"read out of the region (invalidate + copy out), {READ_CHUNK >> 20} MiB "
                   "chunks", "GB/s", rd, host=host, params=params, **target(model.read_bw_gbps)))
    return figures


def _flush_fence_once(region: Region, lines_per_fence: int) -> Callable[[int], int]:
    def once(n: int) -> int:
        return bench.store_flush_fence(region.native, region.base, 4096, lines_per_fence, n)
    return once


def _write_once(region: Region, src: CopySource, nbytes: int, chunk: int, nt: bool) -> float:
    """GB/s of one pass writing nbytes from a cache-resident source (as the publishers do)."""
    nbytes = nbytes // chunk * chunk
    ns = bench.write(region.native, region.base, 0, nbytes, src.ptr, src.nbytes, chunk, nt)
    return nbytes / max(1, int(ns))


def _attach_hmat(figures: list[Figure], node: NumaNode) -> None:
    for f in figures:
        if f.name == "load_latency_ns" and node.read_latency_ns is not None:
            f.firmware, f.firmware_label = float(node.read_latency_ns), f"HMAT read latency, node {node.id}"
        elif f.unit == "GB/s" and node.write_bandwidth_mbps is not None:
            f.firmware = node.write_bandwidth_mbps / 1000.0
            f.firmware_label = f"HMAT write bandwidth, node {node.id}"


# ------------------------------------------------------------------------------------------
# Emulation accuracy (an emulated device costs what its model says)


@dataclass
class Accuracy:
    """Measured flush+fence cost per line on a region whose model targets ``target_ns``, as
    ratios to the target, and the verdict: MET when the whole 95% interval is within
    +-tolerance of 1, MISSED when wholly outside, INCONCLUSIVE (noisy machine) otherwise."""

    target_ns: float
    applied_ns: float
    ratios: Samples
    verdict: Verdict
    reason: str
    seconds: float
    busy: float | None = None  # other processes' median CPU share during the samples

    def to_dict(self) -> dict[str, Any]:
        return {"target_ns": self.target_ns, "applied_ns": self.applied_ns,
                "ratio": self.ratios.to_dict(), "verdict": str(self.verdict), "reason": self.reason,
                "seconds": self.seconds, "busy": self.busy}


ACCURACY_CALL_S = 50e-6  # one C call of the accuracy loop: ~50 us of operations


def emulation_accuracy(target_ns: float, plan: SamplePlan, *, applied_ns: float | None = None,
                       tolerance: float = 0.05, iters: int | None = None) -> Accuracy:
    """Measure what a flush+fence costs on a region whose device model targets ``target_ns``.

    ``applied_ns`` (default: the target) is what the region's model really carries: tests
    plant a wrong value there to show that the check catches a miscalibrated seam.

    Each sample is one short C call (``iters`` operations, by default ~50 us of them) and the
    plan should ask for many (``min_sample_s`` well under a call). A padded operation never
    gets back time that the kernel or the hypervisor takes from its thread: measured on the
    2-core CI VM, interruptions landing in the spin-wait carried 1.6-4.9 % of every 2 ms
    sample (per operation the median was on target), which read as a clean model paying
    +3-7 %. Most 50 us samples carry none, and their median is the model's own accuracy.
    ``busy`` is other processes' share of the CPUs over the whole measurement (a sample is
    too short for /proc/stat's ticks)."""
    from harness.noise import CpuMeter

    applied = target_ns if applied_ns is None else applied_ns
    n = iters or max(16, int(ACCURACY_CALL_S * 1e9 / max(target_ns, 50.0)))
    model = DeviceModel(flush_fence_ns=applied, host_flush=False)
    with Region.emulated(8 << 20, hugepages=True, device_model=model) as region:
        sampler = Sampler(lambda: Timed(float(n), bench.store_flush_fence(
            region.native, region.base, 4096, 1, n) / 1e9), "cost")
        with CpuMeter().span() as span:
            res = measure_single(sampler, plan)
    ratios = Samples.of([v * 1e9 / target_ns for v in res.a])
    # a spin-wait loses whatever time another process takes from it: on a busy machine only
    # what that much noise cannot explain is decided (the test retries, then skips)
    busy = span.other_share
    verdict, reason = band_verdict(ratios, 1.0, tolerance, busy)
    return Accuracy(target_ns, applied, ratios, verdict, reason, res.seconds, busy)


GUARD_OPS = ("fence", "invalidate+load", "copy 64 B", "flush+fence")


def ci_overhead_ns(plan: SamplePlan, *, iters: int = 100_000) -> dict[str, Samples]:
    """What the device-model hooks cost per operation on a region without a model (``ci``):
    the seam's operation against the raw primitive it wraps, interleaved pairs, as ns per op
    (A - B). Only meaningful while no region with a model is open in this process (one that
    is open makes every seam call look its region up: a planted overhead the tests use)."""
    out: dict[str, Samples] = {}
    with Region.emulated(2 << 20, hugepages=True) as region:
        native = region.native

        def side(op: int, seam: int) -> Sampler:
            return Sampler(lambda: Timed(float(iters), bench.dm_bench_guard(
                native, region.base, 64, iters, op, bool(seam)) / 1e9), "cost")
        for op, name in enumerate(GUARD_OPS):
            pairs = measure_pairs(side(op, 1), side(op, 0), plan, ratio=lambda a, b: (a - b) * 1e9)
            out[name] = Samples.of(pairs.ratios, "ns/op")
    return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
