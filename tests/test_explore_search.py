"""Systematic exploration (harness.explore.search): every choice point of a run, with state
hashing and sleep sets, x86-TSO store buffers for the seal's control atomics, and the
non-coherent model's choices."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from harness.checked import ctl_sites, ctl_weaken
from harness.log import LogConfig
from harness.explore import SCOPES, Scope, search, search_scope, search_story, toy_executor


def test_the_search_is_exhaustive_on_a_toy_program() -> None:
    # 2 agents x 2 steps of one control store: each step is two choices (run to the store, run
    # to the step's end), so every schedule is an order of 4 + 4 transitions: C(8, 4).
    for shared in (False, True):
        r = search(toy_executor(2, 2, shared), bound=None, hashing=False, sleep_sets=False)
        assert r.complete and r.executions == math.comb(8, 4)
        r3 = search(toy_executor(3, 1, shared), bound=None, hashing=False, sleep_sets=False)
        assert r3.executions == math.factorial(6) // (2 * 2 * 2)


def test_hashing_and_sleep_sets_prune_the_toy_program() -> None:
    full = search(toy_executor(2, 2, False), bound=None, hashing=False, sleep_sets=False)
    hashed = search(toy_executor(2, 2, False), bound=None, hashing=True, sleep_sets=False)
    slept = search(toy_executor(2, 2, False), bound=None, hashing=False, sleep_sets=True)
    assert hashed.revisits > 0 and hashed.distinct_states < full.points
    assert hashed.executions < full.executions and slept.executions < full.executions
    # a shared word: the 6 orders of the 4 stores must all be tried (sleep sets keep them)
    shared = search(toy_executor(2, 2, True), bound=None, hashing=False, sleep_sets=True)
    assert shared.executions - shared.sleep_cut >= math.comb(4, 2)


def test_a_bound_limits_the_deviations() -> None:
    b0 = search(toy_executor(2, 2, True), bound=0, hashing=False, sleep_sets=False)
    b1 = search(toy_executor(2, 2, True), bound=1, hashing=False, sleep_sets=False)
    assert b0.executions == 1 and 1 < b1.executions < math.comb(8, 4)




def _enter_store() -> int:
    sites = [s for s in ctl_sites() if s["func"] == "scanner_enter" and s["kind"] == "store"]
    assert len(sites) == 1 and sites[0]["order"] == 5  # seq_cst in the source
    return int(sites[0]["id"])


@pytest.mark.checker
def test_the_seal_sites_are_control_sites() -> None:
    funcs = {(s["func"], s["kind"]) for s in ctl_sites()}
    assert {("scanner_enter", "load"), ("scanner_enter", "store"), ("seq_seal", "store"),
            ("seq_seal", "load")} <= funcs


@pytest.mark.checker
def test_clean_publisher_scope_has_no_violation_and_hashing_prunes() -> None:
    r = search_scope(SCOPES[1], tso=True, bound=1, max_seconds=50)
    assert r.clean, r.violations[:2]
    assert r.executions > 100 and r.revisits > 0 and r.distinct_states < r.points
    assert r.sleep_cut > 0


@pytest.mark.checker
def test_a_planted_fault_is_found() -> None:
    r = search_scope(SCOPES[0], fault="pub_no_payload_flush", bound=1, stop_at_first=True)
    assert not r.clean and "unflushed_before_publish" in r.violations[0] and r.executions == 1
    # what broke travels as data beside the message (the patch runner reads it)
    assert r.witness == [] and r.witness_by and "rule:unflushed_before_publish" in r.witness_by
    assert all(f"{b}" in r.violations[0] for b in r.witness_by)


@pytest.mark.checker
def test_a_weakened_seal_store_is_found_under_tso_only() -> None:
    site = _enter_store()
    try:
        ctl_weaken(site, 3)  # seq_cst -> release: the announcement may wait in the store buffer
        found = search_scope(SCOPES[0], tso=True, bound=1, stop_at_first=True)
        # the sequencer sealed the epoch while the announcement still sat in the scanner's store
        # buffer; the scanner then pushed into the sealed buffer (the default schedule shows it)
        assert not found.clean and "rule:push_after_seal" in found.violations[0]
        assert found.witness == []
        story = "\n".join(search_story(SCOPES[0].config(1), found.witness))
        # the story names the store left in the buffer, the sequencer's stale read, the rule
        assert re.search(r"scanner of broker \d stores S->active .*cxl_scanner\.c:\d+: it waits in the "
                         r"store buffer", story), story
        assert "sequencer reads S->active of scanner of broker 0 (value QUIESCENT)" in story, story
        assert "broken: push_after_seal at cxl_scanner.c" in story, story
        # without store buffers the same store is as good as seq_cst: the whole bounded space is clean
        sc = search_scope(SCOPES[0], tso=False, bound=1, stop_at_first=True)
        assert sc.clean and sc.complete and sc.executions > 1000 and sc.witness is None
    finally:
        ctl_weaken(None)
    assert all(s["weak"] == -1 for s in ctl_sites())


@pytest.mark.checker
def test_time_passes_when_every_role_waits_so_an_order5_gap_resolves() -> None:
    from harness.explore import log_executor

    gap = next(s for s in SCOPES if s.name.startswith("order 5 gap"))
    # the default execution alone: the sequencer waits for sequence number 3, which never comes;
    # with the clock frozen that is a stall, unless time passes once every role waits
    r = search(log_executor(gap.config(1), tso=True), bound=0)
    assert r.clean and r.complete and r.executions == 1, r.violations
    # and a gap skipped without its declared-lost markers is then seen at once
    f = search_scope(gap, fault="seq5_gap_no_marker", bound=1, stop_at_first=True)
    assert not f.clean and f.executions == 1 and "check:order5-gaps-explained" in f.violations[0]


@pytest.mark.checker
@pytest.mark.parametrize("which", [0, 1])
def test_time_passes_while_every_role_spins_on_a_crashed_publishers_slot(which: int) -> None:
    from harness.explore import log_executor

    crash = [s for s in SCOPES if s.name.startswith("crash:")][which]
    # the roles never block here: the scanner announces and quiesces, the sequencer seals empty
    # epochs; once each has found nothing to do twice, time passes, the dead slot is declared
    # lost, and the checks (crash-detected among them) pass on the default execution. With one
    # publisher per broker this also needs the scanner to take the dead publisher's lease as
    # its claim: the claim is a plain store its header's fence would have closed.
    r = search(log_executor(crash.config(1), tso=True), bound=0)
    assert r.clean and r.complete and r.executions == 1, r.violations


@pytest.mark.checker
def test_a_dead_writers_unflushed_lines_on_a_reused_slot_are_found() -> None:
    # the crash scope with a 2-slot ring that wraps: publisher 1 takes the space of the slot
    # publisher 0 died in while publisher 0's cache still holds dirty lines of it (a finding,
    # docs/validation.md 5.1): one preemption shows it
    crash = next(s for s in SCOPES if s.name.startswith("crash: 1 broker"))
    wrapping = Scope("crash, wrapping", {**crash.overrides, "pbr_slots": 2})
    r = search_scope(wrapping, bound=1, stop_at_first=True)
    assert not r.clean and "rule:two_writers_one_line" in r.violations[0], r.violations
    story = "\n".join(search_story(wrapping.config(1), r.witness or []))
    assert "1 deviation(s)" in story and "publisher 0 runs instead" in story, story


@pytest.mark.checker
def test_no_two_points_of_one_execution_hash_alike_across_an_access_that_changed_nothing() -> None:
    # A switched-off commit is still an access point but changes no byte: before the agent's
    # position in its step was part of its state, the point after it hashed like the point
    # before, was cut as a revisit, and everything after it was never searched -- here the
    # late count the sequencer never commits (its session line disagrees with its table).
    from harness.explore import log_executor
    from harness.mutate import mutation, sites

    gap = next(s for s in SCOPES if s.name.startswith("order 5 gap:"))
    site = next(s for s in sites() if s.key == "o5_write_clients/commit#6")
    with mutation(site, "delete"):
        pts, _, _ = log_executor(gap.config(1), tso=True)(())
        hashes = [int(p["hash"]) for p in pts]
        assert len(hashes) > 100 and len(set(hashes)) == len(hashes)
        r = search_scope(gap, bound=1, stop_at_first=True, max_seconds=120)
    assert not r.clean and "check:session-lines" in r.violations[0], (r.executions, r.complete)


@pytest.mark.checker
def test_a_lease_beat_left_unflushed_is_found_in_the_crash_scope() -> None:
    # the crash scope's publishers beat once per batch (beat_bytes 256, not 256 KiB), so the
    # beat's flush is within reach of a 300-byte-batch scope
    from harness.mutate import mutation, sites

    crash = next(s for s in SCOPES if s.name.startswith("crash: 1 broker"))
    assert crash.overrides["beat_bytes"] == 256
    with mutation(next(s for s in sites() if s.key == "pub_progress/flush#1"), "delete"):
        r = search_scope(crash, bound=1, stop_at_first=True, max_seconds=60)
    assert not r.clean and r.executions == 1
    assert "rule:unflushed_before_publish" in r.violations[0] and "cxl_publisher.c" in r.violations[0]


@pytest.mark.parametrize("beat", [-1, 1, 63, (1 << 30) + 1])
def test_a_beat_interval_out_of_range_names_the_field(beat: int) -> None:
    from harness.errors import ConfigError
    from harness.checked import small_config

    with pytest.raises(ConfigError, match="beat_bytes"):
        small_config(beat_bytes=beat, slot_timeout_ms=1.0)


# each scope added for a part of the protocol the others never reach, with a site mutant only
# it finds: the default execution is clean, and with the mutant on it breaks at once
SCOPE_PURPOSE = [
    ("order 5 ack 2:", "publish_durable/commit#1", "delete"),
    ("order 5 gap fenced:", "pub_follow_session/invalidate#1", "stale"),
    ("ablations:", "write_header/sfence#2", "fence_late"),
    ("ack 2: 2 brokers", "seq_step/sfence#4", "fence_late"),
    ("order 0 ack 2:", "ack0_step/sfence#2", "delete"),
    ("resumed subscriber:", "sub_resume/invalidate#1", "stale"),
]


@pytest.mark.checker
@pytest.mark.parametrize("prefix, key, kind", SCOPE_PURPOSE)
def test_each_added_scope_reaches_what_it_was_added_for(prefix: str, key: str, kind: str) -> None:
    from harness.explore import log_executor
    from harness.mutate import mutation, sites

    scope = next(s for s in SCOPES if s.name.startswith(prefix))
    clean = search(log_executor(scope.config(1), tso=True), bound=0)
    assert clean.clean and clean.complete and clean.executions == 1, clean.violations
    with mutation(next(s for s in sites() if s.key == key), kind):
        found = search(log_executor(scope.config(1), tso=True), bound=0)
    assert not found.clean and found.executions == 1 and found.witness_by, (prefix, key)


@pytest.mark.checker
def test_an_execution_that_makes_time_pass_early_says_so_to_the_checks() -> None:
    # the default execution of the gap scope never takes the "time passes" option; replaying
    # its first offer of it gives a run whose counters carry one early jump (what
    # order5-gaps-explained takes as the cause of a live client's gap)
    from harness.checked import ExploreSpec, ModelConfig, run_checked

    gap = next(s for s in SCOPES if s.name.startswith("order 5 gap:"))
    cfg, model = gap.config(1), ModelConfig(True, 0.0, 0.0, False, 0, 0.0)
    tick = 6 << 8  # CXL_XO_TICK
    run = run_checked(cfg, model=model, explore=ExploreSpec((), True, True, False, False, ticks=True))
    assert run.early_ticks == 0 and "x_early_ticks" not in run.result.counters
    pts, opts = run.xpoints, run.xopts
    k = next(i for i, p in enumerate(pts)
             if any(int(opts[j]["code"]) == tick for j in range(int(p["opt_lo"]), int(p["opt_lo"]) + int(p["nopts"]))))
    prefix = tuple(int(p["chosen"]) for p in pts[:k]) + (tick,)
    early = run_checked(cfg, model=model, explore=ExploreSpec(prefix, True, True, False, False, ticks=True))
    assert early.early_ticks == 1


def _inside_the_frontier_window(cfg: LogConfig) -> list[str]:
    """Every execution two deviations from the default one that a premature Order 5 release
    needs: the subscriber runs inside a sequencer step (before one of its accesses), and at
    the subscriber's first access the sequencer's first dirty line is written back early.
    Returns what each such execution broke."""
    from harness.explore import log_executor, role_agents

    run, evict = 1 << 8, 4 << 8  # CXL_XO_RUN, CXL_XO_EVICT
    agents = role_agents(cfg)
    seq, sub = agents.index(96), agents.index(100)
    ex = log_executor(cfg, tso=True)

    def codes(pts: Any, opts: Any, k: int) -> set[int]:
        lo, n = int(pts[k]["opt_lo"]), int(pts[k]["nopts"])
        return {int(opts[j]["code"]) for j in range(lo, lo + n)}

    pts, opts, bad = ex(())
    assert bad is None
    broken, tried = [], 0
    for k in range(len(pts)):
        if int(pts[k]["from"]) != seq or int(pts[k]["boundary"]) or run | sub not in codes(pts, opts, k):
            continue
        prefix = tuple(int(p["chosen"]) for p in pts[:k]) + (run | sub,)
        p2, o2, _ = ex(prefix)
        if len(p2) > k + 1 and evict | seq in codes(p2, o2, k + 1):
            tried += 1
            _, _, bad = ex(prefix + (evict | seq,))
            if bad is not None:
                broken += list(bad.by)
    assert tried > 0  # the family is not empty: the check below can fail
    return broken


@pytest.mark.checker
def test_a_premature_order5_release_is_two_deviations_deep_in_the_small_order5_scope() -> None:
    # without the fence between committed_seq and the frontiers, a subscriber inside the
    # sequencer's step sees the frontier (written back early) ahead of committed_seq, releases
    # a slot it has not read, the publisher reuses it, and the subscriber reads the new payload
    from harness.mutate import mutation, sites

    scope = next(s for s in SCOPES if s.name.startswith("order 5 small:"))
    assert _inside_the_frontier_window(scope.config(1)) == []
    with mutation(next(s for s in sites() if s.key == "seq5_step/sfence#2"), "delete"):
        broken = _inside_the_frontier_window(scope.config(1))
    assert "check:payload-checksums" in broken
