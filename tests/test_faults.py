"""The checked build, the non-coherent model and the fault catalogue (flush/fence issue)."""

from __future__ import annotations

import time

import pytest

from harness.checked import ModelConfig, fault_names, rule_names, run_checked, small_config
from harness.faults import QUICK, run_catalogue, run_clean, run_fault
from harness.log import LogHandle, format_region
from harness.region import Region

# What must name each planted defect: the trace rule for flush/fence/invalidate defects, the
# invariant that breaks for protocol defects. Each outcome must include its expected tag.
EXPECTED = {
    "pub_no_payload_flush": "rule:unflushed_before_publish",
    "pub_fence_before_flush": "rule:unfenced_before_publish",
    "pub_no_hdr_flush_line0": "rule:unflushed_before_publish",
    "pub_no_hdr_flush_line1": "rule:unflushed_before_publish",
    "pub_no_hdr_fence": "rule:unfenced_before_publish",
    "pub_no_token_flush": "rule:publish_not_flushed",
    "pub_token_before_body": "rule:body_after_token",
    "pub_ready_flag": "check:shared-memory-sane",
    "pub_reuse_early": "check:payload-integrity",
    "scan_no_invalidate_token": "rule:read_without_invalidate",
    "scan_no_invalidate_body": "rule:read_without_invalidate",
    "scan_skip_empty": "check:dense-sequence",
    "seq_unsealed_read": "check:broker-order",
    "seq_dup_identity": "check:no-duplicates",
    "seq_goi_token_first": "rule:body_after_token",
    "seq_no_goi_flush": "rule:unflushed_before_publish",
    "seq_no_goi_fence": "rule:unfenced_before_publish",
    "seq_commit_unflushed": "rule:unflushed_before_publish",
    "seq_ack_before_order": "check:ack-after-order",
    "seq_no_frontier_flush": "rule:publish_not_flushed",
    "sub_no_invalidate_goi": "rule:read_without_invalidate",
    "sub_no_invalidate_payload": "rule:read_without_invalidate",
    "sub_no_invalidate_commit": "rule:read_without_invalidate",
    "pub_no_invalidate_frontier": "rule:read_without_invalidate",
    "seq_no_fence_at_all": "rule:unfenced_before_publish",
    "seq5_hold_release_unordered": "check:client-order",
    "seq5_late_reordered": "check:lost-markers",
    "seq5_gap_no_marker": "check:client-order",
    "seq5_marker_unflushed": "rule:unflushed_before_publish",
}


def test_catalogue_is_complete() -> None:
    assert set(fault_names()) == set(EXPECTED), "every fault has an expected detector"
    assert set(QUICK) <= set(EXPECTED)


@pytest.mark.checker
@pytest.mark.parametrize("name", QUICK)
def test_quick_fault_is_caught_by_the_right_check(name: str) -> None:
    outcome = run_fault(name)
    assert outcome.caught, outcome
    assert EXPECTED[name] in outcome.by, (name, outcome.by, outcome.diagnostic)


@pytest.mark.checker
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(EXPECTED) - set(QUICK)))
def test_every_other_fault_is_caught(name: str) -> None:
    outcome = run_fault(name)
    assert outcome.caught and EXPECTED[name] in outcome.by, (name, outcome.by)


@pytest.mark.checker
def test_whole_catalogue_in_one_run() -> None:
    """All 29 faults (about two seconds): each caught, and the fault-free runs clean."""
    res = run_catalogue(clean_runs=4)
    missed = [(o.name, o.by) for o in res.outcomes if not o.caught or EXPECTED[o.name] not in o.by]
    assert not missed and not res.clean_failures and res.ok, (missed, res.clean_failures)


@pytest.mark.checker
def test_correct_protocol_is_clean_over_100_seeded_runs() -> None:
    failures, messages = run_clean(100, first_seed=10_000)
    assert failures == [], failures[:3]
    assert messages == 100 * 600


def test_model_produces_real_wrong_results_for_a_missing_flush() -> None:
    """Without the payload flush the subscriber really reads stale bytes: a checksum error,
    not only a rule finding."""
    run = run_checked(small_config(seed=3), fault="pub_no_payload_flush")
    assert run.result.counters["sub_checksum_errors"] if "sub_checksum_errors" in run.result.counters \
        else any(c.id == "payload-checksums" and not c.ok for c in run.result.checks)
    bad = [f for f in run.errors if f.rule == "unflushed_before_publish"]
    assert bad and "cxl_publisher.c" in bad[0].location and bad[0].agent.startswith("publisher")


def test_same_seed_same_run() -> None:
    a = run_checked(small_config(seed=42), fault="seq_unsealed_read")
    b = run_checked(small_config(seed=42), fault="seq_unsealed_read")
    assert a.events == b.events
    assert [c.id for c in a.result.failed()] == [c.id for c in b.result.failed()]
    assert a.model == b.model


def test_adversaries_are_active() -> None:
    run = run_checked(small_config(seed=5), model=ModelConfig(p_early=0.3, p_evict=0.3))
    assert run.clean, [f.describe() for f in run.errors]
    assert run.model["early_writebacks"] > 0 and run.model["evictions"] > 0


def test_rules_have_stable_names() -> None:
    assert rule_names()[:8] == [
        "unflushed_before_publish", "unfenced_before_publish", "nt_unfenced_before_publish",
        "body_after_token", "read_without_invalidate", "two_writers_one_line",
        "record_read_without_token", "publish_not_flushed"]


def test_checked_build_slowdown_is_bounded() -> None:
    """Same workload, same single-thread scheduler: the checked build with the model on stays
    within 20x of the normal build (medians of three)."""
    cfg = small_config(seed=7, total_bytes=2 * 100 * 300 * 20, pbr_slots=64, goi_slots=256)

    def normal() -> float:
        with Region.emulated(16 << 20) as r:
            format_region(r, cfg)
            h = LogHandle(r, cfg, deterministic=True)
            t = time.perf_counter()
            h.run()
            dt = time.perf_counter() - t
            h.close()
            return dt

    def checked() -> float:
        t = time.perf_counter()
        run_checked(cfg, check_history=False)
        return time.perf_counter() - t

    n = sorted(normal() for _ in range(3))[1]
    c = sorted(checked() for _ in range(3))[1]
    assert c / n < 20, f"checked build {c / n:.1f}x slower"


def test_cli_faults(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["faults", "--only", "seq_dup_identity", "--clean-runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "seq_dup_identity" in out and "caught" in out and "1/1 faults caught; PASS" in out
    assert main(["faults", "--only", "no_such_fault"]) == 2


def test_publish_on_the_noncoherent_profile_runs_every_role_on_the_model(
        capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["publish", "--profile", "emulated-noncoherent", "--brokers", "2",
                 "--total-bytes", "1MiB", "--batch-bytes", "8KiB", "--subscribers", "2"]) == 0
    out = capsys.readouterr().out
    assert "non-coherent model:" in out and "0 rule error(s)" in out
    assert "PASS order=2" in out
    assert main(["publish", "--profile", "emulated-noncoherent", "--processes"]) == 2
