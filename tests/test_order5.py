"""Order 5 (per-client FIFO): real runs with one client spread over four brokers, a planted
gap resolved by declared-lost markers or by fencing the session, the history they record
(format v2, checked by client-order / lost-markers / fenced-session / commit-once), each
history check seen failing on a defect planted in that history, the hold buffer's bound and
back-pressure, configuration and attach errors, the command line and the bench ratio."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import ConfigError, RegionError
from harness.history import History, check_history, read_history, write_history
from harness.invariants import history_from_records
from harness.log import LogConfig, LogResult, attach_check, format_region, layout_size
from harness.runlog import run_log
from harness.region import Region

SPREAD4 = dict(order=5, brokers=4, client_spread=4, subscribers=2, msg_size=256, batch_bytes=1024,
               total_bytes=4 * 48 * 1024, pbr_slots=16, goi_slots=256, record=True)
# long enough that no reordering between brokers outlasts it on a loaded machine: the planted
# gap is the only one (the run waits for it once, with the rings full)
GAP = dict(gap_client=0, gap_seq=6, gap_timeout_ms=500.0)


@pytest.fixture(scope="module")
def marker_run() -> LogResult:
    return run_log(LogConfig(**SPREAD4, **GAP))


@pytest.fixture(scope="module")
def fence_run() -> LogResult:
    # a longer run so that the fence finds publishers still sending in the old session
    return run_log(LogConfig(**{**SPREAD4, "total_bytes": 4 * 400 * 1024}, **GAP, gap_policy="fence"))


def _history(r: LogResult) -> History:
    cfg = LogConfig(**{k: v for k, v in r.config.items() if k in LogConfig.__dataclass_fields__})
    assert r.records is not None
    return history_from_records(cfg, r.records)


def _status(h: History) -> dict[str, str]:
    return {x.check_id: x.status for x in check_history(h, 5).results}


def test_spread_over_four_brokers_with_a_planted_gap_declares_it_lost(marker_run: LogResult) -> None:
    r = marker_run
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    c = r.counters
    # the client's batches came from four brokers out of client order: the hold path ran
    assert c["o5_held"] > 0 and 0 < c["o5_hold_max"] <= 4 * 16
    # seq 6 never sent: one marker for it (and one for the seq the skipping member never
    # reaches at the end); nothing late, nothing fenced
    assert c["o5_markers"] >= 1 and c["o5_fences"] == 0 and c["o5_late"] == 0
    assert c["committed_seq"] == c["batches_ordered"] + c["o5_markers"]
    ids = {x.id: x.ok for x in r.checks}
    for check in ("client-fifo-delivered", "markers-delivered", "order5-gaps-explained",
                  "client-order", "lost-markers", "commit-once", "message-ranges", "read-committed"):
        assert ids[check], check


def test_history_of_the_run_is_format_v2_and_exercises_the_order5_checks(
        marker_run: LogResult, tmp_path: Path) -> None:
    h = _history(marker_run)
    assert len(h.markers) >= 1 and int(h.markers["client_batch_seq"][0]) == 6
    assert int(h.markers["client"][0]) == 0
    assert bool((h.orders["total_order"] >= 0).all())
    assert bool((h.deliveries["committed_seq"] >= 0).all())
    # every delivery was below the committed_seq its subscriber had read
    assert bool((h.deliveries["position"] < h.deliveries["committed_seq"]).all())
    st = _status(h)
    assert st["client-order"] == st["lost-markers"] == st["commit-once"] == "passed"
    assert st["fenced-session"] == "skipped"
    path = tmp_path / "o5.jsonl"
    write_history(h, path)
    header = json.loads(path.read_text().splitlines()[0])
    assert header["version"] == 2 and header["order"] == 5
    again = read_history(path)
    assert check_history(again, 5).ok


def _without_markers(h: History) -> History:
    return replace(h, markers=type(h.markers).empty("markers"))


def test_order5_checks_fail_on_defects_planted_in_the_run_history(marker_run: LogResult) -> None:
    h = _history(marker_run)
    # 1. the gap skipped without a marker: a hole in client order (and in the committed prefix)
    st = _status(_without_markers(h))
    assert st["client-order"] == "failed" and st["dense-prefix"] == "failed"
    # 2. two of the client's batches swapped in the log: client-reorder
    O = {k: np.array(h.orders[k]) for k in h.orders.cols}
    i, j = (int(x) for x in np.flatnonzero((O["client"] == 0) & (O["client_batch_seq"] < 2))[:2])
    O["seq"][i], O["seq"][j] = O["seq"][j], O["seq"][i]
    swapped = replace(h, orders=replace(h.orders, cols=O))
    assert _status(swapped)["client-order"] == "failed"
    # 3. the declared-lost batch ordered after all (a late batch reordered): lost-but-committed
    m = h.markers
    late = {k: np.array(h.orders[k]) for k in h.orders.cols}
    row = {"t": int(late["t"].max()) + 1, "seq": int(late["seq"].max()) + 1, "broker": 2, "client": 0,
           "client_batch_seq": int(m["client_batch_seq"][0]), "pbr_index": 0, "total_order": -1,
           "session": 0}
    late = {k: np.append(v, row[k]) for k, v in late.items()}
    extra = replace(h, orders=replace(h.orders, cols=late, ref=np.append(h.orders.ref, len(h.orders))))
    st = _status(extra)
    assert st["lost-markers"] == "failed"
    # 4. one client batch ordered at a second position: duplicate-commit
    dup = {k: np.array(h.orders[k]) for k in h.orders.cols}
    copy = {k: v[0] for k, v in dup.items()}
    copy.update(t=int(dup["t"].max()) + 1, seq=int(dup["seq"].max()) + 1)
    dup = {k: np.append(v, copy[k]) for k, v in dup.items()}
    twice = replace(h, orders=replace(h.orders, cols=dup, ref=np.append(h.orders.ref, len(h.orders))))
    assert _status(twice)["commit-once"] == "failed"


def test_a_gap_fenced_ends_the_session_and_nothing_of_it_is_committed_after(fence_run: LogResult) -> None:
    r = fence_run
    assert r.ok, [(c.id, c.detail) for c in r.failed()]
    c = r.counters
    assert c["o5_fences"] >= 1 and c["o5_markers"] == 0
    assert c["batches_ordered"] == r.batches - c["o5_fenced_rejects"] - c["o5_late"]
    h = _history(r)
    assert len(h.fences) == c["o5_fences"]
    first = int(np.argmin(h.fences["t"]))
    assert int(h.fences["committed_through"][first]) == 6 and int(h.fences["session"][first]) == 0
    assert int(h.orders["session"].max()) >= 1  # the client went on in a new session
    st = _status(h)
    assert st["fenced-session"] == st["client-order"] == st["commit-once"] == "passed"
    # planted: a batch of the fenced session ordered after its fence (a zombie write)
    O = {k: np.array(h.orders[k]) for k in h.orders.cols}
    old = np.flatnonzero((O["client"] == 0) & (O["session"] == 0))
    k = int(old[-1])
    O["t"][k] = int(h.fences["t"][first]) + 1_000_000
    zombie = replace(h, orders=replace(h.orders, cols=O))
    assert _status(zombie)["fenced-session"] == "failed"


def test_hold_bound_back_pressures_without_dropping() -> None:
    cfg = LogConfig(**{**SPREAD4, "subscribers": 1}, hold_cap=1, gap_timeout_ms=5000.0)
    # real threads: whether a batch ever arrives ahead of its client's turn (and so is held)
    # depends on the schedule; every run must be correct, and one of a few must fill the hold
    filled = 0
    for _ in range(5):
        r = run_log(cfg)
        assert r.ok, [(c.id, c.detail) for c in r.failed()]
        c = r.counters
        assert c["o5_hold_max"] <= 1, c["o5_hold_max"]
        assert c["o5_markers"] == c["o5_late"] == 0 and c["batches_ordered"] == cfg.total_batches
        if c["o5_hold_max"] == 1 and c["o5_hold_full"] > 0:
            filled += 1
            break
    if not filled:
        pytest.skip("5 runs, and no schedule brought a batch ahead of its client's turn: the hold "
                    "bound was not exercised (each run was correct)")


def test_client_spread_is_order5_only() -> None:
    assert LogConfig(**{**SPREAD4, "order": 2, "client_spread": 1}).clients == [0, 1, 2, 3]
    assert LogConfig(**SPREAD4).clients == [0]
    with pytest.raises(ConfigError, match="client_spread"):
        LogConfig(**{**SPREAD4, "order": 2})


@pytest.mark.checker
@pytest.mark.parametrize("fault, checks", [
    ("seq5_hold_release_unordered", {"check:client-fifo-delivered", "check:client-order"}),
    ("seq5_late_reordered", {"check:markers-delivered", "check:lost-markers", "check:client-order"}),
    ("seq5_gap_no_marker", {"check:order5-gaps-explained", "check:client-order"}),
])
def test_in_run_order5_checks_fail_on_planted_sequencer_defects(fault: str, checks: set[str]) -> None:
    """The counters checked on every run (records or not) and the history checks each name
    the planted defect (checked build, deterministic scheduler)."""
    from harness.faults import run_fault

    outcome = run_fault(fault, seeds=(1,))
    assert outcome.caught and checks <= set(outcome.by), outcome.by


@pytest.mark.parametrize("kw, word", [
    (dict(client_spread=3), "client_spread"),
    (dict(gap_policy="drop"), "gap_policy"),
    (dict(gap_timeout_ms=0.0), "gap_timeout_ms"),
    (dict(hold_cap=-1), "hold_cap"),
    (dict(gap_client=1), "gap_client"),  # client 1 is not a client when one spans 4 brokers
])
def test_bad_order5_settings_name_the_field(kw: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        LogConfig(**{**SPREAD4, **kw})


def test_attach_refuses_a_region_made_for_another_gap_policy() -> None:
    cfg = LogConfig(**SPREAD4)
    with Region.emulated((layout_size(cfg) + 4095) // 4096 * 4096) as region:
        format_region(region, cfg)
        attach_check(region, cfg)
        with pytest.raises(RegionError, match="gap_policy"):
            attach_check(region, replace(cfg, gap_policy="fence"))
        with pytest.raises(RegionError, match="client_spread"):
            attach_check(region, replace(cfg, client_spread=2))
        with pytest.raises(RegionError, match="order"):
            attach_check(region, replace(cfg, order=2, client_spread=1))


def test_cli_publish_order5(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from harness.cli import main

    hist = tmp_path / "h.jsonl"
    assert main(["publish", "--order", "5", "--client-spread", "4", "--plant-gap", "0:5",
                 "--gap-timeout-ms", "200", "--brokers", "4", "--subscribers", "2",
                 "--total-bytes", "256KiB", "--batch-bytes", "4KiB", "--history", str(hist)]) == 0
    out = capsys.readouterr().out
    assert "PASS order=5" in out and "order 5: hold buffer max" in out and "declared lost" in out
    assert main(["check-history", str(hist)]) == 0
    assert main(["publish", "--order", "2", "--gap-policy", "fence"]) == 2
    assert "apply to Order 5 only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["publish", "--order", "5", "--plant-gap", "zero"])
    assert exc.value.code == 2 and "CLIENT:SEQ" in capsys.readouterr().err


def test_bench_order5_vs_order2_is_a_same_run_ratio() -> None:
    from harness.benchmarks import bench_region, order5_vs_order2, profile_config
    from harness.profiles import load_profile
    from harness.stats import Plan

    profile = load_profile("ci")
    cfg = profile_config(profile, 4 << 20)
    o5 = profile.workload.order5_settings()
    assert o5["client_spread"] == profile.workload.brokers
    plan = Plan(min_sample_s=0.002, precision=0.5, min_pairs=3, max_pairs=3, budget_s=3.0, warmup=0)
    with bench_region(profile, [cfg, replace(cfg, **o5)]) as region:
        r = order5_vs_order2(region, cfg, plan, o5)
    assert r.name == "order5_vs_order2" and len(r.a) == len(r.b) == r.runs >= 3
    assert r.params["config"]["order"] == 5 and r.params["b_differs"]["order"] == 2
    lo, hi = r.stats.interval
    assert lo <= r.median <= hi and r.median > 0


def test_a_resumed_subscriber_is_a_resume_event_in_the_history() -> None:
    """A subscriber that resumes (CXL_F_RESUME) from a published position is recorded as a
    v2 ``resume`` event: its deliveries from there are contiguous and owe nothing below it.
    Without the event the same history fails (the subscriber seems to skip positions)."""
    import struct

    from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogHandle

    cfg = LogConfig(order=2, brokers=2, subscribers=1, msg_size=64, batch_bytes=256,
                    total_bytes=2 * 40 * 256, pbr_slots=64, goi_slots=256, record=True,
                    resume_subscribers=True)
    with Region.emulated((layout_size(cfg) + 4095) // 4096 * 4096) as region:
        format_region(region, cfg)
        first = LogHandle(region, cfg)
        assert first.run(ROLE_PUBLISHERS | ROLE_SCANNERS) == 0  # everything ordered, rings never wrap
        recs = first.records()
        first.close()
        buf = region.native.ffi.buffer(region.base, region.size)
        subline = struct.unpack_from("<8Q", buf, 64)[2]
        struct.pack_into("<Q", buf, subline, 30)  # as if it had delivered positions 0..29
        second = LogHandle(region, cfg)
        assert second.run(ROLE_SUBSCRIBERS) == 0
        later = second.records()
        second.close()
    recs["deliver0"] = later["deliver0"]
    recs["commit"] = np.concatenate([recs["commit"], later["commit"]])
    assert [int(p) for p in later["deliver0"]["pos"][:2]] == [30, 31]
    h = history_from_records(cfg, recs)
    assert len(h.resumes) == 1 and int(h.resumes["position"][0]) == 30
    assert check_history(h, 2).ok, check_history(h, 2).failed_ids()
    without = replace(h, resumes=type(h.resumes).empty("resumes"))
    assert "delivery-contiguous" in check_history(without, 2).failed_ids()


def test_a_gap_timed_out_on_a_live_client_is_explained_only_by_time_an_exploration_forced() -> None:
    # a marker with no planted gap, no crash and no shared rings: a defect on a real run; in
    # an exploration that made time pass while the client's batch was on its way (a
    # deviation: the others were slow past the timeout) it is what the timeout must do
    from harness.invariants import CheckContext, _order5_checks

    cfg = LogConfig(**SPREAD4)
    s = {"o5_markers": 1, "o5_fences": 0, "o5_late": 1, "o5_fenced_rejects": 0, "o5_hold_max": 1,
         "o5_hold_full": 0, "o5_line_mismatch": 0, "sub_client_order_errors": [0] * 4, "sub_markers": [1] * 4}

    def gaps(stats: dict[str, Any], early_ticks: int = 0) -> tuple[bool, str]:
        return next((ok, detail) for cid, _, ok, detail, _
                    in _order5_checks(cfg, stats, CheckContext(early_ticks=early_ticks))
                    if cid == "order5-gaps-explained")

    ok, detail = gaps(s)
    assert not ok and detail.startswith("no gap planted")
    ok, detail = gaps(s, early_ticks=1)
    assert ok and detail.startswith("time made to pass"), detail
    ok, _ = gaps({**s, "o5_markers": 0, "o5_late": 0})
    assert ok
