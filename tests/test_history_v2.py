"""History format v2: resumes, followed brokers, the clock uncertainty window, equal-t
concurrency in every time comparison, and the counterexamples of the checks v2 added. Each
rule is seen passing on a valid history and failing on a planted defect."""

from __future__ import annotations

from typing import Any

import pytest

from harness.history import check_history, dumps_events, loads_history
from harness.history.checks import CheckReport

pytestmark = pytest.mark.checker
Event = dict[str, Any]


def header(**kw: Any) -> Event:
    h: Event = {"type": "header", "format": "cxl-history", "version": 2, "order": 2,
                "brokers": 2, "drained": True}
    h.update(kw)
    return h


def pub(t: int, b: int, seq: int, pbr: int, n: int = 1) -> Event:
    return {"type": "publish", "t": t, "broker": b, "client": 0, "client_batch_seq": seq,
            "pbr_index": pbr, "outcome": "ok", "msg_count": n, "size": 64 * n,
            "checksum": 100 + seq}


def order(t: int, pos: int, b: int, seq: int, pbr: int, to: int | None = None) -> Event:
    e: Event = {"type": "order", "t": t, "seq": pos, "broker": b, "client": 0,
                "client_batch_seq": seq, "pbr_index": pbr}
    if to is not None:
        e["total_order"] = to
    return e


def deliver(t: int, sub: int, pos: int, b: int, seq: int, pbr: int, n: int = 1,
            **kw: Any) -> Event:
    e: Event = {"type": "deliver", "t": t, "subscriber": sub, "position": pos, "broker": b,
                "client": 0, "client_batch_seq": seq, "pbr_index": pbr,
                "checksum": 100 + seq, "size": 64 * n}
    e.update(kw)
    return e


def three(**head: Any) -> list[Event]:
    """Three batches over two brokers, ordered 0 (b0), 1 (b1), 2 (b0), committed at t=40."""
    return [
        header(**head),
        pub(1, 0, 0, 0, 2), pub(2, 1, 1, 0, 1), pub(3, 0, 2, 1, 3),
        order(10, 0, 0, 0, 0, 0), order(20, 1, 1, 1, 0, 2), order(30, 2, 0, 2, 1, 3),
        {"type": "commit", "t": 40, "committed_seq": 3},
    ]


def run(ev: list[Event]) -> CheckReport:
    return check_history(loads_history(dumps_events(ev)))


def full_delivery(ev: list[Event], sub: int, t0: int) -> list[Event]:
    rows = [(0, 0, 0, 0, 2), (1, 1, 1, 0, 1), (2, 0, 2, 1, 3)]
    return [deliver(t0 + k, sub, p, b, s, x, n) for k, (p, b, s, x, n) in enumerate(rows)]


def test_valid_v2_history_passes_every_check() -> None:
    ev = three() + full_delivery(three(), 0, 50) + full_delivery(three(), 1, 60)
    rep = run(ev)
    assert rep.ok, rep.to_dict()
    from harness.history.checks import ORDER5_CHECK_IDS

    skipped = {r.check_id for r in rep.results if r.status != "passed"}
    assert skipped == {"ack-after-order"} | ORDER5_CHECK_IDS


# ---- read-committed ------------------------------------------------------------------------
def test_read_committed_by_timing_and_before_order() -> None:
    ev = three(drained=False)
    # positions 0 and 1 read at t=25/26; committed_seq is observed (3) only at t=40
    ev[6:6] = [deliver(25, 0, 0, 0, 0, 0, 2), deliver(26, 0, 1, 1, 1, 0)]
    rep = run(ev)
    assert rep.failed_ids() == ["read-committed"], rep.to_dict()
    a = rep.result("read-committed").anomaly
    assert a is not None and a.count == 2
    assert a.examples[0]["reason"] == "delivered before any committed_seq observation of its stream"
    assert a.examples[0]["position"] == 0 and a.examples[0]["delivered"]["line"] == 7
    # an observation of committed_seq 1 just before: position 0 is fine, position 1 is not
    ev.insert(6, {"type": "commit", "t": 24, "committed_seq": 1})
    a = run(ev).result("read-committed").anomaly
    assert a is not None and a.count == 1
    assert a.examples[0]["position"] == 1 and a.examples[0]["delivered"]["line"] == 9
    assert a.examples[0]["commit"] == {"committed_seq": 1, "t": 24, "line": 7}
    # delivered before its order event (the subscriber even claims to have seen it committed)
    ev = three(drained=False)
    ev[5:5] = [deliver(15, 0, 0, 0, 0, 0, 2, committed_seq=1),
               deliver(16, 0, 1, 1, 1, 0, committed_seq=2)]
    rep = run(ev)
    assert rep.failed_ids() == ["read-committed"], rep.to_dict()
    ex = rep.result("read-committed").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["reason"] == "delivered before the batch's order event"
    assert ex["position"] == 1 and ex["order"] == {"position": 1, "t": 20, "line": 8}


def test_read_committed_honours_equal_t_and_uncertainty() -> None:
    ds = [deliver(40, 0, 0, 0, 0, 0, 2), deliver(40, 0, 1, 1, 1, 0)]
    ev = three(drained=False) + ds  # same t as the commit observation: concurrent, fine
    assert run(ev).ok, run(ev).to_dict()
    ev = three(drained=False)
    ev[7:7] = [dict(d, t=35) for d in ds]  # 5 before the observation
    assert run(ev).failed_ids() == ["read-committed"]
    ev[0]["uncertainty"] = 5  # within the window: they may have come after it
    assert run(ev).ok


# ---- message-ranges ------------------------------------------------------------------------
def test_message_ranges_gap_overlap_and_start() -> None:
    ev = three()
    ev[5]["total_order"] = 1  # position 1 starts inside position 0's messages [0, 1]
    rep = run(ev)
    assert rep.failed_ids() == ["message-ranges"]
    a = rep.result("message-ranges").anomaly
    assert a is not None and a.count == 2
    assert a.examples[0]["reason"] == "overlap of 1 messages"
    assert a.examples[0]["earlier"]["messages"] == [0, 1]
    assert a.examples[1]["reason"] == "gap of 1 messages"
    ev = three()
    ev[4]["total_order"] = 7
    ex = run(ev).result("message-ranges").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["reason"] == "position 0 does not start at message 0" and ex["line"] == 5
    # without total_order the check does not apply
    for e in ev:
        e.pop("total_order", None)
    assert run(ev).result("message-ranges").status == "skipped"


# ---- ring-dense ----------------------------------------------------------------------------
def test_ring_dense_gap_unless_lost_or_unresolved() -> None:
    ev = three()
    ev[3]["pbr_index"] = 2
    ev[6]["pbr_index"] = 2  # broker 0 uses slots 0 and 2: slot 1 is named by nothing
    rep = run(ev)
    assert rep.failed_ids() == ["ring-dense"], rep.to_dict()
    ex = rep.result("ring-dense").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex == {"broker": 0, "missing_pbr_index": [1, 1], "next_named_slot": 2,
                  "named_by": "publish", "line": 4}
    lost = ev[:4] + [{"type": "loss", "t": 3, "broker": 0, "pbr_index": 1}] + ev[4:]
    assert run(lost).ok
    # not drained: a crashed publisher whose slot is unknown may still hold slot 1
    ev[0]["drained"] = False
    ev.insert(4, {"type": "publish", "t": 3, "broker": 0, "client": 1, "client_batch_seq": 0,
                  "outcome": "unknown", "msg_count": 1, "size": 64, "checksum": 9})
    assert run(ev).ok


# ---- resume --------------------------------------------------------------------------------
def test_redelivery_after_resume_is_not_a_violation() -> None:
    ev = three() + full_delivery(three(), 0, 50)[:2]
    ev.append({"type": "resume", "t": 60, "subscriber": 0, "position": 1})
    ev += full_delivery(three(), 0, 61)[1:]
    assert run(ev).ok, run(ev).to_dict()
    # without the resume, the re-delivery of position 1 is a non-monotonic poll
    no_resume = [e for e in ev if e["type"] != "resume"]
    assert run(no_resume).failed_ids() == ["delivery-monotonic"]


def test_resume_past_the_next_position_is_a_skip_and_below_it_is_checked() -> None:
    ev = three() + full_delivery(three(), 0, 50)[:1]
    ev.append({"type": "resume", "t": 60, "subscriber": 0, "position": 2})
    ev[0]["drained"] = False
    ev += full_delivery(three(), 0, 61)[2:]
    rep = run(ev)
    assert rep.failed_ids() == ["delivery-contiguous"]
    ex = rep.result("delivery-contiguous").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["reason"] == "resumes past the next undelivered position"
    assert ex["resume"]["line"] == len(ev) - 1 and ex["highest_before"] == 0
    # after a resume at 1, a delivery of position 0 goes backwards
    ev = three() + full_delivery(three(), 0, 50)[:2]
    ev.append({"type": "resume", "t": 60, "subscriber": 0, "position": 1})
    ev += full_delivery(three(), 0, 61)[:1]
    ev[0]["drained"] = False
    assert run(ev).failed_ids() == ["delivery-monotonic"]


def test_resume_broker_rules_follow_the_order_level() -> None:
    from harness.errors import HistoryError

    ev = three() + [{"type": "resume", "t": 60, "subscriber": 0, "position": 0, "broker": 0}]
    with pytest.raises(HistoryError, match="absent at Order 2"):
        run(ev)


# ---- follow --------------------------------------------------------------------------------
def test_subscriber_following_some_brokers() -> None:
    d = full_delivery(three(), 1, 60)
    ev = three() + [{"type": "follow", "t": 41, "subscriber": 1, "broker": 0}]
    ev += full_delivery(three(), 0, 50) + [d[0], d[2]]  # subscriber 1 skips broker 1's batch
    assert run(ev).ok, run(ev).to_dict()
    # without the follow event, subscriber 1 skipped position 1 and lost an ok publish
    plain = [e for e in ev if e["type"] != "follow"]
    assert set(run(plain).failed_ids()) == {"delivery-contiguous", "no-lost-ack"}
    # a follower of broker 0 that skips broker 0's batch at position 2 is still flagged
    ev2 = three() + [{"type": "follow", "t": 41, "subscriber": 1, "broker": 0}]
    ev2 += full_delivery(three(), 0, 50) + [d[0]]
    assert run(ev2).failed_ids() == ["no-lost-ack"]
    ev2[0]["drained"] = False
    assert run(ev2).ok
    # and delivering a broker it does not follow is flagged
    ev3 = three() + [{"type": "follow", "t": 41, "subscriber": 1, "broker": 0}]
    ev3 += full_delivery(three(), 0, 50) + d
    rep = run(ev3)
    assert rep.failed_ids() == ["delivery-contiguous"]
    ex = rep.result("delivery-contiguous").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["reason"] == "delivers a batch of a broker the subscriber does not follow"
    assert ex["position"] == 1


# ---- equal t and the uncertainty window in the older checks ---------------------------------
def test_commit_monotonic_concurrent_observations() -> None:
    ev = three() + [{"type": "commit", "t": 40, "committed_seq": 2}]  # same t, smaller
    assert run(ev).ok, run(ev).to_dict()
    ev[-1]["t"] = 43
    rep = run(ev)
    assert rep.failed_ids() == ["commit-monotonic"]
    ex = rep.result("commit-monotonic").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["before"]["line"] == 8 and ex["after"]["line"] == 9
    ev[0]["uncertainty"] = 3
    assert run(ev).ok


def test_ack_and_commit_written_with_uncertainty() -> None:
    ack: Event = {"type": "ack", "t": 12, "level": 1, "broker": 0, "client": 0,
                  "client_batch_seq": 0}
    ev = three()
    ev[5:5] = [{"type": "commit", "t": 12, "committed_seq": 1}, ack]
    assert run(ev).ok
    ev = three()  # ack and commit observation at t=8, before the order event at t=10
    ev[4:4] = [{"type": "commit", "t": 8, "committed_seq": 1}, dict(ack, t=8)]
    assert set(run(ev).failed_ids()) == {"ack-after-order", "commit-written"}
    ev[0]["uncertainty"] = 2
    assert run(ev).ok
    # ACK at t=12 and an observation of committed_seq 0 at the same t: concurrent, no flag
    ev = three()
    ev.insert(5, {"type": "ack", "t": 12, "level": 1, "broker": 0, "client": 0,
                  "client_batch_seq": 0})
    ev.insert(6, {"type": "commit", "t": 12, "committed_seq": 0})
    ev.insert(7, {"type": "commit", "t": 13, "committed_seq": 1})
    assert run(ev).ok, run(ev).to_dict()
    ev[6]["t"] = 13
    ev[7]["t"] = 14
    assert run(ev).failed_ids() == ["ack-after-order"]


def test_v1_files_still_read_and_v2_written_only_when_needed() -> None:
    from harness.history import write_history
    import io

    ev = three()
    for e in ev:
        e.pop("total_order", None)
    ev[0]["version"] = 1
    h = loads_history(dumps_events(ev))
    buf = io.BytesIO()
    write_history(h, buf)
    assert b'"version":1' in buf.getvalue().split(b"\n")[0]
    h2 = loads_history(dumps_events(three(uncertainty=4)))
    buf = io.BytesIO()
    write_history(h2, buf)
    head = buf.getvalue().split(b"\n")[0]
    assert b'"version":2' in head and b'"uncertainty":4' in head
    assert loads_history(buf.getvalue()).uncertainty == 4


def test_a_first_resume_is_a_starting_point() -> None:
    d1 = full_delivery(three(), 1, 70)
    ev = three() + full_delivery(three(), 0, 50)
    ev.append({"type": "resume", "t": 69, "subscriber": 1, "position": 1})
    ev += d1[1:]  # subscriber 1 subscribes from position 1 and owes nothing below it
    assert run(ev).ok, run(ev).to_dict()
    without = [e for e in ev if e["type"] != "resume"]
    assert set(run(without).failed_ids()) == {"delivery-contiguous", "no-lost-ack"}


def test_from_arrays_takes_the_v2_tables() -> None:
    import numpy as np

    from harness.history import History

    def cols(**kw: list[int]) -> dict[str, np.ndarray]:
        return {k: np.array(v, dtype=np.uint64 if k == "checksum" else np.int64)
                for k, v in kw.items()}

    pubs = cols(t=[1, 2], broker=[0, 1], client=[0, 0], client_batch_seq=[0, 1],
                pbr_index=[0, 0], outcome=[0, 0], msg_count=[1, 1], size=[64, 64],
                checksum=[100, 101])
    orders = cols(t=[10, 20], seq=[0, 1], broker=[0, 1], client=[0, 0],
                  client_batch_seq=[0, 1], pbr_index=[0, 0], total_order=[0, 1])
    commits = cols(t=[30], committed_seq=[2])
    sub0 = cols(t=[40, 41, 50, 51], position=[0, 1, 1, 1], broker=[0, 1, 1, 1],
                client=[0, 0, 0, 0], client_batch_seq=[0, 1, 1, 1], pbr_index=[0, 0, 0, 0],
                checksum=[100, 101, 101, 101], size=[64, 64, 64, 64])
    # a resume at t=50 (same t as the re-delivery: the resume comes first) explains one
    # re-delivery of position 1, not the second one at t=51
    h = History.from_arrays(order=2, publishes=pubs, orders=orders, commits=commits,
                            deliveries={0: sub0},
                            resumes=cols(t=[50], subscriber=[0], position=[1]),
                            uncertainty=0)
    rep = check_history(h)
    assert rep.failed_ids() == ["delivery-monotonic"]
    ex = rep.result("delivery-monotonic").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["row"] == 3 and ex["table"] == "deliveries[0]"
    sub0 = {k: v[:3] for k, v in sub0.items()}
    h = History.from_arrays(order=2, publishes=pubs, orders=orders, commits=commits,
                            deliveries={0: sub0},
                            resumes=cols(t=[50], subscriber=[0], position=[1]))
    assert check_history(h).ok
    assert not h.deliveries["committed_seq"].flags.writeable  # absent: a constant view


def test_writing_keeps_the_meaning_of_resumes() -> None:
    import io

    from harness.history import write_history

    ev = three() + full_delivery(three(), 0, 50)[:2]
    ev.append({"type": "resume", "t": 52, "subscriber": 0, "position": 1})  # same t as
    ev += full_delivery(three(), 0, 51)[1:]  # the re-delivery after it (t=52)
    h = loads_history(dumps_events(ev))
    assert check_history(h).ok
    buf = io.BytesIO()
    write_history(h, buf)
    body = buf.getvalue().split(b"\n", 1)[1]
    assert body == dumps_events(ev).split(b"\n", 1)[1]  # line order kept
    assert check_history(loads_history(buf.getvalue())).ok


def test_ack_with_no_later_commit_observation() -> None:
    # documented: only the order half of ack-after-order applies to it
    ack: Event = {"type": "ack", "t": 45, "level": 1, "broker": 0, "client": 0,
                  "client_batch_seq": 2}
    ev = three() + [ack] + full_delivery(three(), 0, 50)
    assert run(ev).ok, run(ev).to_dict()  # ordered at t=30, no observation after t=45
    ev = three()
    ev.insert(6, dict(ack, t=25))  # before its order event at t=30: still flagged
    rep = run(ev + full_delivery(three(), 0, 50))
    assert rep.failed_ids() == ["ack-after-order"]
    ex = rep.result("ack-after-order").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["reason"] == "ack before the batch's order event"


def test_the_hosts_clock_uncertainty_reaches_the_history_checks() -> None:
    # a run whose subscribers' clock reads 1 s behind the others' (hosts aligned no better than
    # that): their deliveries seem to come before the commits they read. Without the run's
    # context the history check fails; with the hosts' 2 s uncertainty it may not order them.
    from harness.checked import small_config
    from harness.hosts.worker import shift_times
    from harness.invariants import CheckContext, run_checks
    from harness.log import LogHandle, format_region, region_size
    from harness.region import Region

    cfg = small_config(seed=1)
    region = Region.emulated(region_size(cfg), hugepages=False)
    try:
        format_region(region, cfg)
        h = LogHandle(region, cfg)
        try:
            h.run()
            stats, recs = h.stats(), h.records()
        finally:
            h.close()
    finally:
        region.close()
    assert not [c.id for c in run_checks(cfg, stats, recs) if not c.ok]
    shift_times({k: v for k, v in recs.items() if k.startswith("deliver")}, {}, -10**9)
    assert [c.id for c in run_checks(cfg, stats, recs) if not c.ok] == ["read-committed"]
    aligned = CheckContext(clock_uncertainty_ns=2 * 10**9)
    assert not [c.id for c in run_checks(cfg, stats, recs, context=aligned) if not c.ok]
