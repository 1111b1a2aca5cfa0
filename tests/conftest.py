"""Shared test helpers: timing verdicts that retry with a longer budget, then skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.results import TargetCheck
from harness.stats import Plan, Verdict, settle

# Short samples for CI: the verdict machinery is what is tested; a longer budget on retry.
CI_PLAN = Plan(min_sample_s=0.05, precision=0.03, min_pairs=6, max_pairs=24, budget_s=4.0)


def decided(measure: Callable[[Plan], Any], judge: Callable[[Any], TargetCheck],
            plan: Plan = CI_PLAN) -> tuple[Any, TargetCheck]:
    """Measure and judge; INCONCLUSIVE twice (the second time with 3x the budget) skips the
    test with the reason, so a noisy machine never decides a test by chance."""
    result, _ = settle(measure, lambda r: judge(r).verdict, plan)
    check = judge(result)
    if check.verdict is Verdict.INCONCLUSIVE:
        pytest.skip(f"machine too noisy to decide {check.id}: {check.reason}")
    return result, check
