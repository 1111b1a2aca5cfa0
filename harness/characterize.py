"""Device characterisation, in the spirit of Intel MLC: what the memory behind a profile costs.

Every figure is measured through the C seam (so injected latency counts exactly as the log
sees it), several times, and reported as median, min, max and relative spread, then compared
with the profile's expectation (pass / fail / no-expectation):

- idle load latency: a dependent pointer chase (invalidate before each load) over a region
  larger than the last-level cache;
- store + flush + fence per line, with one fence per line and with one fence per two lines
  (the seed's amortisation), and the speed-up between the two;
- invalidate + reload per line;
- copy bandwidth into the region, regular and non-temporal, for several chunk sizes.

On an emulated back-end with injected latency the latency figures are also measured with
the injection off, interleaved with the injected runs, and the *added* cost is what the
profile's expectation is compared with (the emulated profiles state the device's cost, not
DRAM's). On a NUMA-node device the firmware's HMAT figures are shown next to the measured.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.discovery import NumaNode, discover
from harness.errors import DeviceError
from harness.native import load
from harness.profiles import Expectation, Profile
from harness.region import HUGE_2M, Injection, Region, apply_injection, round_up
from harness.runner import map_memory, profile_injection

PASS, FAIL, NO_EXPECTATION = "pass", "fail", "no-expectation"
COPY_CHUNKS = (256, 1024, 4096, 65536)
EXPECTATION_CHUNK = 65536  # copy_bw_gbps / nt_copy_bw_gbps are compared at this chunk size


# ------------------------------------------------------------------------------------------
# One measured figure


def summarize(values: list[float]) -> dict[str, float]:
    """median, min, max and spread ((max - min) / median) of a list of samples."""
    med = float(statistics.median(values))
    lo, hi = float(min(values)), float(max(values))
    return {"median": med, "min": lo, "max": hi, "spread": (hi - lo) / med if med else 0.0}


@dataclass
class Figure:
    """A measured quantity: its samples, what it should be, and the verdict."""

    name: str
    label: str
    unit: str
    samples: list[float]
    expected: float | None = None
    tolerance_pct: float | None = None
    # Samples of the same measurement with the injection off (emulated back-ends only):
    # the expectation is then compared with median(samples) - median(baseline).
    baseline: list[float] | None = None
    firmware: float | None = None  # HMAT figure of a NUMA-node device, same unit
    firmware_label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return summarize(self.samples)["median"]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        return summarize(self.samples)["spread"]

    @property
    def compared(self) -> float:
        """The value the expectation is compared with."""
        if self.baseline:
            return self.median - float(statistics.median(self.baseline))
        return self.median

    @property
    def status(self) -> str:
        if self.expected is None or self.tolerance_pct is None:
            return NO_EXPECTATION
        ok = Expectation(self.expected, self.tolerance_pct).within(self.compared)
        return PASS if ok else FAIL

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "label": self.label, "unit": self.unit, "runs": self.runs,
            **summarize(self.samples), "samples": list(self.samples),
            "expected": self.expected, "tolerance_pct": self.tolerance_pct,
            "compared": self.compared, "status": self.status, "params": dict(self.params),
        }
        if self.baseline:
            d["baseline"] = {**summarize(self.baseline), "samples": list(self.baseline)}
        if self.firmware is not None:
            d["firmware"] = {"value": self.firmware, "source": self.firmware_label}
        return d


def _expect(e: Expectation | None) -> dict[str, Any]:
    return {"expected": e.value if e else None, "tolerance_pct": e.tolerance_pct if e else None}


@dataclass
class Characterization:
    profile: str
    backend: str
    region: dict[str, Any]
    injected: dict[str, Any]
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "backend": self.backend, "region": self.region,
            "injected": self.injected, "llc_bytes": self.llc_bytes, "quick": self.quick,
            "numa_node": self.numa_node, "ok": self.ok,
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


def _ptr(region: Region, offset: int = 0) -> Any:
    return region.native.ffi.cast("char *", region.base) + offset


def load_latency_ns(region: Region, nbytes: int, steps: int, seed: int = 1) -> float:
    """ns per dependent load (invalidate + load) over a random cycle of nbytes."""
    ns = region.native.lib.cxl_bench_pointer_chase(region.base, nbytes, steps, seed)
    if ns == 0:
        raise DeviceError(f"pointer chase over {nbytes} bytes could not run", "use a larger region")
    return float(ns) / steps


def store_flush_fence_ns(region: Region, lines_per_fence: int, iters: int, lines: int = 4096) -> float:
    """ns per line: store a word, flush the line, one fence every lines_per_fence lines."""
    ns = region.native.lib.cxl_bench_store_flush_fence(region.base, lines, lines_per_fence, iters)
    return float(ns) / iters


def inval_reload_ns(region: Region, iters: int, lines: int = 4096) -> float:
    return float(region.native.lib.cxl_bench_inval_reload(region.base, lines, iters)) / iters


def flush_ns(region: Region, iters: int, lines: int = 4096) -> float:
    """ns per flush instruction (flushes back to back, one fence at the end)."""
    return float(region.native.lib.cxl_bench_flush_calls(region.base, lines, iters)) / iters


def fence_ns(region: Region, iters: int) -> float:
    return float(region.native.lib.cxl_bench_fence_calls(iters)) / iters


def invalidate_ns(region: Region, iters: int, lines: int = 4096) -> float:
    return float(region.native.lib.cxl_bench_inval_calls(region.base, lines, iters)) / iters


class CopySource:
    """A host buffer (touched, so it is real memory) to copy into the region from."""

    def __init__(self, region: Region, nbytes: int) -> None:
        self.nbytes = nbytes
        self.array = np.full(nbytes, 0x5A, dtype=np.uint8)
        self.ptr = region.native.ffi.cast("char *", region.native.ffi.from_buffer(self.array))


def copy_gbps(region: Region, src: CopySource, nbytes: int, chunk: int, nt: bool,
              offset: int = 0) -> float:
    """GB/s (1e9 bytes/s) copying nbytes into the region in chunks (nt: non-temporal)."""
    nbytes = nbytes // chunk * chunk
    ns = region.native.lib.cxl_bench_copy(_ptr(region, offset), src.ptr, nbytes, chunk, int(nt), 1)
    return nbytes / max(1, int(ns))


# ------------------------------------------------------------------------------------------
# The region to characterise


@contextmanager
def characterization_region(profile: Profile, size: int, *, device: str | None = None,
                            allow_destructive: bool = False,
                            sysfs_root: str = "/") -> Iterator[tuple[Region, int | None]]:
    """Map ``size`` bytes of the memory a profile names; yields (region, NUMA node or None)."""
    with map_memory(profile, size, device=device, allow_destructive=allow_destructive,
                    sysfs_root=sysfs_root, what="characterisation") as (region, choice):
        yield region, choice.node


def _numa_info(node: int | None, sysfs_root: str) -> NumaNode | None:
    if node is None:
        return None
    for n in discover(sysfs_root).numa_nodes:
        if n.id == node:
            return n
    return None


# ------------------------------------------------------------------------------------------
# The characterisation


@dataclass(frozen=True)
class Plan:
    """How much to measure. ``quick`` keeps CI fast (the chase then may fit in the LLC)."""

    runs: int
    chase_bytes: int
    chase_steps: int
    line_iters: int
    copy_bytes: int
    copy_chunks: tuple[int, ...] = COPY_CHUNKS

    @classmethod
    def for_machine(cls, quick: bool, llc: int, runs: int | None = None) -> Plan:
        if quick:
            return cls(runs or 3, 64 << 20, 40_000, 50_000, 32 << 20)
        chase = round_up(2 * llc, HUGE_2M)
        return cls(runs or 5, chase, 200_000, 200_000, max(256 << 20, min(chase, 1 << 30)))


def _interleaved(measure: Callable[[], float], runs: int, injection: Injection | None,
                 ) -> tuple[list[float], list[float] | None]:
    """Samples with the profile's injection and, when there is one, without it (A B A B)."""
    with_inj: list[float] = []
    without: list[float] | None = [] if injection is not None else None
    for _ in range(runs):
        with_inj.append(measure())
        if injection is not None and without is not None:
            apply_injection(Injection())
            try:
                without.append(measure())
            finally:
                apply_injection(injection)
    return with_inj, without


def characterize(profile: Profile, *, quick: bool = False, runs: int | None = None,
                 device: str | None = None, allow_destructive: bool = False,
                 sysfs_root: str = "/") -> Characterization:
    """Measure the memory a profile names and compare it with the profile's expectations."""
    llc = llc_bytes(sysfs_root)
    plan = Plan.for_machine(quick, llc, runs)
    size = max(plan.chase_bytes, plan.copy_bytes, profile.memory.size_mib << 20)
    load()  # calibrate the TSC before any injection is converted to cycles
    with characterization_region(profile, size, device=device, allow_destructive=allow_destructive,
                                 sysfs_root=sysfs_root) as (region, node):
        injection = profile_injection(profile)
        emulated_inj = injection if region.backend in ("emulated", "file") and _any(injection) else None
        try:
            figures = _measure_all(region, profile, plan, llc, emulated_inj)
        finally:
            apply_injection(Injection())
        info = region.info()
        info.injected = {k: v for k, v in vars(injection).items()}
        numa = _numa_info(node, sysfs_root)
        if numa is not None:
            _attach_hmat(figures, numa)
        return Characterization(
            profile=profile.name, backend=region.backend, region=info.to_dict(),
            injected=dict(info.injected), llc_bytes=llc, quick=quick, figures=figures,
            numa_node=None if numa is None else {
                "id": numa.id, "read_latency_ns": numa.read_latency_ns,
                "write_latency_ns": numa.write_latency_ns,
                "read_bandwidth_mbps": numa.read_bandwidth_mbps,
                "write_bandwidth_mbps": numa.write_bandwidth_mbps},
        )


def _any(inj: Injection) -> bool:
    return any(v > 0 for v in (inj.flush_ns, inj.fence_ns, inj.invalidate_ns, inj.write_bw_gbps))


def _measure_all(region: Region, profile: Profile, plan: Plan, llc: int,
                 inj: Injection | None) -> list[Figure]:
    exp = profile.expected
    figures: list[Figure] = []
    chase = min(plan.chase_bytes, region.size)
    lat, lat0 = _interleaved(lambda: load_latency_ns(region, chase, plan.chase_steps), plan.runs, inj)
    figures.append(Figure(
        "load_latency_ns", "idle load latency (pointer chase, invalidate before each load)", "ns",
        lat, baseline=lat0, **_expect(exp.load_latency_ns),
        params={"region_bytes": chase, "llc_bytes": llc, "exceeds_llc": chase > llc,
                "steps": plan.chase_steps}))

    it = plan.line_iters
    per1, per1_0 = _interleaved(lambda: store_flush_fence_ns(region, 1, it), plan.runs, inj)
    figures.append(Figure(
        "flush_fence_ns", "store + flush + fence, one fence per line", "ns/line", per1,
        baseline=per1_0, **_expect(exp.flush_fence_ns), params={"iters": it, "lines_per_fence": 1}))
    per2, per2_0 = _interleaved(lambda: store_flush_fence_ns(region, 2, it), plan.runs, inj)
    figures.append(Figure(
        "flush_fence_2lines_ns", "store + flush per line, one fence per two lines", "ns/line",
        per2, baseline=per2_0, params={"iters": it, "lines_per_fence": 2}))
    figures.append(Figure(
        "fence_amortisation", "speed-up of one fence per two lines over one fence per line "
        "(same run, pairwise)", "x", [a / b for a, b in zip(per1, per2)],
        params={"goal": profile.targets.ratios.fence_amortisation}))
    inv, inv0 = _interleaved(lambda: inval_reload_ns(region, it), plan.runs, inj)
    figures.append(Figure("inval_reload_ns", "invalidate + reload of a line", "ns/line", inv,
                          baseline=inv0, params={"iters": it}))

    src = CopySource(region, plan.copy_bytes)
    copy_bytes = min(plan.copy_bytes, region.size)
    for nt in (False, True):
        copy_gbps(region, src, copy_bytes, 65536, nt)  # first touch and warm-up, not timed
    for nt in (False, True):
        key = exp.nt_copy_bw_gbps if nt else exp.copy_bw_gbps
        for chunk in plan.copy_chunks:
            samples = [copy_gbps(region, src, copy_bytes, chunk, nt) for _ in range(plan.runs)]
            e = key if chunk == EXPECTATION_CHUNK else None
            kind = "non-temporal" if nt else "regular"
            figures.append(Figure(
                f"{'nt_' if nt else ''}copy_gbps_{chunk}", f"{kind} copy into the region, "
                f"{chunk} B chunks", "GB/s", samples, **_expect(e),
                params={"bytes": copy_bytes, "chunk": chunk, "nt": nt}))
    return figures


def _attach_hmat(figures: list[Figure], node: NumaNode) -> None:
    for f in figures:
        if f.name == "load_latency_ns" and node.read_latency_ns is not None:
            f.firmware, f.firmware_label = float(node.read_latency_ns), f"HMAT read latency, node {node.id}"
        elif f.unit == "GB/s" and node.write_bandwidth_mbps is not None:
            f.firmware = node.write_bandwidth_mbps / 1000.0
            f.firmware_label = f"HMAT write bandwidth, node {node.id}"


# ------------------------------------------------------------------------------------------
# Injection accuracy (emulated profiles mean what they say)


@dataclass
class InjectionAccuracy:
    """Added cost per flush with a requested injected flush delay, as a ratio to the request."""

    requested_ns: float
    added_ns: list[float]  # per run: (time with injection - time without) per flush
    iters: int

    @property
    def median_added_ns(self) -> float:
        return float(statistics.median(self.added_ns))

    @property
    def ratio(self) -> float:
        return self.median_added_ns / self.requested_ns if self.requested_ns else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requested_ns": self.requested_ns, "median_added_ns": self.median_added_ns,
                "ratio": self.ratio, **{f"added_{k}": v for k, v in summarize(self.added_ns).items()},
                "runs": len(self.added_ns), "iters": self.iters}


def injection_accuracy(region: Region, requested_ns: float, *, runs: int = 5,
                       iters: int | None = None, applied_ns: float | None = None) -> InjectionAccuracy:
    """Measure what an injected flush delay really adds, interleaving runs without it.

    ``applied_ns`` (default: the request) is what is really injected: tests plant a wrong
    value there to show that the accuracy check catches a mis-calibrated seam.
    """
    applied = requested_ns if applied_ns is None else applied_ns
    iters = iters or max(2000, int(4e6 / max(requested_ns, 50.0)))  # about 4 ms per sample
    region.native.lib.cxl_calibrate_delay()  # fit the busy-wait to the clock measured here
    added = []
    try:
        for _ in range(runs):
            apply_injection(Injection())
            base = flush_ns(region, iters)
            apply_injection(Injection(flush_ns=applied))
            added.append(flush_ns(region, iters) - base)
    finally:
        apply_injection(Injection())
    return InjectionAccuracy(requested_ns, added, iters)


def zero_injection_overhead_ns(region: Region, *, runs: int = 5, iters: int = 200_000) -> dict[str, float]:
    """Per-op cost of the seam's injection check when an op's own injection is zero while
    injection is on for another op (so the seam's enabled path is taken): flush, fence and
    invalidate, each as median(time with that state - time with injection off)."""
    ops: dict[str, tuple[Callable[[], float], Injection]] = {
        "flush": (lambda: flush_ns(region, iters), Injection(invalidate_ns=250.0)),
        "fence": (lambda: fence_ns(region, iters), Injection(invalidate_ns=250.0)),
        "invalidate": (lambda: invalidate_ns(region, iters), Injection(flush_ns=250.0)),
    }
    out = {}
    try:
        for name, (measure, on) in ops.items():
            diffs = []
            for _ in range(runs):
                apply_injection(Injection())
                off = measure()
                apply_injection(on)
                diffs.append(measure() - off)
            out[name] = float(statistics.median(diffs))
    finally:
        apply_injection(Injection())
    return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
