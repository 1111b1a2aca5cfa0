"""Per-site mutation (issue: prove the checks catch every missing flush, fence and
invalidation). The sites come from the checked build's binary; this file pins what must happen
to each mutant, so a new seam call without a check that kills it fails here."""

from __future__ import annotations

import json

import pytest

from harness.checked import ModelConfig, run_checked, small_config
from harness.mutate import (EQUIVALENT, MODEL_CONFIGS, Baseline, mutation, run_mutant, run_mutation,
                            select, sites)

# Survivors no check kills yet, each described in docs/validation.md ("Open findings"):
# none at present (seq5_step/sfence#2:delete is killed by order5-wrapping-rings-1-subscriber).
OPEN_FINDINGS: set[str] = set()

# site key:mutation -> killed | equivalent | fault-only. A survivor is never expected: kill it
# with a sharper check, or prove it equivalent (EQUIVALENT in harness/mutate.py, and
# docs/validation.md). fault-only: the site runs only inside a planted catalogue fault.
EXPECTED = {
    "cxl_layout_init/flush_range#1:delete": "killed",
    "cxl_layout_init/sfence#1:delete": "equivalent",
    "cxl_layout_init/sfence#1:fence_late": "killed",
    "cxl_layout_init/flush_range#2:delete": "killed",
    "cxl_layout_init/flush_range#3:delete": "killed",
    "cxl_layout_init/flush_range#4:delete": "killed",
    "cxl_layout_init/flush#1:delete": "killed",
    "cxl_layout_init/sfence#2:delete": "killed",
    "cxl_layout_init/sfence#2:fence_late": "killed",
    "cxl_layout_init/publish#1:delete": "killed",
    "cxl_layout_init/flush#2:delete": "killed",
    "cxl_layout_init/sfence#3:delete": "killed",
    "cxl_layout_init/sfence#3:fence_late": "killed",
    "cxl_layout_attach/invalidate#1:stale": "killed",
    "cxl_layout_attach/invalidate#2:stale": "killed",
    "reuse_floor/invalidate#1:stale": "killed",
    "reuse_floor/invalidate#2:stale": "killed",
    "reuse_floor/invalidate#3:stale": "killed",
    "pub_lease/flush#1:delete": "killed",
    "pub_progress/flush#1:delete": "killed",
    "write_payload/sfence#1:delete": "equivalent",
    "write_payload/sfence#1:fence_late": "killed",
    "write_payload/flush_range#1:delete": "killed",
    "write_header/publish#1:delete": "fault-only",
    "write_header/sfence#1:delete": "fault-only",
    "write_header/sfence#1:fence_late": "fault-only",
    "write_header/flush#1:delete": "killed",
    "write_header/sfence#2:delete": "equivalent",
    "write_header/sfence#2:fence_late": "killed",
    "write_header/flush#2:delete": "killed",
    "write_header/sfence#3:delete": "killed",
    "write_header/sfence#3:fence_late": "killed",
    "write_header/publish#2:delete": "killed",
    "write_header/flush#3:delete": "killed",
    "write_header/sfence#4:delete": "killed",
    "write_header/sfence#4:fence_late": "killed",
    "poll_ack/invalidate#1:stale": "killed",
    "poll_ack/invalidate#2:stale": "killed",
    "pub_check_given_up/invalidate#1:stale": "killed",
    "pub_claim/sfence#1:delete": "killed",
    "pub_claim/sfence#1:fence_late": "killed",
    "pub_claim/commit#1:delete": "killed",
    "pub_claim/flush#1:delete": "killed",
    "pub_claim/invalidate#1:stale": "killed",
    "pub_claim/sfence#2:delete": "equivalent",
    "pub_claim/sfence#2:fence_late": "killed",
    "pub_step/take_lines#1:delete": "killed",
    "pub_step/take_lines#2:delete": "killed",
    "pub_step/mfence#1:delete": "killed",
    "pub_step/mfence#1:fence_late": "killed",
    "lease_take/invalidate#1:stale": "killed",
    "cxl_log_stats/invalidate#1:stale": "killed",
    "cxl_log_stats/invalidate#2:stale": "killed",
    "holder_beats/invalidate#1:stale": "killed",
    "scan_declare_lost/flush#1:delete": "killed",
    "scan_declare_lost/mfence#1:delete": "killed",
    "scan_declare_lost/mfence#1:fence_late": "killed",
    "scan_declare_lost/invalidate#1:stale": "equivalent",
    "scan_take/invalidate#1:stale": "killed",
    "scan_take/invalidate#2:stale": "killed",
    "scan_take/invalidate#3:stale": "killed",
    "publish_frontier/commit#1:delete": "killed",
    "publish_frontier/commit#2:delete": "killed",
    "publish_frontier/commit#3:delete": "killed",
    "publish_frontier/commit#4:delete": "killed",
    "publish_frontier/flush#1:delete": "killed",
    "publish_durable/commit#1:delete": "killed",
    "publish_durable/commit#2:delete": "killed",
    "publish_durable/flush#1:delete": "killed",
    "ack0_step/sfence#1:delete": "killed",
    "ack0_step/sfence#1:fence_late": "killed",
    "ack0_step/sfence#2:delete": "killed",
    "ack0_step/sfence#2:fence_late": "killed",
    "goi_room/invalidate#1:stale": "killed",
    "seq_write_goi/publish#1:delete": "fault-only",
    "seq_write_goi/flush#1:delete": "fault-only",
    "seq_write_goi/sfence#1:delete": "fault-only",
    "seq_write_goi/sfence#1:fence_late": "fault-only",
    "seq_write_goi/flush#2:delete": "killed",
    "seq_write_goi/sfence#2:delete": "killed",
    "seq_write_goi/sfence#2:fence_late": "killed",
    "seq_write_goi/publish#2:delete": "killed",
    "seq_write_goi/flush#3:delete": "killed",
    "seq_write_goi/sfence#3:delete": "killed",
    "seq_write_goi/sfence#3:fence_late": "killed",
    "seq_flush_late_tokens/flush#1:delete": "fault-only",
    "seq_flush_late_tokens/sfence#1:delete": "fault-only",
    "seq_flush_late_tokens/sfence#1:fence_late": "fault-only",
    "seq_commit/commit#1:delete": "equivalent",
    "seq_commit/commit#2:delete": "equivalent",
    "seq_commit/commit#3:delete": "equivalent",
    "seq_commit/commit#4:delete": "killed",
    "seq_commit/flush#1:delete": "killed",
    "seq_next_epoch/commit#1:delete": "killed",
    "seq_next_epoch/flush#1:delete": "killed",
    "seq_next_epoch/sfence#1:delete": "killed",
    "seq_next_epoch/sfence#1:fence_late": "killed",
    "seq_step/sfence#1:delete": "fault-only",
    "seq_step/sfence#1:fence_late": "fault-only",
    "seq_step/sfence#2:delete": "killed",
    "seq_step/sfence#2:fence_late": "killed",
    "seq_step/sfence#3:delete": "killed",
    "seq_step/sfence#3:fence_late": "killed",
    "seq_step/sfence#4:delete": "equivalent",
    "seq_step/sfence#4:fence_late": "killed",
    # Order 5 (seq5_step and the session lines)
    "cxl_layout_init/flush_range#5:delete": "killed",
    "cxl_layout_attach/invalidate#3:stale": "killed",
    "pub_follow_session/invalidate#1:stale": "killed",
    "o5_write_clients/commit#1:delete": "killed",
    "o5_write_clients/commit#2:delete": "killed",
    "o5_write_clients/commit#3:delete": "killed",
    "o5_write_clients/commit#4:delete": "killed",
    "o5_write_clients/commit#5:delete": "killed",
    "o5_write_clients/commit#6:delete": "killed",
    "o5_write_clients/flush#1:delete": "killed",
    "o5_write_goi/flush#1:delete": "killed",
    "o5_write_goi/flush#2:delete": "killed",
    "o5_write_goi/sfence#1:delete": "killed",
    "o5_write_goi/sfence#1:fence_late": "killed",
    "o5_write_goi/publish#1:delete": "killed",
    "o5_write_goi/flush#3:delete": "killed",
    "seq5_next_epoch/commit#1:delete": "killed",
    "seq5_next_epoch/flush#1:delete": "killed",
    "seq5_next_epoch/sfence#1:delete": "killed",
    "seq5_next_epoch/sfence#1:fence_late": "killed",
    "seq5_step/sfence#1:delete": "killed",
    "seq5_step/sfence#1:fence_late": "killed",
    "seq5_step/sfence#2:delete": "killed",
    "seq5_step/sfence#2:fence_late": "killed",
    "seq5_step/sfence#3:delete": "killed",
    "seq5_step/sfence#3:fence_late": "killed",
    "seq5_step/sfence#4:delete": "equivalent",
    "seq5_step/sfence#4:fence_late": "killed",
    "sub5_snapshot/invalidate#1:stale": "killed",
    "cxl_log_stats/invalidate#3:stale": "killed",
    "verify_payload/invalidate#1:stale": "killed",
    "sub_publish_position/commit#1:delete": "killed",
    "sub_publish_position/commit#2:delete": "equivalent",
    "sub_publish_position/commit#3:delete": "equivalent",
    "sub_publish_position/commit#4:delete": "killed",
    "sub_publish_position/flush#1:delete": "killed",
    "sub_publish_position/flush#2:delete": "killed",
    "sub_publish_position/sfence#1:delete": "killed",
    "sub_publish_position/sfence#1:fence_late": "killed",
    "sub_resume/invalidate#1:stale": "killed",
    "sub_resume/invalidate#2:stale": "killed",
    "sub_read_committed/invalidate#1:stale": "killed",
    "sub_release_lost/invalidate#1:stale": "killed",
    "sub_release_lost/invalidate#2:stale": "killed",
    "sub2_step/invalidate#1:stale": "killed",
    "sub2_step/invalidate#2:stale": "equivalent",
    "sub0_step/invalidate#1:stale": "killed",
    "sub0_step/invalidate#2:stale": "killed",
}


def test_sites_come_from_the_binary_and_every_one_is_pinned() -> None:
    found = sites()
    names = {f"{s.key}:{m}" for s in found for m in s.mutations}
    new, gone = sorted(names - set(EXPECTED)), sorted(set(EXPECTED) - names)
    assert not new, f"seam call(s) without a pinned outcome (add them to EXPECTED): {new}"
    assert not gone, f"pinned sites no longer in the sources: {gone}"
    # identities carry no file name (they survive moving a function), ordinals follow the source
    assert all(".c" not in s.key for s in found)
    hdr = sorted((s for s in found if s.func == "write_header" and s.op == "flush"), key=lambda s: s.line)
    assert [s.key for s in hdr] == ["write_header/flush#1", "write_header/flush#2", "write_header/flush#3"]
    # benchmark seam calls are sites too, but not protocol ones
    assert any(not s.protocol for s in sites(protocol_only=False))


@pytest.mark.checker
def test_every_mutant_has_its_pinned_outcome() -> None:
    rep = run_mutation()
    assert rep.baseline.ok, rep.baseline.failures[:3]
    got = {o.name: o.status for o in rep.outcomes}
    wrong = {n: (got.get(n), want) for n, want in EXPECTED.items() if got.get(n) != want}
    assert not wrong, f"mutant outcomes changed (got, pinned): {wrong}"
    # the one open finding (docs/validation.md): pinned, so a new survivor fails here, and so
    # does killing it without updating the pin
    survivors = {o.name for o in rep.outcomes if o.status == "survived"}
    assert survivors == {n for n, want in EXPECTED.items() if want == "survived"} == OPEN_FINDINGS
    assert rep.count("unreached") == 0
    used = {o.site for o in rep.outcomes if o.status == "equivalent"}
    assert set(EQUIVALENT) == used, f"EQUIVALENT entries no mutant needs: {set(EQUIVALENT) - used}"
    killed = [o for o in rep.outcomes if o.status == "killed"]
    assert all(o.by and o.config and o.runs >= 1 for o in killed)
    assert rep.score == 1.0 - len(OPEN_FINDINGS) / (rep.count("killed") + len(OPEN_FINDINGS))


def _base_for(site_key: str) -> tuple[object, Baseline]:
    site = select(sites(), [site_key])[0]
    return site, Baseline(1, [], {site.index: [m.name for m in MODEL_CONFIGS]}, {site.index: 1}, 0.0)


@pytest.mark.checker
def test_a_deleted_payload_flush_is_killed_by_the_flush_rule() -> None:
    site, base = _base_for("write_payload/flush_range#1")
    out = run_mutant(site, "delete", base)  # type: ignore[arg-type]
    assert out.status == "killed" and "rule:unflushed_before_publish" in out.by
    assert out.config == "order2-ack1-cached-copy" and out.events_to_detection > 0
    # the mask is cleared on exit: the same run is clean again
    assert run_checked(small_config(seed=1)).clean


def test_the_mask_switches_one_site_off_and_back_on() -> None:
    site = select(sites(), ["seq_next_epoch/sfence#1"])[0]
    with mutation(site, "delete"):
        run = run_checked(small_config(seed=1))
        assert "unpersisted_at_end" in {f.rule for f in run.errors}
        # the end-of-run persistence check is what sees it: without it the run looks clean
        assert run_checked(small_config(seed=1), persistence=False).clean
    assert run_checked(small_config(seed=1)).clean


def test_the_message_ack_check_kills_a_missing_durable_message_frontier() -> None:
    site = select(sites(), ["publish_durable/commit#1"])[0]
    with mutation(site, "delete"):
        run = run_checked(small_config(seed=1, ack=2))
    failed = {c.id for c in run.result.failed()}
    assert failed == {"acked-messages"}, failed


def test_preemption_inside_a_step_finds_the_frontier_ahead_of_the_commit() -> None:
    """Without the fence between committed_seq and consumed_through, a subscriber that runs
    inside the sequencer's step can see the frontier first and release slots it never
    delivered; only preemption inside a step (and the model's early write-back) shows it."""
    site = select(sites(), ["seq_step/sfence#2"])[0]
    cfg = small_config(seed=1, pbr_slots=2, goi_slots=2, total_bytes=2 * 100 * 300 * 4)
    with mutation(site, "delete"):
        whole_steps = run_checked(cfg)
        split = run_checked(cfg, model=ModelConfig(p_preempt=0.02))
    assert whole_steps.clean
    assert not split.clean and split.model["preemptions"] > 0
    assert run_checked(cfg, model=ModelConfig(p_preempt=0.02)).clean


@pytest.mark.parametrize("order", [0, 2])
def test_a_crashed_publisher_is_declared_lost_before_the_model_run_stalls(order: int) -> None:
    """The slot timeout is wall-clock; the deterministic runner's idle limit counts steps, and
    on a quiet host it ran out in about 60 ms: a crashed publisher's slot with a longer timeout
    was never declared lost (crash-detected failed about one model run in two at 50 ms). The
    runner now waits the timeout out before it calls such a run stalled."""
    cfg = small_config(seed=1, order=order, slot_timeout_ms=300.0, crash_publisher=0, crash_after=1)
    run = run_checked(cfg)
    assert run.result.counters["batches_lost"] == 1 and run.result.counters["stalled"] == 1
    assert run.clean, [(c.id, c.detail) for c in run.result.failed()]


def test_preemption_inside_an_order5_step_finds_the_frontier_ahead_of_the_commit() -> None:
    """Order 5's release rule (sub5_release) reads each broker's consumed_through, then
    committed_seq, and releases the snapshot once it has delivered up to that committed_seq.
    Without the fence between them a subscriber running inside the sequencer's step can see a
    frontier already written back while committed_seq is not: it releases slots whose
    positions it has not read, the publisher reuses one, and the subscriber reads the new
    payload under the old GOI entry (payload-checksums)."""
    site = select(sites(), ["seq5_step/sfence#2"])[0]
    cfg = small_config(seed=3, order=5, client_spread=2, pbr_slots=2, total_bytes=2 * 100 * 300 * 4,
                       subscribers=1)
    with mutation(site, "delete"):
        whole_steps = run_checked(cfg)
        split = run_checked(cfg, model=ModelConfig(p_preempt=0.02))
    assert whole_steps.clean
    assert not split.clean and split.model["preemptions"] > 0
    assert "payload-checksums" in {c.id for c in split.result.failed()}
    assert run_checked(cfg, model=ModelConfig(p_preempt=0.02)).clean


def test_a_schedule_replays() -> None:
    a = run_checked(small_config(seed=9), model=ModelConfig(p_preempt=0.02))
    prefix = [(p + 1) % 7 for p in a.schedule[:50]]
    b = run_checked(small_config(seed=10), model=ModelConfig(p_preempt=0.02), schedule=prefix)
    assert len(a.schedule) > 50 and b.schedule[:50] == prefix
    again = run_checked(small_config(seed=9), model=ModelConfig(p_preempt=0.02), schedule=a.schedule)
    assert again.schedule == a.schedule and again.events == a.events


def test_cli_mutate(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["mutate", "--only", "write_header/flush#3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mutants"] == 1 and out["killed"] == 1 and out["outcomes"][0]["location"].startswith("cxl_")
    assert main(["mutate", "--only", "no_such/site#1"]) == 2
    assert "unknown site" in capsys.readouterr().err
    assert main(["mutate", "--no-search"]) == 2
    assert "--no-search goes with --patches" in capsys.readouterr().err
    assert main(["mutate", "--list"]) == 0
    assert f"{len(sites())} sites" in capsys.readouterr().out
