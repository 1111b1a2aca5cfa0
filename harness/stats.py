"""Statistics behind every performance figure and verdict.

One figure per quantity: a :class:`Samples` holds the measured values and computes, once, the
median, its 95% interval, the relative spread and the Tukey outliers; everything that shows a
figure (CLI, summary.json, pyperf.json, the report) reads these.

The interval is the distribution-free confidence interval of the median from order statistics
(the number of samples below the true median is Binomial(n, 1/2)): exact for any continuous
distribution, deterministic (no resampling seed), and honest with few samples -- below six
samples even [min, max] covers the median with less than 95%, and :attr:`Samples.covered` says
so. For a same-run comparison the samples are the pairwise ratios of interleaved A/B pairs, so
a slow drift of the machine cancels within each pair.

A target's verdict (:func:`judge`) follows DESIGN.md 6b: MET when the whole interval is on the
right side of the bound, MISSED when it is wholly on the wrong side, INCONCLUSIVE otherwise,
with the reason (straddles the bound, too noisy for the asked precision, too few samples).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from harness.interrupt import check_stop

CONFIDENCE = 0.95
Kind = Literal["min", "max"]
# Other processes using more than this share of the machine's CPUs while the samples were
# taken make a verdict INCONCLUSIVE: the figure measured the neighbours as much as the log.
BUSY_LIMIT = 0.15


class Verdict(StrEnum):
    MET = "MET"
    MISSED = "MISSED"
    INCONCLUSIVE = "INCONCLUSIVE"


def _binom_cdf_half(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2.0**n


def median_interval_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """0-based ranks (lo, hi) of the order statistics bounding the median's interval, and the
    interval's exact coverage. The widest usable interval is [min, max] (coverage 1 - 2^(1-n))."""
    if n < 1:
        raise ValueError("no samples")
    best = 1  # 1-based rank r: interval [x_(r), x_(n-r+1)], coverage 1 - 2 P(B <= r-1)
    for r in range(1, n // 2 + 1):
        if 1.0 - 2.0 * _binom_cdf_half(r - 1, n) >= confidence:
            best = r
        else:
            break
    coverage = 1.0 - 2.0 * _binom_cdf_half(best - 1, n) if n > 1 else 0.0
    return best - 1, n - best, coverage


@dataclass(frozen=True)
class Samples:
    """Measured values of one quantity; every statistic shown anywhere comes from here."""

    values: tuple[float, ...]
    unit: str = ""
    confidence: float = CONFIDENCE

    @classmethod
    def of(cls, values: Sequence[float], unit: str = "") -> Samples:
        vals = tuple(float(v) for v in values)
        if not vals:
            raise ValueError("a figure needs at least one sample")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"non-finite sample in {vals}")
        return cls(vals, unit)

    @property
    def n(self) -> int:
        return len(self.values)

    @cached_property
    def sorted(self) -> tuple[float, ...]:
        return tuple(sorted(self.values))

    @cached_property
    def median(self) -> float:
        s, n = self.sorted, self.n
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0

    @cached_property
    def _ranks(self) -> tuple[int, int, float]:
        return median_interval_ranks(self.n, self.confidence)

    @property
    def interval(self) -> tuple[float, float]:
        lo, hi, _ = self._ranks
        return self.sorted[lo], self.sorted[hi]

    @property
    def coverage(self) -> float:
        """The exact coverage of :attr:`interval` (>= confidence once n >= 6)."""
        return self._ranks[2]

    @property
    def covered(self) -> bool:
        return self.coverage >= self.confidence

    @property
    def rel_halfwidth(self) -> float:
        lo, hi = self.interval
        return (hi - lo) / 2.0 / abs(self.median) if self.median else math.inf

    @property
    def spread(self) -> float:
        """(max - min) / median: the pyperf-style warning figure, not an interval."""
        return (self.sorted[-1] - self.sorted[0]) / abs(self.median) if self.median else math.inf

    @cached_property
    def outliers(self) -> tuple[int, ...]:
        """Indices (in measurement order) outside Tukey's fences (1.5 IQR); flagged, kept."""
        if self.n < 4:
            return ()
        q1, q3 = _quantile(self.sorted, 0.25), _quantile(self.sorted, 0.75)
        iqr = q3 - q1
        lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        return tuple(i for i, v in enumerate(self.values) if v < lo or v > hi)

    def text(self, fmt: str = ".3f") -> str:
        lo, hi = self.interval
        return f"{self.median:{fmt}} [{lo:{fmt}}, {hi:{fmt}}], n={self.n}"

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval
        return {"n": self.n, "median": self.median, "interval": [lo, hi],
                "confidence": self.confidence, "coverage": self.coverage,
                "method": "order-statistic interval of the median (binomial, distribution-free)",
                "min": self.sorted[0], "max": self.sorted[-1], "spread": self.spread,
                "rel_halfwidth": self.rel_halfwidth, "outliers": list(self.outliers),
                "samples": list(self.values), "unit": self.unit}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# ------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def judge(samples: Samples, bound: float, kind: Kind, *, precision: float,
          ceiling: float | None = None, busy: float | None = None) -> Judgement:
    """The three-way verdict of a target. ``precision`` is the relative half-width the
    profile asks for; ``ceiling`` (for ratios against a baseline that must be a ceiling) turns
    a measurement above it into a measurement error, never MET; ``busy`` is the median share
    of the machine other processes used during the samples (above BUSY_LIMIT: INCONCLUSIVE)."""
    lo, hi = samples.interval
    where = f"{samples.text()} vs {'>=' if kind == 'min' else '<='} {bound:g}"
    if ceiling is not None and lo > ceiling:
        return Judgement(Verdict.INCONCLUSIVE, f"measurement error: {where}, but the whole "
                         f"interval is above {ceiling:g}, so the baseline is not a ceiling")
    if not samples.covered:
        return Judgement(Verdict.INCONCLUSIVE, f"too few samples: {where} (coverage "
                         f"{samples.coverage:.0%} < {samples.confidence:.0%}; n >= 6 needed)")
    note = ""
    if busy is not None and busy > BUSY_LIMIT:
        # Processes taking a share f of the CPUs can slow either side by up to 1 / (1 - f):
        # judge on the interval widened by that factor, so only what noise cannot explain
        # is decided.
        k = 1.0 / (1.0 - min(busy, 0.9))
        lo, hi = min(lo / k, lo * k), max(hi * k, hi / k)
        still = (lo >= bound or hi < bound) if kind == "min" else (hi <= bound or lo > bound)
        if not still:
            return Judgement(Verdict.INCONCLUSIVE, f"machine busy: {where}, but other processes "
                             f"used {busy:.0%} of the CPUs during the samples (limit "
                             f"{BUSY_LIMIT:.0%}; widened by x{k:.2f} the interval reaches the bound)")
        note = (f"; decided although other processes used {busy:.0%} of the CPUs (interval "
                f"widened x{k:.2f} stays clear of the bound)")
    good = lo >= bound if kind == "min" else hi <= bound
    bad = hi < bound if kind == "min" else lo > bound
    if good:
        return Judgement(Verdict.MET, where + note)
    if bad:
        return Judgement(Verdict.MISSED, where + note)
    if samples.rel_halfwidth > precision:
        return Judgement(Verdict.INCONCLUSIVE, f"too noisy: {where}; interval +/-"
                         f"{samples.rel_halfwidth:.1%} wider than the asked +/-{precision:.1%}")
    return Judgement(Verdict.INCONCLUSIVE, f"straddles the bound: {where}")


# ------------------------------------------------------------------------------------------
# Measuring: calibrated samples, adaptive interleaved pairs


@dataclass(frozen=True)
class Timed:
    """One call's work (bytes, batches, lines ...) and the seconds it took."""

    work: float
    seconds: float


@dataclass(frozen=True)
class Plan:
    """How long samples last and when to stop adding pairs (a profile's ``measurement``)."""

    min_sample_s: float = 0.2
    precision: float = 0.03  # relative half-width of the 95% interval
    min_pairs: int = 6
    max_pairs: int = 40
    budget_s: float = 30.0  # per comparison, warm-up and calibration included
    warmup: int = 1

    def scaled(self, factor: float) -> Plan:
        """The same plan with a longer (or shorter) budget: the retry of a noisy measurement."""
        return Plan(self.min_sample_s, self.precision, self.min_pairs,
                    max(self.min_pairs, int(self.max_pairs * factor)), self.budget_s * factor,
                    self.warmup)


Side = Callable[[], Timed]
Metric = Literal["rate", "cost"]  # rate = work / s (higher better); cost = s / work


@dataclass
class Sampler:
    """Repeats one operation until a sample lasts at least ``min_sample_s``."""

    once: Side
    metric: Metric
    repeats: int = 1
    last_seconds: float = 0.0

    def calibrate(self, min_sample_s: float) -> None:
        check_stop()
        t = self.once()
        per = max(t.seconds, 1e-6)
        self.repeats = max(1, min(10_000, math.ceil(min_sample_s / per)))

    def sample(self) -> float:
        work = secs = 0.0
        for _ in range(self.repeats):
            check_stop()  # Ctrl-C: the measurement ends at the next call (harness.interrupt)
            t = self.once()
            work += t.work
            secs += t.seconds
        self.last_seconds = secs
        if work <= 0 or secs <= 0:
            raise ValueError(f"a sample measured no work ({work}) or no time ({secs})")
        return work / secs if self.metric == "rate" else secs / work


@dataclass
class Paired:
    """Interleaved A/B samples and how the measurement stopped."""

    a: list[float]
    b: list[float]
    ratios: list[float]
    seconds: float
    stopped: str  # "precise", "budget", "max_pairs"
    a_repeats: int
    b_repeats: int
    sample_seconds: list[float] = field(default_factory=list)  # mean of A and B per pair
    other_cpu: list[float] = field(default_factory=list)  # other processes' CPU share per pair

    @property
    def samples(self) -> Samples:
        return Samples.of(self.ratios)


def _stopped(values: list[float], t0: float, plan: Plan) -> str | None:
    """Why to stop adding samples now (None: go on): precise enough, or the budget spent."""
    if len(values) < plan.min_pairs:
        return None
    sm = Samples.of(values)
    if sm.covered and sm.rel_halfwidth <= plan.precision:
        return "precise"
    return "budget" if time.monotonic() - t0 >= plan.budget_s else None


def _measure(sides: tuple[Sampler, ...], plan: Plan,
             value: Callable[[list[float]], float]) -> Paired:
    """Calibrate and warm up every side, then take rounds (one sample of each side, in
    order) until :func:`_stopped` or ``max_pairs``; each round's value is ``value(samples)``."""
    from harness.noise import CpuMeter

    t0 = time.monotonic()
    for side in sides:
        side.calibrate(plan.min_sample_s)
    for _ in range(plan.warmup):
        for side in sides:
            side.sample()
    per_side: list[list[float]] = [[] for _ in sides]
    out = Paired(per_side[0], per_side[1] if len(sides) > 1 else [], [], 0.0, "max_pairs",
                 sides[0].repeats, sides[1].repeats if len(sides) > 1 else 0)
    meter = CpuMeter()
    while len(out.ratios) < plan.max_pairs:
        with meter.span() as span:
            got = [side.sample() for side in sides]
        for values, x in zip(per_side, got):
            values.append(x)
        out.ratios.append(value(got))
        out.sample_seconds.append(sum(side.last_seconds for side in sides) / len(sides))
        out.other_cpu.append(span.other_share)
        why = _stopped(out.ratios, t0, plan)
        if why:
            out.stopped = why
            break
    out.seconds = time.monotonic() - t0
    return out


def measure_pairs(a: Sampler, b: Sampler, plan: Plan, *,
                  ratio: Callable[[float, float], float] = lambda x, y: x / y) -> Paired:
    """A B A B ... until the ratio's 95% interval is narrower than ``plan.precision`` (after
    at least ``min_pairs``), ``max_pairs`` is reached, or the budget is spent."""
    return _measure((a, b), plan, lambda got: ratio(got[0], got[1]))


def measure_single(s: Sampler, plan: Plan) -> Paired:
    """One quantity on its own (e.g. a drain rate): samples until its interval is precise."""
    return _measure((s,), plan, lambda got: got[0])


# ------------------------------------------------------------------------------------------
# Comparing two runs


@dataclass(frozen=True)
class Change:
    """Old vs new samples of one figure: significant only if a two-sided Mann-Whitney U test
    at ``alpha`` rejects equality and the medians differ by more than ``threshold``."""

    name: str
    old: float
    new: float
    pct: float
    p_value: float | None
    significant: bool
    better: bool | None  # None when not significant or direction unknown
    text: str


def compare_samples(name: str, old: Sequence[float], new: Sequence[float], *,
                    higher_is_better: bool | None = True, alpha: float = 0.05,
                    threshold: float = 0.02) -> Change:
    o, n = Samples.of(old), Samples.of(new)
    pct = (n.median - o.median) / abs(o.median) if o.median else math.inf
    p: float | None = None
    if o.n >= 2 and n.n >= 2:
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(list(old), list(new), alternative="two-sided").pvalue)
    sig = p is not None and p < alpha and abs(pct) > threshold
    better = None if not sig or higher_is_better is None else ((pct > 0) == higher_is_better)
    if p is None:
        text = f"{pct:+.1%} (too few samples to test)"
    elif sig:
        text = f"{pct:+.1%} significant (Mann-Whitney p={p:.3f})"
    else:
        text = f"{pct:+.1%} no significant change (p={p:.2f}, threshold {threshold:.0%})"
    return Change(name, o.median, n.median, pct, p, sig, better, text)


def settle(measure: Callable[[Plan], Any], verdict_of: Callable[[Any], Verdict], plan: Plan, *,
           factor: float = 3.0) -> tuple[Any, Plan]:
    """Measure with ``plan``; when the verdict is INCONCLUSIVE, measure once more with a
    budget ``factor`` times longer. Returns the last result and the plan it used: a caller
    that still sees INCONCLUSIVE reports (or skips) with the reason, never guesses."""
    result = measure(plan)
    if verdict_of(result) is Verdict.INCONCLUSIVE:
        plan = plan.scaled(factor)
        result = measure(plan)
    return result, plan
