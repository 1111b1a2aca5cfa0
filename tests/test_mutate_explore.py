"""Shortest counterexamples: a violating seeded run reduced to a few role steps and told as a
story (harness.explore)."""

from __future__ import annotations

import pytest

from harness.checked import run_checked, small_config
from harness.counterexamples import fault_counterexample
from harness.errors import ConfigError
from harness.explore import role_agents, shrink
from harness.faults import FAULT_CONFIGS
from harness.mutate import MutantOutcome, counterexample, select, sites


@pytest.mark.parametrize("order, roles", [(2, 2 + 2 + 1 + 2), (5, 2 + 2 + 1 + 2), (0, 2 + 2 + 2)])
def test_role_list_matches_the_runner(order: int, roles: int) -> None:
    """Order 5 has a sequencer too: without it in the list the last role (a subscriber) was
    never offered as a preemption and stories named the roles one off."""
    cfg = small_config(seed=1, order=order)
    run = run_checked(cfg)
    agents = role_agents(cfg)
    assert len(agents) == roles and max(run.schedule) == roles - 1
    assert (96 in agents) == (order != 0)


@pytest.mark.checker
def test_a_missing_payload_flush_reduces_to_one_publisher_step() -> None:
    cx = shrink(small_config(seed=1), "rule:unflushed_before_publish", fault="pub_no_payload_flush")
    assert cx.original_steps > 100 and cx.length == 1 and cx.agents[0].startswith("publisher")
    text = "\n".join(cx.story)
    assert "cxl_publisher.c" in text and "never flushed" in text and "unflushed_before_publish" in text


@pytest.mark.checker
def test_an_unsealed_drain_reduces_to_a_few_steps_with_the_sequencer_in_them() -> None:
    cx = shrink(small_config(seed=1), "check:sequencer-broker-order", fault="seq_unsealed_read")
    assert cx.length <= 5 and "sequencer" in cx.agents and cx.after == "round-robin"
    assert any("broken: sequencer-broker-order" in line for line in cx.story)
    # every step is needed: dropping the sequencer's step loses the violation
    assert cx.runs > 1


@pytest.mark.checker
@pytest.mark.parametrize("fault", sorted(FAULT_CONFIGS))
def test_a_fault_planted_in_its_own_configuration_gets_a_counterexample(fault: str) -> None:
    # Order 5's faults live in Order 5 code: in the default (Order 2) configuration nothing of
    # them runs, and the report once listed them as caught with no counterexample
    cx = fault_counterexample(fault, seeds=(1,))
    assert cx.caught and 1 <= cx.steps < cx.original_steps, cx
    assert any("broken:" in line or "rule" in line for line in cx.story), cx.story


def test_a_run_that_shows_nothing_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not show"):
        shrink(small_config(seed=1), "rule:unflushed_before_publish")


@pytest.mark.checker
def test_a_killed_mutant_has_a_counterexample() -> None:
    site = select(sites(), ["sub2_step/invalidate#1"])[0]
    out = MutantOutcome(site.key, site.location, site.op, "stale", ["subscriber"], "killed",
                        by=["rule:read_without_invalidate"], config="order2-ack1-cached-copy", seed=1)
    cx = counterexample(site, out)
    assert cx.length <= 8 and cx.agents[-1].startswith("subscriber")
    assert any("did not invalidate" in line for line in cx.story)
    with pytest.raises(ConfigError):
        counterexample(site, MutantOutcome(site.key, site.location, site.op, "stale", [], "survived"))


@pytest.mark.checker
def test_the_small_publisher_scope_is_clean_under_every_single_preemption() -> None:
    from harness.explore import SCOPES, explore

    scope = SCOPES[1]  # 1 broker x 2 publishers x 2 slots x 1 subscriber
    e = explore(scope, seeds=(1,), steps=(1,))
    nroles = len(role_agents(scope.config(1)))
    assert e.clean, e.violations[:3]
    assert e.depth > 100 and e.executions == 1 + e.depth * nroles
    assert e.distinct_states > 1  # preemptions change the order the roles decide


@pytest.mark.checker
def test_an_unsealed_drain_is_named_by_the_seal_rule_in_whole_steps_and_under_preemption() -> None:
    from harness.explore import SCOPES, explore

    scope = SCOPES[1]
    # the sequencer drains an epoch a scanner is still announced in: whole steps show it as the
    # seal's own rule (before that rule, only a preemption showed its consequence, a batch out
    # of broker order)
    run = run_checked(scope.config(1), fault="seq_unsealed_read")
    assert "push_after_seal" in {f.rule for f in run.errors}
    e = explore(scope, fault="seq_unsealed_read", seeds=(1,), steps=(1,), stop_at_first=True)
    assert not e.clean and "rule:push_after_seal" in e.violations[0]
