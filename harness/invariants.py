"""The ordering invariants of a run: the counters the C core keeps on the hot path (always),
and the full history validator over the per-batch records (when the run kept them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HistoryError
from harness.history import History, check_history
from harness.native import RESUME_KIND, LossReason
from harness.order5 import LOSS_FENCED, LOSS_LATE, REC_KIND_BATCH, REC_KIND_FENCE, REC_KIND_MARKER
from harness.order5 import split_session as _split_session

if TYPE_CHECKING:
    from harness.log import LogConfig
    from harness.results import Check


@dataclass(frozen=True)
class CheckContext:
    """What the harness knows of a run beyond the core's counters and records, and the checks
    must weigh: set by whoever ran it (harness.hosts, harness.checked), never by the core."""

    clock_uncertainty_ns: int = 0  # hosts on separate clocks: records ordered only beyond this
    early_ticks: int = 0           # an exploration made time pass while a role could still go on


def history_from_records(cfg: LogConfig, recs: dict[str, Any]) -> History:
    """Turn the C core's per-batch records into a :class:`History` for the validator: format
    version 2 (``total_order`` on order events, the ``committed_seq`` each subscriber had read
    on its deliveries, where a resumed subscriber started; at Order 5 the session epochs,
    declared-lost markers and fences)."""
    o5 = cfg.order == 5
    pub = recs["publish"]
    p_sess, p_seq = _split_session(pub["client_batch_seq"])
    publishes = {
        "t": pub["publish_ns"], "broker": pub["broker"], "client": pub["client"],
        "client_batch_seq": p_seq if o5 else pub["client_batch_seq"], "pbr_index": pub["pbr_index"],
        "outcome": np.zeros(len(pub), dtype=np.int64), "msg_count": pub["msg_count"],
        "size": pub["size"], "checksum": pub["checksum"],
    }
    if o5:
        publishes["session"] = p_sess
    loss = recs["loss"]
    # A slot declared lost and then committed by its live publisher (alive=1) is no loss the
    # history may excuse: the publisher was told ok, so a missing batch is a lost write there.
    # Order 5's late, duplicate and fenced batches are slots the sequencer resolved without a
    # position: losses too (their publishers are never acknowledged).
    if "alive" in (loss.dtype.names or ()):
        loss = loss[loss["alive"] == 0]
    losses = {"t": loss["ns"], "broker": loss["broker"], "pbr_index": loss["pbr_index"]}
    o = recs["order"]
    kind = o["kind"] if "kind" in (o.dtype.names or ()) else np.zeros(len(o), dtype=np.uint32)
    ob, om, of = o[kind == REC_KIND_BATCH], o[kind == REC_KIND_MARKER], o[kind == REC_KIND_FENCE]
    o_sess, o_seq = _split_session(ob["client_batch_seq"])
    orders = {"t": ob["commit_ns"], "seq": ob["seq"], "broker": ob["broker"], "client": ob["client"],
              "client_batch_seq": o_seq if o5 else ob["client_batch_seq"],
              "pbr_index": ob["pbr_index"], "total_order": ob["first_msg_order"]}
    markers = fences = None
    if o5:
        orders["session"] = o_sess
        m_sess, m_seq = _split_session(om["client_batch_seq"])
        markers = {"t": om["commit_ns"], "seq": om["seq"], "client": om["client"],
                   "session": m_sess, "client_batch_seq": m_seq}
        f_sess, f_through = _split_session(of["client_batch_seq"])
        fences = {"t": of["commit_ns"], "client": of["client"], "session": f_sess,
                  "committed_through": f_through}
    # The writer's own records: one clock, one writer. Readers' observations carry timestamps
    # taken a little after their reads, so across observers they may interleave out of order;
    # each subscriber's own monotonicity is checked in C (committed_regressions).
    c = recs["commit"]
    r = c[c["kind"] >= RESUME_KIND]  # a subscriber resumed (CXL_F_RESUME) at this position
    resumes: dict[str, Any] = {"t": r["ns"], "subscriber": r["kind"].astype(np.int64) - RESUME_KIND,
                               "position": r["value"]}
    if cfg.order == 0:
        resumes["broker"] = r["value2"]
    c = c[c["kind"] == 0]
    commits: dict[str, Any] = {"t": c["ns"], "committed_seq": c["value"]}
    if cfg.order == 0:  # per-broker frontiers, written by each broker's acker
        commits["broker"] = c["who"]
    acks = None
    if cfg.ack:
        a = recs["ack"]
        n = len(a)
        minus = np.full(n, -1, dtype=np.int64)
        acks = {"t": a["ns"], "level": np.full(n, cfg.ack, dtype=np.int64), "broker": a["who"],
                "client": minus, "client_batch_seq": minus, "pbr_index": minus,
                "through_msgs": a["value2"]}
    deliveries = {}
    for k in range(cfg.subscribers):
        if k == cfg.crash_subscriber:  # crashed on purpose: its prefix is checked on its own
            continue
        d = recs[f"deliver{k}"]
        d_sess, d_seq = _split_session(d["client_batch_seq"])
        cols = {"t": d["ns"], "position": d["pos"], "broker": d["broker"], "client": d["client"],
                "client_batch_seq": d_seq if o5 else d["client_batch_seq"],
                "pbr_index": d["pbr_index"], "checksum": d["checksum"], "size": d["size"]}
        if cfg.order != 0 and "committed" in (d.dtype.names or ()):
            cols["committed_seq"] = d["committed"]  # what it had read before this entry
        if o5:
            cols["session"] = d_sess
        deliveries[k] = cols
    return History.from_arrays(order=cfg.order, publishes=publishes, orders=orders, commits=commits,
                               acks=acks, deliveries=deliveries, losses=losses, resumes=resumes,
                               markers=markers,
                               fences=fences, drained=True, brokers=cfg.brokers, source="run records")


_KINDS = ("header", "GOI entry", "control value", "foreign token")


_REASONS = {int(LossReason.TIMEOUT): "publisher stopped (slot timeout)",
            int(LossReason.CORRUPT): "corrupt header",
            int(LossReason.ORPHAN): "committed, never ordered: its broker's scanner stopped"}


def _loss_examples(cfg: LogConfig, recs: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every declared-lost batch by identity (when the run kept records)."""
    if recs is None or "loss" not in recs:
        return []
    expected = cfg.expected_lost_publishers
    out = []
    for r in recs["loss"]:
        if int(r["reason"]) in (LOSS_FENCED, LOSS_LATE):  # Order 5's own resolutions
            continue
        client = int(r["client"])
        why = int(r["reason"])
        alive = bool(r["alive"]) if "alive" in r.dtype.names else False
        broker = int(r["broker"])
        ok = not alive and ((why == LossReason.TIMEOUT and client in expected)
                            or (why == LossReason.ORPHAN and broker == cfg.crash_scanner))
        out.append({"broker": broker, "pbr_index": int(r["pbr_index"]),
                    "client": None if client == 0xFFFFFFFF else client,
                    "reason": _REASONS.get(why, f"reason {why}"), "publisher_alive": alive,
                    "expected": ok})
    return out


def crash_description(cfg: LogConfig) -> str:
    """The crash a run injected, in words ("" none)."""
    if not cfg.crash_role:
        return ""
    what = {"publisher": "publisher {i} stopped in the middle of its batch {n}",
            "scanner": "the scanner of broker {i} stopped mid-epoch after {n} ring slots",
            "subscriber": "subscriber {i} stopped mid-chunk after {n} deliveries"}[cfg.crash_role]
    how = " (its process SIGKILLed)" if cfg.crash_kill else " (its thread stopped)"
    return what.format(i=cfg.crash_index, n=cfg.crash_after) + how


def _loss_checks(cfg: LogConfig, s: dict[str, Any],
                 recs: dict[str, Any] | None) -> list[tuple[str, str, bool, str, list[dict[str, Any]]]]:
    """Losses are never subtracted away: a declared-lost batch of a live publisher fails the run;
    a crashed publisher's losses are named one by one as the expected outcome."""
    expected = cfg.expected_lost_publishers
    ppb = cfg.publishers_per_broker
    crashed_brokers = {p // ppb for p in expected} | ({cfg.crash_scanner} if cfg.crash_scanner >= 0 else set())
    by_broker = [int(x) for x in s.get("lost_by_broker", [0] * 8)[: cfg.brokers]]
    late = int(s.get("lost_late_commits", 0))
    examples = _loss_examples(cfg, recs)
    if recs is not None and "loss" in recs:
        unexpected = sum(1 for e in examples if not e["expected"])
    else:  # no records: per broker only
        unexpected = sum(n for b, n in enumerate(by_broker) if b not in crashed_brokers)
    total = int(s["batches_lost"])
    detail = (f"{total} batch(es) declared lost (per broker {by_broker}), {unexpected} of them "
              f"not from a crashed publisher, {late} committed by their live publisher after all")
    out = [("no-unexpected-loss", "no batch of a live publisher declared lost",
            unexpected == 0 and late == 0, detail,
            [e for e in examples if not e["expected"]][:20])]
    if expected or cfg.crash_scanner >= 0:
        named = [e for e in examples if e["expected"]]
        names = ", ".join(f"broker {e['broker']} slot {e['pbr_index']} (publisher {e['client']})"
                          for e in named[:12]) or "none recorded"
        if len(named) > 12:
            names += f", ... ({len(named) - 12} more in the report)"
        whose = (f"batches of crashed publisher(s) {sorted(expected)}" if expected else
                 f"batches of broker {cfg.crash_scanner} (its scanner crashed)")
        out.append(("crash-losses-named", f"{whose} declared lost, by identity", True,
                    f"expected outcome of the crash: {total - unexpected} declared lost: {names}",
                    named[:50]))
    out += _crash_checks(cfg, s, recs)
    return out


def _crash_checks(cfg: LogConfig, s: dict[str, Any],
                  recs: dict[str, Any] | None) -> list[tuple[str, str, bool, str, list[dict[str, Any]]]]:
    """An injected crash must be found: the dead role detected (its beat stood still past
    ``slot_timeout_ms`` and its thread is gone), how long that took, and for a subscriber the
    prefix it delivered and the positions it never got, by identity."""
    role = cfg.crash_role
    if not role or cfg.slot_timeout_ms <= 0:
        return []
    crash_ns, detect_ns = int(s.get("crash_ns", 0)), int(s.get("crash_detect_ns", 0))
    if role == "scanner":
        found = bool(int(s.get("scanners_dead", 0)) >> cfg.crash_scanner & 1)
    elif role == "subscriber":
        found = bool(int(s.get("subscribers_dead", 0)) >> cfg.crash_subscriber & 1)
    else:
        found = detect_ns > 0
    seen = " (as the coordinator saw the process die, polled every 10 ms)" if cfg.crash_kill and cfg.processes else ""
    took = f"{(detect_ns - crash_ns) / 1e6:.1f} ms after the crash{seen}" if found and crash_ns and \
        detect_ns >= crash_ns else "time of the crash unknown" if found else "never"
    out: list[tuple[str, str, bool, str, list[dict[str, Any]]]] = [
        ("crash-detected", f"the crashed {role} was detected as dead", found,
         f"{crash_description(cfg)}; detected {took} (slot timeout {cfg.slot_timeout_ms:g} ms)"
         if found else f"{crash_description(cfg)}; never detected as dead", [])]
    if role == "subscriber":
        k = cfg.crash_subscriber
        pos = int(s.get("dead_sub_pos", [0] * 8)[k])
        committed = int(s["committed_seq"])
        examples: list[dict[str, Any]] = []
        ok = found and pos <= committed
        detail = (f"subscriber {k} published position {pos} before it died: positions 0..{pos - 1} "
                  f"delivered to it, {committed - pos} committed batch(es) never delivered to it")
        if cfg.crash_kill:
            detail += " (its own records died with its process)"
        elif recs is not None and f"deliver{k}" in recs:
            got = recs[f"deliver{k}"]["pos"].tolist()
            ok = ok and got == list(range(len(got))) and len(got) >= pos
            detail += f" (its records: {len(got)} delivered, positions contiguous from 0: " \
                      f"{got == list(range(len(got)))})"
            order = recs.get("order")
            if order is not None:
                rest = order[order["seq"] >= len(got)]
                rest = rest[np.argsort(rest["seq"])][:50]
                examples = [{"position": int(r["seq"]), "broker": int(r["broker"]),
                             "pbr_index": int(r["pbr_index"]), "client": int(r["client"]),
                             "outcome": "not delivered to the crashed subscriber"} for r in rest]
        out.append(("crashed-subscriber-prefix", f"crashed subscriber {k} delivered a gap-free "
                    "prefix; what it never got is named", ok, detail, examples))
    return out


def _counter_checks(cfg: LogConfig, s: dict[str, Any], recs: dict[str, Any] | None = None,
                    ctx: CheckContext = CheckContext()) -> list[tuple[str, str, bool, str, list[dict[str, Any]]]]:
    subs = cfg.subscribers
    published, lost = s["batches_published"], s["batches_lost"]
    late = int(s.get("lost_late_commits", 0))
    crashed = cfg.expected_lost_publishers
    ppb = cfg.publishers_per_broker
    crashed_brokers = {p // ppb for p in crashed}
    # every batch its publisher completed is ordered (a crashed publisher's last batch was
    # never completed; a completed batch declared lost is a false loss and fails below); at
    # Order 5 except the late, duplicate and fenced batches the sequencer resolved unordered;
    # and for a crashed scanner's broker, its batches declared lost by identity
    o5_unordered = int(s.get("o5_late", 0)) + int(s.get("o5_fenced_rejects", 0)) if cfg.order == 5 else 0
    markers = int(s.get("o5_markers", 0)) if cfg.order == 5 else 0
    orphaned = int(s.get("batches_orphaned", 0)) if cfg.crash_scanner >= 0 else 0
    expected_ordered = published - late - o5_unordered - orphaned
    if crashed:  # a killed process reports nothing it published: what was ordered is the basis
        expected_ordered = int(s["batches_ordered"])
    delivered = s["sub_batches"][:subs]
    per_broker = cfg.batches_per_publisher * ppb
    pub_b = [int(x) for x in s.get("published_by_broker", [0] * 8)[: cfg.brokers]]
    live_brokers = [b for b in range(cfg.brokers) if b not in crashed_brokers]
    out: list[tuple[str, str, bool, str, list[dict[str, Any]]]] = []
    if crashed:
        # the crashed publisher's broker cannot finish: the watchdog ends the run; every other
        # broker must have published and been ordered in full
        ord_b = [int(x) for x in s.get("ordered_by_broker", [0] * 8)[: cfg.brokers]]
        short = [b for b in live_brokers if pub_b[b] != per_broker or ord_b[b] != per_broker]
        out.append(("run-completed", "every broker without a crashed publisher completed", not short,
                    f"brokers {short} did not publish and order their {per_broker} batches "
                    f"(published {pub_b}, ordered {ord_b})" if short else
                    f"brokers {live_brokers} complete; crashed publisher(s) {sorted(crashed)} stopped "
                    f"the others (watchdog: {'stalled' if s['stalled'] else 'finished'})", []))
    else:
        out += [
            ("run-completed", "run completed (watchdog)", not s["stalled"],
             f"stalled: nothing progressed for {cfg.watchdog_s}s; roles still running: "
             f"{_roles(s['stall_role'])}" if s["stalled"] else "all roles finished", []),
            ("all-published", "every batch published", published == cfg.total_batches,
             f"{published} of {cfg.total_batches} batches published", []),
        ]
    out += _loss_checks(cfg, s, recs)
    if cfg.order >= 2:
        out.append(("dense-sequence", "global sequence unique and dense",
                    s["committed_seq"] - markers == s["batches_ordered"] == expected_ordered,
                    f"committed_seq={s['committed_seq']}, ordered={s['batches_ordered']}, "
                    f"published={published} (declared lost: {lost}, never subtracted"
                    + (f"; Order 5: {markers} marker position(s), {o5_unordered} late/duplicate/"
                       "fenced batch(es) resolved unordered)" if cfg.order == 5 else ")"), []))
        out.append(("sequencer-broker-order", "sequencer sees each broker in ring order",
                    s["order_gaps"] == 0, f"{s['order_gaps']} out-of-order or skipped ring slots", []))
    if cfg.ack:
        acked = int(s["batches_acked"])
        out.append(("acked-all", "every published batch acknowledged, no lost one",
                    acked == expected_ordered,
                    f"ACK covers {acked} of {published} published batches (declared lost: {lost}, "
                    "never acknowledged)", []))
        acked_msgs, want_msgs = int(s["messages_acked"]), acked * cfg.msgs_per_batch
        out.append(("acked-messages", "the ACK's message frontier matches its batch frontier",
                    acked_msgs == want_msgs,
                    f"ACK covers {acked_msgs} messages for {acked} acknowledged batches of "
                    f"{cfg.msgs_per_batch} messages ({want_msgs} expected)", []))
        out.append(("ack-not-ahead", "ACK never ahead of what was published", s["ack_ahead"] == 0,
                    f"{s['ack_ahead']} ACK frontiers ahead of the claimed slots", []))
    if subs:
        live = [k for k in range(subs) if k != cfg.crash_subscriber]
        but = f" (subscriber {cfg.crash_subscriber} crashed: checked on its own)" if len(live) < subs else ""
        out.append(("delivered-all", "every published batch delivered to every live subscriber",
                    all(delivered[k] == expected_ordered for k in live),
                    f"delivered per subscriber {delivered}, expected {expected_ordered}{but}", []))
        hashes = {s["sub_hash"][k] for k in live}
        out.append(("subscribers-agree", "all live subscribers see the same sequence",
                    len(hashes) <= 1 and len({delivered[k] for k in live}) <= 1,
                    f"{len(hashes)} distinct sequence hashes over {len(live)} live subscribers{but}", []))
        errors = s["sub_checksum_errors"][:subs]
        out.append(("payload-checksums", "payload checksums match at delivery", not any(errors),
                    f"checksum mismatches per subscriber {errors}", []))
        oerr = s["sub_order_errors"][:subs]
        if cfg.order != 5:  # Order 5: per client (client-fifo-delivered)
            out.append(("subscriber-broker-order", "per-broker arrival order kept at delivery",
                        not any(oerr), f"out-of-order deliveries per subscriber {oerr}", []))
        out.append(("commit-monotonic-observed", "committed_seq never goes back",
                    s["committed_regressions"] == 0, f"{s['committed_regressions']} regressions seen", []))
    if cfg.order == 5:
        out += _order5_checks(cfg, s, ctx)
    corrupt = {k: s[k] for k in ("corrupt_headers", "corrupt_goi", "corrupt_ctrl", "foreign_tokens")}
    listed = int(s.get("corrupt_listed", 0))
    where = [{"offset": int(s["corrupt_off"][i]), "value": int(s["corrupt_val"][i]),
              "kind": _KINDS[int(s["corrupt_kind"][i])] if int(s["corrupt_kind"][i]) < 4 else "?"}
             for i in range(listed)]
    first = "; ".join(f"{w['kind']} at offset {w['offset']:#x} = {w['value']:#x}" for w in where[:3])
    out.append(("shared-memory-sane", "no corrupt header, GOI entry or control value read",
                not any(corrupt.values()),
                ", ".join(f"{k}={v}" for k, v in corrupt.items())
                + (f" (each distinct location and value once; first: {first})" if first else ""),
                where))
    return out


def _order5_checks(cfg: LogConfig, s: dict[str, Any],
                   ctx: CheckContext = CheckContext()) -> list[tuple[str, str, bool, str, list[dict[str, Any]]]]:
    """Per-client FIFO at delivery (counted in C on every run, records or not), every marker
    passed over by every subscriber, and every gap resolution explained by a planted gap or
    an injected crash."""
    subs = cfg.subscribers
    markers, fences = int(s["o5_markers"]), int(s["o5_fences"])
    late, rejects = int(s["o5_late"]), int(s["o5_fenced_rejects"])
    out: list[tuple[str, str, bool, str, list[dict[str, Any]]]] = []
    if subs:
        errs = [int(x) for x in s["sub_client_order_errors"][:subs]]
        out.append(("client-fifo-delivered", "each client's batches delivered in client order",
                    not any(errs), f"per-client order broken at delivery per subscriber {errs}", []))
        seen = [int(x) for x in s["sub_markers"][:subs]]
        out.append(("markers-delivered", "every declared-lost marker passed over in order by every subscriber",
                    all(m == markers for m in seen),
                    f"{markers} marker(s) written, passed over per subscriber {seen}", []))
    bad_lines = int(s.get("o5_line_mismatch", 0))
    out.append(("session-lines", "each client's session line says what the sequencer holds",
                bad_lines == 0, f"{bad_lines} client session line(s) disagree with the sequencer's "
                "table (session, next_expected, fenced_through, markers, fences, late)", []))
    planted = cfg.gap_client >= 0 or bool(cfg.expected_lost_publishers)
    # Several clients spread over brokers that share rings can each wait for ring space the
    # other's held batches keep: only the gap timeout ends that (as upstream's skip timeout)
    contended = cfg.publishers_per_broker > 1 and cfg.client_spread > 1
    # an exploration made time pass while a live client's batch was still on its way (the
    # others were slow past the gap timeout): the timeout fires on it, as on a stalled host
    forced = ctx.early_ticks > 0
    resolved = markers + fences
    ok = resolved >= 1 if cfg.gap_client >= 0 else (planted or contended or forced
                                                     or resolved + late + rejects == 0)
    why = (f"gap planted (client {cfg.gap_client}, seq {cfg.gap_seq}): " if cfg.gap_client >= 0 else
           "crash injected: " if planted else
           "clients share rings (cross-client waits end at the timeout): " if contended else
           "time made to pass while a batch was on its way (exploration): " if forced else
           "no gap planted: ")
    out.append(("order5-gaps-explained", "every gap resolution (marker, fence) has a cause",
                ok, why + f"{markers} marker(s), {fences} fence(s), {rejects} batch(es) of fenced "
                f"sessions, {late} late or duplicate; hold buffer max {s['o5_hold_max']}, "
                f"full {s['o5_hold_full']} time(s) (policy {cfg.gap_policy}, timeout "
                f"{cfg.gap_timeout_ms} ms)", []))
    return out


def _roles(mask: int) -> str:
    names = ["publishers", "scanners", "sequencer", "subscribers"]
    return ", ".join(n for i, n in enumerate(names) if mask & (1 << i)) or "none"


def run_checks(cfg: LogConfig, stats: dict[str, Any], recs: dict[str, Any] | None,
               with_history: bool = True, context: CheckContext = CheckContext()) -> list[Check]:
    from harness.results import Check

    checks = [Check(cid, name, ok, detail, examples, group="in-run")
              for cid, name, ok, detail, examples in _counter_checks(cfg, stats, recs, context)]
    if recs is not None and with_history:
        try:
            history = history_from_records(cfg, recs)
        except HistoryError as exc:  # the records themselves are inconsistent: a finding
            checks.append(Check("history-structure", "run records form a valid history", False,
                                str(exc), group="history"))
            return checks
        # records of hosts on separate clocks (harness.hosts): ordered only beyond the alignment's error
        history.uncertainty = max(history.uncertainty, context.clock_uncertainty_ns)
        report = check_history(history, cfg.order)
        for r in report.results:
            detail = r.note or r.rule
            examples: list[dict[str, Any]] = []
            if r.anomaly is not None:
                detail = f"{r.anomaly.count} violation(s): {r.rule}"
                examples = r.anomaly.examples
            checks.append(Check(r.check_id, r.name, r.passed, detail, examples, group="history"))
    return checks
