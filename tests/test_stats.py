"""The statistics behind every verdict: intervals, outliers, MET/MISSED/INCONCLUSIVE, adaptive
pairs and significance of a change. Deterministic inputs, so nothing here is a timing test."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from harness.stats import (
    Plan,
    Sampler,
    Samples,
    Timed,
    Verdict,
    compare_samples,
    judge,
    measure_pairs,
    measure_single,
    median_interval_ranks,
    settle,
)


def test_interval_ranks_have_the_stated_coverage() -> None:
    assert median_interval_ranks(5)[2] == pytest.approx(1 - 2 / 32)  # [min, max] of 5: 93.75%
    lo, hi, cov = median_interval_ranks(6)
    assert (lo, hi) == (0, 5) and cov == pytest.approx(1 - 2 / 64) and cov >= 0.95
    lo, hi, cov = median_interval_ranks(12)
    assert (lo, hi) == (2, 9) and cov == pytest.approx(1 - 2 * 79 / 4096)
    # coverage of an exact binomial: simulated, the interval holds the true median ~>= 95%
    rng = random.Random(7)
    hits = 0
    for _ in range(2000):
        s = Samples.of([rng.gauss(0.0, 1.0) for _ in range(20)])
        lo_v, hi_v = s.interval
        hits += lo_v <= 0.0 <= hi_v
    assert hits / 2000 >= 0.94


def test_samples_figures() -> None:
    s = Samples.of([1.0, 2.0, 3.0, 4.0, 100.0, 2.5, 3.5])
    assert s.median == 3.0 and s.n == 7
    assert s.outliers == (4,)  # 100 is outside Tukey's fences, flagged and kept
    assert 100.0 in s.values and s.spread == pytest.approx(99.0 / 3.0)
    assert s.text(".1f").startswith("3.0 [") and s.text().endswith("n=7")
    d = s.to_dict()
    assert d["interval"] == list(s.interval) and d["outliers"] == [4] and d["samples"][4] == 100.0
    with pytest.raises(ValueError):
        Samples.of([])
    with pytest.raises(ValueError):
        Samples.of([1.0, math.nan])


def _tight(center: float, n: int = 12, width: float = 0.004) -> Samples:
    return Samples.of([center + width * (i - n / 2) / n for i in range(n)])


def test_verdicts_each_way() -> None:
    assert judge(_tight(1.05), 1.0, "min", precision=0.03).verdict is Verdict.MET
    assert judge(_tight(0.95), 1.0, "min", precision=0.03).verdict is Verdict.MISSED
    assert judge(_tight(0.95), 1.0, "max", precision=0.03).verdict is Verdict.MET
    assert judge(_tight(1.05), 1.0, "max", precision=0.03).verdict is Verdict.MISSED
    straddle = judge(_tight(1.0), 1.0, "min", precision=0.03)
    assert straddle.verdict is Verdict.INCONCLUSIVE and straddle.reason.startswith("straddles")
    noisy = judge(Samples.of([0.8, 1.2, 0.9, 1.1, 1.0, 0.85, 1.15]), 1.0, "min", precision=0.03)
    assert noisy.verdict is Verdict.INCONCLUSIVE and noisy.reason.startswith("too noisy")
    few = judge(Samples.of([2.0, 2.1, 2.2]), 1.0, "min", precision=0.03)
    assert few.verdict is Verdict.INCONCLUSIVE and few.reason.startswith("too few samples")
    err = judge(_tight(1.3), 0.9, "min", precision=0.03, ceiling=1.0)
    assert err.verdict is Verdict.INCONCLUSIVE and err.reason.startswith("measurement error")
    busy = judge(_tight(1.05), 1.0, "min", precision=0.03, busy=0.4)
    assert busy.verdict is Verdict.INCONCLUSIVE and busy.reason.startswith("machine busy")
    assert "40% of the CPUs" in busy.reason
    # far from the bound, the verdict survives the widening by 1 / (1 - 0.4)
    far = judge(_tight(0.3), 1.0, "min", precision=0.03, busy=0.4)
    assert far.verdict is Verdict.MISSED and "decided although" in far.reason
    assert judge(_tight(2.0), 1.0, "min", precision=0.03, busy=0.4).verdict is Verdict.MET
    assert judge(_tight(1.05), 1.0, "min", precision=0.03, busy=0.02).verdict is Verdict.MET
    # a wide interval wholly on one side is still decided: noise alone never hides a result
    assert judge(Samples.of([1.5, 2.5, 2.0, 1.8, 2.2, 1.9]), 1.0, "min",
                 precision=0.03).verdict is Verdict.MET


def _fixed(values: list[float]) -> Sampler:
    it = itertools.cycle(values)
    return Sampler(lambda: Timed(next(it), 1e-4), "rate")


def test_pairs_stop_when_precise_and_keep_going_when_noisy() -> None:
    plan = Plan(min_sample_s=0.0, precision=0.03, min_pairs=6, max_pairs=30, budget_s=60)
    p = measure_pairs(_fixed([2.0]), _fixed([1.0]), plan)
    assert p.stopped == "precise" and len(p.ratios) == 6 and p.samples.median == pytest.approx(2.0)
    noisy = measure_pairs(_fixed([1.0, 3.0, 1.5, 2.5]), _fixed([1.0]), plan)
    assert noisy.stopped == "max_pairs" and len(noisy.ratios) == 30
    budget = measure_pairs(_fixed([1.0, 3.0]), _fixed([1.0]), Plan(0.0, 0.03, 6, 1000, 0.0))
    assert budget.stopped == "budget" and len(budget.ratios) == 6
    single = measure_single(_fixed([5.0]), plan)
    assert single.stopped == "precise" and single.a == [pytest.approx(5.0 / 1e-4)] * 6


def test_calibration_makes_samples_last_long_enough() -> None:
    calls = []

    def once() -> Timed:
        calls.append(1)
        return Timed(1.0, 0.01)

    s = Sampler(once, "cost")
    s.calibrate(0.2)
    assert s.repeats == 20
    calls.clear()
    assert s.sample() == pytest.approx(0.01) and len(calls) == 20 and s.last_seconds == pytest.approx(0.2)


def test_settle_retries_once_with_a_longer_budget() -> None:
    seen: list[float] = []

    def measure(plan: Plan) -> Verdict:
        seen.append(plan.budget_s)
        return Verdict.INCONCLUSIVE if len(seen) == 1 else Verdict.MET

    result, plan = settle(measure, lambda v: v, Plan(budget_s=2.0))
    assert result is Verdict.MET and seen == [2.0, 6.0] and plan.budget_s == 6.0


def test_compare_marks_only_significant_changes() -> None:
    rng = random.Random(3)
    old = [100 + rng.gauss(0, 1) for _ in range(12)]
    same = [100 + rng.gauss(0, 1) for _ in range(12)]
    faster = [110 + rng.gauss(0, 1) for _ in range(12)]
    tiny = [100.8 + rng.gauss(0, 0.01) for _ in range(12)]
    c = compare_samples("x", old, same)
    assert not c.significant and c.better is None and "no significant change" in c.text
    c = compare_samples("x", old, faster)
    assert c.significant and c.better is True and c.p_value is not None and c.p_value < 0.05
    assert compare_samples("x", old, faster, higher_is_better=False).better is False
    # a real but smaller-than-threshold shift is not reported as a change
    assert not compare_samples("x", [100.0 + 0.01 * i for i in range(12)], tiny).significant
    one = compare_samples("x", [1.0], [2.0])
    assert not one.significant and one.p_value is None and "too few" in one.text
