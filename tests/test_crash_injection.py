"""Crash injection beyond the publisher: a scanner stopped mid-epoch, a subscriber stopped
mid-chunk (thread mode) or SIGKILLed (process mode), and ``publish --crash``.

* A dead scanner is found by its beat standing still past ``slot_timeout_ms`` with its thread
  gone; the sequencer's seal stops waiting for it and the sequencer scans its ring: every
  later batch of that broker is declared lost by identity (reason ORPHAN), never acknowledged, and
  the run completes -- every other broker ordered in full.
* A dead subscriber is found the same way; the GOI and the rings stop waiting for it, so the
  run completes; what it delivered is a gap-free prefix, what it never got is named.
* The checks that report a crash fail when the crash is not what the records say.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.crash import PROCESS_WATCHDOG_S
from harness.errors import ConfigError
from harness.native import LossReason
from harness.invariants import _crash_checks, _loss_checks
from harness.log import LogConfig
from harness.runlog import run_log

ORPHAN = int(LossReason.ORPHAN)  # committed, never ordered (its scanner stopped)


def small(**kw: Any) -> LogConfig:
    base: dict[str, Any] = dict(order=2, brokers=2, subscribers=2, msg_size=64, batch_bytes=256,
                                total_bytes=2 * 300 * 256, ack=1, epoch_us=200, pbr_slots=8, goi_slots=256,
                                slot_timeout_ms=20.0, watchdog_s=5.0, record=True)
    base.update(kw)
    return LogConfig(**base)


def by_id(result: Any) -> dict[str, Any]:
    return {c.id: c for c in result.checks}


@pytest.mark.parametrize("variant", ["per-scanner", "shared-mutex"])
def test_dead_scanner_broker_later_batches_declared_lost_by_identity_others_ordered(variant: str) -> None:
    cfg = small(variant=variant, crash_scanner=1, crash_after=100)
    per_broker = cfg.batches_per_publisher
    r = run_log(cfg)
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    assert not r.stalled  # the seal did not wait for the dead scanner, its publishers finished
    loss = r.records["loss"]
    assert [(int(x["broker"]), int(x["pbr_index"]), int(x["client"]), int(x["reason"]), int(x["alive"]))
            for x in loss] == [(1, i, 1, ORPHAN, 0) for i in range(100, per_broker)]
    order = r.records["order"]
    assert sorted(order["pbr_index"][order["broker"] == 1].tolist()) == list(range(100))
    assert sorted(order["pbr_index"][order["broker"] == 0].tolist()) == list(range(per_broker))
    assert r.batches_ordered == r.counters["committed_seq"] == per_broker + 100
    assert r.counters["batches_acked"] == per_broker + 100  # never a declared-lost batch
    assert r.counters["scanners_dead"] == 0b10 and r.counters["batches_orphaned"] == per_broker - 100
    checks = by_id(r)
    assert checks["crash-detected"].ok and "detected" in checks["crash-detected"].detail
    named = checks["crash-losses-named"]
    assert [(e["broker"], e["pbr_index"]) for e in named.counterexamples] == \
        [(1, i) for i in range(100, 150)]
    assert f"{per_broker - 100} declared lost" in named.detail
    # the dead scanner's own line: its beat stood still, its thread is gone
    assert r.counters["crash_detect_ns"] > r.counters["crash_ns"] > 0


def test_dead_subscriber_no_longer_holds_the_rings_and_its_prefix_is_named() -> None:
    """8-slot rings and 600 batches: without the detection the publishers would wait for the
    dead subscriber for ever (the watchdog would end the run)."""
    cfg = small(crash_subscriber=1, crash_after=120)
    total = cfg.total_batches
    r = run_log(cfg)
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    assert not r.stalled and r.batches_lost == 0
    assert r.messages_delivered[0] == total * cfg.msgs_per_batch
    d1 = r.records["deliver1"]["pos"].tolist()
    assert d1 == list(range(120))  # it died mid-chunk, after 120 deliveries
    assert r.counters["subscribers_dead"] == 0b10
    prefix = by_id(r)["crashed-subscriber-prefix"]
    assert prefix.ok
    assert [e["position"] for e in prefix.counterexamples] == list(range(120, 170))
    order = {int(o["seq"]): (int(o["broker"]), int(o["pbr_index"])) for o in r.records["order"]}
    assert all((e["broker"], e["pbr_index"]) == order[e["position"]] for e in prefix.counterexamples)


def test_subscriber_process_sigkilled_is_the_expected_outcome_the_run_completes() -> None:
    cfg = small(processes=True, crash_subscriber=0, crash_after=50, crash_kill=True)
    r = run_log(cfg)
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    checks = by_id(r)
    assert checks["crash-detected"].ok and "SIGKILL" in checks["crash-detected"].detail
    assert r.messages_delivered[1] == cfg.total_batches * cfg.msgs_per_batch
    assert r.counters["subscribers_dead"] == 0b01


def test_publisher_process_sigkilled_through_run_log_names_its_slot() -> None:
    cfg = small(processes=True, crash_publisher=1, crash_after=40, crash_kill=True,
                watchdog_s=PROCESS_WATCHDOG_S)  # outlasts the role processes' start on a loaded machine
    r = run_log(cfg)
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    named = by_id(r)["crash-losses-named"]
    assert [(e["broker"], e["pbr_index"], e["client"]) for e in named.counterexamples] == [(1, 40, 1)]
    # what it published died with its process: the history is not checked, and it says so
    assert "history-not-checked" in by_id(r)
    assert not any(c.group == "history" and c.id != "history-not-checked" for c in r.checks)


# ------------------------------------------------------------------------------------------
# The checks fail on planted inconsistencies


def _stats(cfg: LogConfig, **kw: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"crash_ns": 1_000_000, "crash_detect_ns": 30_000_000, "scanners_dead": 0,
                         "subscribers_dead": 0, "dead_sub_pos": [0] * 8, "committed_seq": 10,
                         "batches_lost": 0, "lost_by_broker": [0] * 8, "lost_late_commits": 0}
    s.update(kw)
    return s


def _check(rows: list[tuple[str, str, bool, str, list[dict[str, Any]]]], cid: str) -> tuple[bool, str]:
    found = [(ok, detail) for i, _, ok, detail, _ in rows if i == cid]
    assert found, cid
    return found[0]


def test_crash_detected_fails_when_the_dead_role_was_never_found() -> None:
    cfg = small(crash_scanner=1, crash_after=10)
    ok, detail = _check(_crash_checks(cfg, _stats(cfg, scanners_dead=0b10), None), "crash-detected")
    assert ok and "29.0 ms" in detail
    ok, detail = _check(_crash_checks(cfg, _stats(cfg, scanners_dead=0b01), None), "crash-detected")
    assert not ok and "never detected" in detail
    sub = small(crash_subscriber=0, crash_after=10)
    assert not _check(_crash_checks(sub, _stats(sub), None), "crash-detected")[0]


def _loss_recs(rows: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    dt = np.dtype([("ns", "<u8"), ("pbr_index", "<u8"), ("broker", "<u4"), ("reason", "<u4"),
                   ("client", "<u4"), ("alive", "<u4")])
    return {"loss": np.array([(1, i, b, why, c, 0) for b, i, why, c in rows], dtype=dt)}


def test_a_loss_on_another_broker_than_the_crashed_scanner_is_unexpected() -> None:
    cfg = small(crash_scanner=1, crash_after=10)
    good = _loss_recs([(1, 10, ORPHAN, 1), (1, 11, ORPHAN, 1)])
    s = _stats(cfg, batches_lost=2, lost_by_broker=[0, 2] + [0] * 6)
    assert _check(_loss_checks(cfg, s, good), "no-unexpected-loss")[0]
    planted = _loss_recs([(1, 10, ORPHAN, 1), (0, 11, ORPHAN, 0)])
    ok, detail = _check(_loss_checks(cfg, s, planted), "no-unexpected-loss")
    assert not ok and "1 of them not from a crashed" in detail
    # and a publisher-timeout loss on the scanner's broker is not the scanner's crash either
    timeout = _loss_recs([(1, 10, int(LossReason.TIMEOUT), 1)])
    assert not _check(_loss_checks(cfg, s, timeout), "no-unexpected-loss")[0]


def test_crashed_subscriber_prefix_fails_on_a_gap() -> None:
    cfg = small(crash_subscriber=1, crash_after=4)
    dt = np.dtype([("pos", "<u8")])
    s = _stats(cfg, subscribers_dead=0b10, dead_sub_pos=[0, 3] + [0] * 6)
    good = {"deliver1": np.array([(0,), (1,), (2,), (3,)], dtype=dt)}
    assert _check(_crash_checks(cfg, s, good), "crashed-subscriber-prefix")[0]
    gap = {"deliver1": np.array([(0,), (1,), (3,), (4,)], dtype=dt)}
    assert not _check(_crash_checks(cfg, s, gap), "crashed-subscriber-prefix")[0]
    ahead = _stats(cfg, subscribers_dead=0b10, dead_sub_pos=[0, 11] + [0] * 6)  # beyond committed
    assert not _check(_crash_checks(cfg, ahead, good), "crashed-subscriber-prefix")[0]


# ------------------------------------------------------------------------------------------
# Configuration and command line


@pytest.mark.parametrize("kw,needle", [
    (dict(order=0, crash_scanner=0), "order"),
    (dict(crash_scanner=0, crash_kill=True), "crash_kill"),
    (dict(crash_scanner=0, slot_timeout_ms=0.0), "slot_timeout_ms"),
    (dict(crash_scanner=0, crash_subscriber=0), "one crash per run"),
    (dict(crash_subscriber=2), "crash_subscriber"),
    (dict(crash_scanner=0, crash_after=10_000), "crash_after"),
])
def test_impossible_crash_configurations_are_refused(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        small(**kw)


def test_publish_crash_scanner_reports_named_expected_outcome(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    out = tmp_path / "r.json"
    code = main(["publish", "--brokers", "2", "--total-bytes", "1MiB", "--batch-bytes", "4KiB",
                 "--msg-size", "256", "--ring-slots", "16", "--subscribers", "1", "--slot-timeout", "20",
                 "--crash", "scanner:1@25%", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "the scanner of broker 1 stopped mid-epoch after 32 ring slots" in printed
    assert "-- detected" in printed and "96 declared lost: broker 1 slot 32 (publisher 1)" in printed
    assert "crash verdict: expected outcome" in printed
    result = json.loads(out.read_text())
    assert result["config"]["crash_scanner"] == 1 and result["config"]["crash_after"] == 32
    checks = {c["id"]: c for c in result["checks"]}
    assert checks["crash-detected"]["ok"] and len(checks["crash-losses-named"]["counterexamples"]) == 50


def test_apply_crash_percentages_and_counts() -> None:
    from harness.crash import apply_crash, parse_crash

    cfg = small()
    assert apply_crash(cfg, parse_crash("publisher:1@50%"), slot_timeout_given=True).crash_after == 150
    assert apply_crash(cfg, parse_crash("subscriber@10%"), slot_timeout_given=True).crash_after == 60
    got = apply_crash(replace(cfg, processes=True), parse_crash("subscriber:1@7"), slot_timeout_given=True)
    assert (got.crash_subscriber, got.crash_after, got.crash_kill) == (1, 7, True)
    got = apply_crash(replace(cfg, processes=True), parse_crash("scanner@7"), slot_timeout_given=True)
    assert (got.crash_scanner, got.crash_kill) == (0, False)  # a scanner's thread, never its process


def test_main_job_scenarios_full_set() -> None:
    """The full run's three scenarios: each detected, each the expected outcome."""
    from harness.crash import crash_checks, run_scenarios

    outcomes = run_scenarios(quick=False)
    assert [(o.role, o.mode) for o in outcomes] == [("publisher", "processes"), ("scanner", "threads"),
                                                   ("subscriber", "processes")]
    assert all(o.ok and o.detected for o in outcomes), [o.detail for o in outcomes]
    pub, scan, sub = outcomes
    assert pub.declared_lost == 1 and scan.declared_lost == 64 and sub.declared_lost == 0
    assert sub.undelivered >= 256 - 128  # it died after 128 deliveries, position published before
    checks = crash_checks(outcomes)
    assert [c.id for c in checks] == ["crash.publisher", "crash.scanner", "crash.subscriber"]
    assert all(c.group == "crash" and c.ok for c in checks)
