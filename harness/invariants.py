"""The ordering invariants of a run: the counters the C core keeps on the hot path (always),
and the full history validator over the per-batch records (when the run kept them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HistoryError
from harness.history import History, check_history

if TYPE_CHECKING:
    from harness.log import Check, LogConfig


def history_from_records(cfg: LogConfig, recs: dict[str, Any]) -> History:
    """Turn the C core's per-batch records into a :class:`History` for the validator."""
    pub = recs["publish"]
    publishes = {
        "t": pub["publish_ns"], "broker": pub["broker"], "client": pub["client"],
        "client_batch_seq": pub["client_batch_seq"], "pbr_index": pub["pbr_index"],
        "outcome": np.zeros(len(pub), dtype=np.int64), "msg_count": pub["msg_count"],
        "size": pub["size"], "checksum": pub["checksum"],
    }
    loss = recs["loss"]
    losses = {"t": loss["ns"], "broker": loss["broker"], "pbr_index": loss["pbr_index"]}
    o = recs["order"]
    orders = {"t": o["commit_ns"], "seq": o["seq"], "broker": o["broker"], "client": o["client"],
              "client_batch_seq": o["client_batch_seq"], "pbr_index": o["pbr_index"]}
    # The writer's own records: one clock, one writer. Readers' observations carry timestamps
    # taken a little after their reads, so across observers they may interleave out of order;
    # each subscriber's own monotonicity is checked in C (committed_regressions).
    c = recs["commit"]
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
        d = recs[f"deliver{k}"]
        deliveries[k] = {"t": d["ns"], "position": d["pos"], "broker": d["broker"], "client": d["client"],
                         "client_batch_seq": d["client_batch_seq"], "pbr_index": d["pbr_index"],
                         "checksum": d["checksum"], "size": d["size"]}
    return History.from_arrays(order=cfg.order, publishes=publishes, orders=orders, commits=commits,
                               acks=acks, deliveries=deliveries, losses=losses, drained=True,
                               brokers=cfg.brokers, source="run records")


def _counter_checks(cfg: LogConfig, s: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    subs = cfg.subscribers
    published, lost = s["batches_published"], s["batches_lost"]
    expected_ordered = published - lost
    delivered = s["sub_batches"][:subs]
    out = [
        ("run-completed", "run completed (watchdog)", not s["stalled"],
         f"stalled: nothing progressed for {cfg.watchdog_s}s; roles still running: "
         f"{_roles(s['stall_role'])}" if s["stalled"] else "all roles finished"),
        ("all-published", "every batch published", published == cfg.total_batches,
         f"{published} of {cfg.total_batches} batches published"),
    ]
    if cfg.order == 2:
        out.append(("dense-sequence", "global sequence unique and dense",
                    s["committed_seq"] == s["batches_ordered"] == expected_ordered,
                    f"committed_seq={s['committed_seq']}, ordered={s['batches_ordered']}, "
                    f"published-lost={expected_ordered}"))
        out.append(("sequencer-broker-order", "sequencer sees each broker in ring order",
                    s["order_gaps"] == 0, f"{s['order_gaps']} out-of-order or skipped ring slots"))
    if cfg.ack:
        out.append(("acked-all", "every surviving batch acknowledged",
                    s["batches_acked"] == published,
                    f"ACK frontier covers {s['batches_acked']} of {published} ring slots"))
        out.append(("ack-not-ahead", "ACK never ahead of what was published", s["ack_ahead"] == 0,
                    f"{s['ack_ahead']} ACK frontiers ahead of the claimed slots"))
    if subs:
        out.append(("delivered-all", "every ordered batch delivered to every subscriber",
                    all(d == expected_ordered for d in delivered),
                    f"delivered per subscriber {delivered}, expected {expected_ordered}"))
        hashes = set(s["sub_hash"][:subs])
        out.append(("subscribers-agree", "all subscribers see the same sequence",
                    len(hashes) == 1 and len(set(delivered)) == 1,
                    f"{len(hashes)} distinct sequence hashes over {subs} subscribers"))
        errors = s["sub_checksum_errors"][:subs]
        out.append(("payload-checksums", "payload checksums match at delivery", not any(errors),
                    f"checksum mismatches per subscriber {errors}"))
        oerr = s["sub_order_errors"][:subs]
        out.append(("subscriber-broker-order", "per-broker arrival order kept at delivery",
                    not any(oerr), f"out-of-order deliveries per subscriber {oerr}"))
        out.append(("commit-monotonic-observed", "committed_seq never goes back",
                    s["committed_regressions"] == 0, f"{s['committed_regressions']} regressions seen"))
    corrupt = {k: s[k] for k in ("corrupt_headers", "corrupt_goi", "corrupt_ctrl", "foreign_tokens")}
    out.append(("shared-memory-sane", "no corrupt header, GOI entry or control value read",
                not any(corrupt.values()), ", ".join(f"{k}={v}" for k, v in corrupt.items())))
    return out


def _roles(mask: int) -> str:
    names = ["publishers", "scanners", "sequencer", "subscribers"]
    return ", ".join(n for i, n in enumerate(names) if mask & (1 << i)) or "none"


def run_checks(cfg: LogConfig, stats: dict[str, Any], recs: dict[str, Any] | None,
               with_history: bool = True) -> list[Check]:
    from harness.log import Check

    checks = [Check(cid, name, ok, detail, group="in-run")
              for cid, name, ok, detail in _counter_checks(cfg, stats)]
    if recs is not None and with_history:
        try:
            history = history_from_records(cfg, recs)
        except HistoryError as exc:  # the records themselves are inconsistent: a finding
            checks.append(Check("history-structure", "run records form a valid history", False,
                                str(exc), group="history"))
            return checks
        report = check_history(history, cfg.order)
        for r in report.results:
            detail = r.note or r.rule
            examples: list[dict[str, Any]] = []
            if r.anomaly is not None:
                detail = f"{r.anomaly.count} violation(s): {r.rule}"
                examples = r.anomaly.examples
            checks.append(Check(r.check_id, r.name, r.passed, detail, examples, group="history"))
    return checks
