"""Ordering-invariant checks over a :class:`~harness.history.model.History`.

Every check has a stable identifier (``check_id``), a Jepsen-style anomaly name and a
one-sentence rule (``CHECKS``). A violated check yields one :class:`Anomaly` with the number of
violating items and a few minimal counterexamples (positions, batches, subscribers and the
line numbers or rows of the events involved). Checks are written so that a defect of one kind
is reported by one check; where two rules genuinely overlap, the docs say so.

A *stream* is the unit that positions count in: at Order 2 the one global log, at Order 0
each broker's log (the stream of a record is its broker).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import HistoryError
from harness.history.model import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    ORDER_LEVELS,
    Array,
    History,
    Table,
    constant_column,
    dense_ids,
)

DEFAULT_EXAMPLES = 5
_I64 = np.int64
_INF = np.iinfo(np.int64).max
_NEG = np.iinfo(np.int64).min


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Anomaly:
    """One violated check: how many items violate it and the first counterexamples."""

    check_id: str
    name: str
    count: int
    examples: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"check_id": self.check_id, "name": self.name, "count": self.count,
                "examples": self.examples}


@dataclass(frozen=True)
class CheckResult:
    check_id: str
    name: str
    rule: str
    status: str  # "passed", "failed" or "skipped"
    anomaly: Anomaly | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"check_id": self.check_id, "name": self.name, "rule": self.rule,
                             "status": self.status}
        if self.note:
            d["note"] = self.note
        if self.anomaly is not None:
            d["count"] = self.anomaly.count
            d["examples"] = self.anomaly.examples
        return d


@dataclass(frozen=True)
class CheckReport:
    order: int
    source: str
    counts: dict[str, int]
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def anomalies(self) -> list[Anomaly]:
        return [r.anomaly for r in self.results if r.anomaly is not None]

    def result(self, check_id: str) -> CheckResult:
        for r in self.results:
            if r.check_id == check_id:
                return r
        raise KeyError(check_id)

    def failed_ids(self) -> list[str]:
        return [r.check_id for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "cxl-history-check",
            "version": 1,
            "ok": self.ok,
            "order": self.order,
            "source": self.source,
            "counts": dict(self.counts),
            "checks": [r.to_dict() for r in self.results],
        }


class _Skip(Exception):
    """Raised by a check that does not apply to this history."""


# --------------------------------------------------------------------------- context
class _Ctx:
    """Joins computed once and shared by the checks."""

    def __init__(self, h: History, order: int, max_examples: int) -> None:
        self.h = h
        self.order = order
        self.k = max_examples
        P, O, D, A, C, L = h.publishes, h.orders, h.deliveries, h.acks, h.commits, h.losses
        self.P, self.O, self.D, self.A, self.C, self.L = P, O, D, A, C, L
        self.has_orders = len(O) > 0
        # streams: Order 2 -> one global stream 0; Order 0 -> the broker
        if order != 0:  # Order 2 and 5: one total order
            self.o_stream = constant_column(0, len(O))  # views: no memory
            self.d_stream = constant_column(0, len(D))
            self.c_stream = constant_column(0, len(C))
        else:
            self.o_stream = O["broker"]
            self.d_stream = D["broker"]
            self.c_stream = C["broker"]
        # batch ids: b3 = (broker, client, client_batch_seq) and, at Order 5, the session
        # (absent = 0; acks name none), b4 adds pbr_index
        k3 = ("broker", "client", "client_batch_seq")

        def key(t: Table) -> tuple[Array, ...]:
            base = tuple(t[c] for c in k3)
            if order != 5:
                return base
            if t is A:  # acks name no session
                return (*base, constant_column(0, len(t)))
            sess = np.asarray(t["session"])
            if t is D and bool((sess < 0).any()):
                # a delivery without one is of the session of the batch published in its slot
                sp, sd = dense_ids([(P["broker"], P["pbr_index"]), (D["broker"], D["pbr_index"])])
                of_slot = np.zeros(1 + max(int(sp.max()) if sp.size else -1,
                                           int(sd.max()) if sd.size else -1), dtype=_I64)
                named = P["pbr_index"] >= 0
                of_slot[sp[named]] = _session(P)[named]
                sess = np.where(sess >= 0, sess, of_slot[sd])
            return (*base, np.where(sess < 0, 0, sess))

        self.pub_b3, self.ord_b3, self.del_b3, self.ack_b3 = dense_ids(
            [key(t) for t in (P, O, D, A)])
        self.ord_b4, self.del_b4 = dense_ids(
            [(*key(t), t["pbr_index"]) for t in (O, D)])
        n3 = 1 + max((int(a.max()) for a in (self.pub_b3, self.ord_b3, self.del_b3, self.ack_b3)
                      if a.size), default=-1)
        self.pub_of_b3: Array = np.full(n3, -1, dtype=np.int32 if len(P) < 2**31 - 1 else _I64)
        self.pub_of_b3[self.pub_b3] = np.arange(len(P), dtype=_I64)
        self.ord_pub = self.pub_of_b3[self.ord_b3]
        self.del_pub = self.pub_of_b3[self.del_b3]
        # declared-lost slots
        slot_l, slot_o, slot_d, slot_p = dense_ids(
            [(t["broker"], t["pbr_index"]) for t in (L, O, D, P)])
        lost = np.zeros(1 + max((int(a.max()) for a in (slot_l, slot_o, slot_d, slot_p)
                                 if a.size), default=-1), dtype=bool)
        lost[slot_l] = True
        self.lost_slot = lost
        self.ord_lost, self.del_lost = lost[slot_o], lost[slot_d]
        self.pub_lost = lost[slot_p] & (P["pbr_index"] >= 0)
        self.loss_ref_of_slot = np.full(lost.size, -1, dtype=_I64)
        self.loss_ref_of_slot[slot_l[::-1]] = np.arange(len(L), dtype=_I64)[::-1]
        self.slot_o, self.slot_d, self.slot_p = slot_o, slot_d, slot_p
        self.steps: tuple[Array, Array, Array] | None = None
        self.resume_skips: list[tuple[int, int]] = []
        self.starts: dict[tuple[int, int], int] = {}  # (subscriber, stream) -> first position
        self.u = int(h.uncertainty)

    def lost_positions(self, broker: int) -> Array:
        """Order 0: the positions of broker ``broker``'s log that a declared-lost slot holds,
        sorted. The core numbers a broker's log by ring index (position = ``pbr_index``), so
        a slot its acker declared lost keeps its position, empty. A history that numbers the
        log densely instead (some order event or delivery at a position other than its
        ``pbr_index``) gives a lost slot no position: then none."""
        O, D = self.O, self.D
        om, dm = O["broker"] == broker, D["broker"] == broker
        if bool((O["seq"][om] != O["pbr_index"][om]).any()) or \
                bool((D["position"][dm] != D["pbr_index"][dm]).any()):
            return np.zeros(0, dtype=_I64)
        lost = np.unique(self.L["pbr_index"][self.L["broker"] == broker])
        return np.setdiff1d(lost, O["seq"][om])

    def partial_followers(self) -> dict[int, Array]:
        """Subscribers that follow only some brokers (they have follow events): their
        brokers."""
        F = self.h.follows
        return {int(s): np.unique(F["broker"][F["subscriber"] == s])
                for s in np.unique(F["subscriber"])}

    def follows_broker(self, sub: int, brokers: Array) -> Array:
        """Mask over ``brokers``: does subscriber ``sub`` follow each?"""
        part = self.partial_followers().get(sub)
        return np.ones(brokers.size, dtype=bool) if part is None else np.isin(brokers, part)

    def log_broker(self) -> Array | None:
        """Order 2: the broker of the batch at each global position (earliest order record;
        -1 where no order event), or None without order events."""
        if not self.has_orders:
            return None
        O = self.O
        n = int(O["seq"].max()) + 1
        out = np.full(n, -1, dtype=_I64)
        rows = np.lexsort((np.arange(len(O)), O["t"]))[::-1]
        out[O["seq"][rows]] = O["broker"][rows]
        return out

    # ---------------------------------------------------------------- formatting
    def stream_name(self, s: int) -> str:
        return "global" if self.order != 0 else f"broker {s}"

    def batch(self, t: Table, i: int) -> dict[str, int]:
        return {"broker": int(t["broker"][i]), "client": int(t["client"][i]),
                "client_batch_seq": int(t["client_batch_seq"][i]),
                "pbr_index": int(t["pbr_index"][i])}

    def ref(self, table: str, i: int) -> dict[str, Any]:
        return self.h.ref_of(table, i)

    def seen(self, table: str, i: int) -> dict[str, Any]:
        """An observation of a batch at a position: sequencer or subscriber."""
        if table == "orders":
            d: dict[str, Any] = {"observer": "sequencer", "position": int(self.O["seq"][i])}
        else:
            d = {"observer": f"subscriber {int(self.D['subscriber'][i])}",
                 "position": int(self.D["position"][i])}
        d["t"] = int(getattr(self.h, table)["t"][i])
        d.update(self.ref(table, i))
        return d

    # ---------------------------------------------------------------- helpers
    def first_order_of_b3(self) -> tuple[Array, Array]:
        """Per b3 id: row of its earliest order record (or -1), and that record's t."""
        n = self.pub_of_b3.size
        row = np.full(n, -1, dtype=_I64)
        if self.has_orders:
            rows = np.lexsort((np.arange(len(self.O)), self.O["t"]))[::-1]
            row[self.ord_b3[rows]] = rows  # the last assignment (earliest) wins
        t = np.where(row >= 0, self.O["t"][np.maximum(row, 0)] if len(self.O) else 0, _INF)
        return row, t

    def next_commit(self, stream: Array, t: Array) -> Array:
        """Row of the first commit observation of ``stream`` at or after ``t`` (or -1)."""
        out = np.full(t.shape[0], -1, dtype=_I64)
        C = self.C
        if len(C) == 0 or t.size == 0:
            return out
        rows = np.lexsort((np.arange(len(C)), C["t"], self.c_stream))
        cs, ct = self.c_stream[rows], C["t"][rows]
        for s in np.unique(stream):
            lo, hi = np.searchsorted(cs, s, "left"), np.searchsorted(cs, s, "right")
            if lo == hi:
                continue
            q = np.flatnonzero(stream == s)
            k = np.searchsorted(ct[lo:hi], t[q], "left")
            ok = k < hi - lo
            out[q[ok]] = rows[lo + k[ok]]
        return out


def _first_rows(keys: Array) -> Array:
    """Sorted row indices of the first occurrence of each key value."""
    _, idx = np.unique(keys, return_index=True)
    return np.sort(idx)


def _hex(v: int) -> str:
    return f"0x{v:016x}"


# --------------------------------------------------------------------------- the checks
def _unique_positions(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    if not c.has_orders:
        raise _Skip("no order events: subscribers are compared by prefix-agreement")
    O, D = c.O, c.D
    pos_o, pos_d = dense_ids([(c.o_stream, O["seq"]), (c.d_stream, D["position"])])
    npos = 1 + int(max(pos_o.max(), pos_d.max() if pos_d.size else -1))
    # sequencer: distinct batches per position
    pair_first = _first_rows(dense_ids([(pos_o, c.ord_b4)])[0])
    per_pos = np.bincount(pos_o[pair_first], minlength=npos)
    bad_pos = per_pos > 1
    # the log's batch at a position: its earliest order record
    rows = np.lexsort((np.arange(len(O)), O["t"]))[::-1]
    log_row = np.full(npos, -1, dtype=_I64)
    log_row[pos_o[rows]] = rows
    lr = log_row[pos_d]
    mism = (lr < 0) | (c.ord_b4[np.maximum(lr, 0)] != c.del_b4)
    mism &= ~bad_pos[pos_d]  # positions the sequencer itself contradicts are reported once
    bad_pos[pos_d[mism]] = True
    bad = np.flatnonzero(bad_pos)
    count = int(bad.size)
    examples: list[dict[str, Any]] = []
    if count:
        # order positions by stream/position for readable examples
        first_o = {int(p): i for i, p in reversed(list(enumerate(pos_o)))}
        first_d = {int(p): i for i, p in reversed(list(enumerate(pos_d))) if mism[i]}
        keyed = []
        for p in bad[: max(c.k * 50, 1000)]:
            i = first_o.get(int(p), first_d.get(int(p)))
            tbl, tname = (O, "orders") if int(p) in first_o else (D, "deliveries")
            s = int((c.o_stream if tname == "orders" else c.d_stream)[i])
            pos = int(tbl["seq" if tname == "orders" else "position"][i])
            keyed.append((s, pos, int(p)))
        for s, pos, p in sorted(keyed)[: c.k]:
            views: list[dict[str, Any]] = []
            for i in np.flatnonzero(pos_o == p)[:4]:
                views.append({**c.seen("orders", int(i)), "batch": c.batch(O, int(i))})
            if not views:
                views.append({"observer": "sequencer", "position": pos, "batch": None})
            for i in np.flatnonzero((pos_d == p) & mism)[:4]:
                views.append({**c.seen("deliveries", int(i)), "batch": c.batch(D, int(i))})
            examples.append({"stream": c.stream_name(s), "position": pos, "views": views})
    return count, examples


def _no_duplicates(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    O, D = c.O, c.D
    examples: list[dict[str, Any]] = []
    count = 0
    if len(O):
        cnt = np.bincount(c.ord_b4)
        dup_ids = np.flatnonzero(cnt > 1)
        count += int(dup_ids.size)
        for b in dup_ids[: c.k]:
            rows = np.flatnonzero(c.ord_b4 == b)
            examples.append({
                "observer": "sequencer", "batch": c.batch(O, int(rows[0])),
                "positions": [int(O["seq"][i]) for i in rows[:6]],
                "events": [c.ref("orders", int(i)) for i in rows[:6]],
            })
    if len(D):
        first = _first_rows(dense_ids([(D["subscriber"], c.del_b4, D["position"])])[0])
        pair = dense_ids([(D["subscriber"][first], c.del_b4[first])])[0]
        cnt = np.bincount(pair)
        dup_pairs = np.flatnonzero(cnt > 1)
        count += int(dup_pairs.size)
        for pr in dup_pairs[: max(0, c.k - len(examples))]:
            rows = first[pair == pr]
            examples.append({
                "observer": f"subscriber {int(D['subscriber'][rows[0]])}",
                "batch": c.batch(D, int(rows[0])),
                "positions": [int(D["position"][i]) for i in rows[:6]],
                "events": [c.ref("deliveries", int(i)) for i in rows[:6]],
            })
    return count, examples


def _dense_prefix(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    if not c.has_orders or len(c.C) == 0:
        raise _Skip("needs order events and committed_seq observations")
    count = 0
    examples: list[dict[str, Any]] = []
    for s in np.unique(c.c_stream):
        crows = np.flatnonzero(c.c_stream == s)
        top = int(crows[np.argmax(c.C["committed_seq"][crows])])
        committed = int(c.C["committed_seq"][top])
        u = np.unique(c.O["seq"][c.o_stream == s])
        if c.order == 5:  # a declared-lost marker occupies its position too
            u = np.union1d(u, c.h.markers["seq"])
        elif c.order == 0:  # a declared-lost slot holds its ring index in its broker's log
            u = np.union1d(u, c.lost_positions(int(s)))
        u = u[u < committed]
        count += committed - int(u.size)
        if committed > u.size and len(examples) < c.k:
            edges = np.concatenate([[-1], u, [committed]])
            gaps = np.flatnonzero(np.diff(edges) > 1)
            for g in gaps[: c.k - len(examples)]:
                lo, hi = int(edges[g]) + 1, int(edges[g + 1]) - 1
                examples.append({
                    "stream": c.stream_name(int(s)), "missing_positions": [lo, hi],
                    "committed_seq": committed,
                    "commit": {"t": int(c.C["t"][top]), **c.ref("commits", top)},
                })
    return count, examples


def _commit_monotonic(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    # An observation j is flagged when one made definitely before it (t_i + u < t_j; equal
    # t, or t within the uncertainty window, is concurrent) saw a larger committed_seq.
    C = c.C
    if len(C) < 2:
        return 0, []
    rows = np.lexsort((np.arange(len(C)), C["t"], c.c_stream))
    s, v, t = c.c_stream[rows], C["committed_seq"][rows], C["t"][rows]
    count = 0
    examples: list[dict[str, Any]] = []
    for st in np.unique(s):
        lo, hi = int(np.searchsorted(s, st, "left")), int(np.searchsorted(s, st, "right"))
        vs, ts = v[lo:hi], t[lo:hi]
        run = np.maximum.accumulate(vs)
        arg = _running_argmax(vs)
        k = np.searchsorted(ts, ts - c.u, "left")  # observations strictly before t - u
        has = k > 0
        best = np.where(has, run[np.maximum(k - 1, 0)], -1)
        bad = np.flatnonzero(has & (best > vs))
        count += int(bad.size)
        for b in bad[: c.k - len(examples)]:
            i, j = int(rows[lo + arg[k[b] - 1]]), int(rows[lo + b])
            examples.append({
                "stream": c.stream_name(int(st)),
                "before": {"committed_seq": int(C["committed_seq"][i]), "t": int(C["t"][i]),
                           **c.ref("commits", i)},
                "after": {"committed_seq": int(C["committed_seq"][j]), "t": int(C["t"][j]),
                          **c.ref("commits", j)},
            })
    return count, examples


def _running_argmax(v: Array) -> Array:
    """Index of the (first) maximum of v[:i+1] for every i."""
    run = np.maximum.accumulate(v)
    new = np.ones(v.size, dtype=bool)
    new[1:] = run[1:] > run[:-1]
    idx = np.where(new, np.arange(v.size), 0)
    return np.maximum.accumulate(idx)


def _commit_written(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    if not c.has_orders or len(c.C) == 0:
        raise _Skip("needs order events and committed_seq observations")
    O, C = c.O, c.C
    count = 0
    examples: list[dict[str, Any]] = []
    for s in np.unique(c.c_stream):
        orow = np.flatnonzero(c.o_stream == s)
        crow = np.flatnonzero(c.c_stream == s)
        if orow.size == 0:
            continue
        # earliest write time of each position, by position
        srt = orow[np.lexsort((O["t"][orow], O["seq"][orow]))]
        first = srt[_first_rows(O["seq"][srt])]
        pos, tw = O["seq"][first], O["t"][first]
        pm = np.maximum.accumulate(tw)
        k = np.searchsorted(pos, C["committed_seq"][crow], "left")
        viol = (k > 0) & (pm[np.maximum(k - 1, 0)] > C["t"][crow] + c.u)
        vrows = crow[viol]
        count += int(vrows.size)
        for i in vrows[: c.k - len(examples)]:
            i = int(i)
            tc = int(C["t"][i])
            late = int(np.argmax((tw > tc + c.u) & (pos < C["committed_seq"][i])))
            r = int(first[late])
            examples.append({
                "stream": c.stream_name(int(s)),
                "commit": {"committed_seq": int(C["committed_seq"][i]), "t": tc,
                           **c.ref("commits", i)},
                "unwritten": {"position": int(pos[late]), "written_at_t": int(tw[late]),
                              "batch": c.batch(O, r), **c.ref("orders", r)},
            })
    return count, examples


def _first_deliveries(c: _Ctx) -> Array | None:
    """Rows of each subscriber's first delivery of each position; None when that is every row
    (positions strictly increase per subscriber and stream, the usual case)."""
    D = c.D
    _, pos, prev = _delivery_steps(c)
    if bool((pos > prev).all()):
        return None
    return _first_rows(dense_ids([(D["subscriber"], c.d_stream, D["position"])])[0])


def _prefix_agreement(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    D = c.D
    if np.unique(D["subscriber"]).size < 2:
        raise _Skip("fewer than two subscribers")
    first = _first_deliveries(c)
    fd = np.arange(len(D), dtype=_I64) if first is None else first
    if first is None:
        sub, stream, pos, b4 = D["subscriber"], c.d_stream, D["position"], c.del_b4
    else:
        sub, stream, pos, b4 = (D["subscriber"][fd], c.d_stream[fd], D["position"][fd],
                                c.del_b4[fd])
    posid = dense_ids([(stream, pos)])[0]
    count = 0
    examples: list[dict[str, Any]] = []
    for s in np.unique(stream):
        m = stream == s
        subs, n = np.unique(sub[m], return_counts=True)
        ref = int(subs[np.argmax(n)])  # longest; ties -> smallest id
        is_ref = m & (sub == ref)
        refb = np.full(int(posid.max()) + 1, -1, dtype=_I64)
        refrow = np.full(refb.size, -1, dtype=_I64)
        refb[posid[is_ref]] = b4[is_ref]
        refrow[posid[is_ref]] = fd[is_ref]
        other = np.flatnonzero(m & ~is_ref)
        rb = refb[posid[other]]
        div = other[(rb >= 0) & (rb != b4[other])]
        for sb in np.unique(sub[div]):
            rows = div[sub[div] == sb]
            j = rows[np.argmin(pos[rows])]
            count += 1
            if len(examples) < c.k:
                i, r = int(fd[j]), int(refrow[posid[j]])
                examples.append({
                    "stream": c.stream_name(int(s)), "subscriber": int(sb),
                    "reference_subscriber": ref, "first_divergent_position": int(pos[j]),
                    "delivered": {"batch": c.batch(D, i), **c.ref("deliveries", i)},
                    "reference": {"batch": c.batch(D, r), **c.ref("deliveries", r)},
                })
    return count, examples


def _delivery_steps(c: _Ctx) -> tuple[Array, Array, Array]:
    """Rows in per-(subscriber, stream) delivery order, each row's position and the highest
    position delivered before it in its group (-1 at the start). Computed once per run."""
    if c.steps is None:
        rows, pos, prev, c.resume_skips, c.starts = _compute_delivery_steps(
            c, c.D["position"], c.h.resumes["position"])
        c.steps = (rows, pos, prev)
    return c.steps


def _compute_delivery_steps(
    c: _Ctx, dval: Array, rval: Array
) -> tuple[Array, Array, Array, list[tuple[int, int]], dict[tuple[int, int], int]]:
    """Per (subscriber, stream): delivery rows in delivery order and, for each, the highest
    position delivered before it since the start or since the subscriber's last resume (a
    resume at r counts as r - 1: the next delivery may be r again). Resumes that jump past
    the next undelivered position are kept in ``c.resume_skips``."""
    D, R = c.D, c.h.resumes
    nd, nr = len(D), len(R)
    if nr == 0:  # the usual case, without the merge (and its copies)
        when = D.ref if c.h.ref_kind == "line" else np.arange(nd, dtype=_I64)
        rows = np.lexsort((when, c.d_stream, D["subscriber"]))
        sub, stream, val = D["subscriber"][rows], c.d_stream[rows], dval[rows]
        group_start = np.ones(rows.size, dtype=bool)
        group_start[1:] = (sub[1:] != sub[:-1]) | (stream[1:] != stream[:-1])
        del sub, stream
        return rows, val, _segment_prev(val, group_start), [], {}
    r_stream = np.zeros(nr, dtype=_I64) if c.order != 0 else R["broker"]
    sub = np.concatenate([D["subscriber"], R["subscriber"]])
    stream = np.concatenate([c.d_stream, r_stream])
    is_res = np.concatenate([np.zeros(nd, dtype=bool), np.ones(nr, dtype=bool)])
    val = np.concatenate([dval, rval - 1])
    if c.h.ref_kind == "line":  # line order within a subscriber
        when = np.concatenate([D.ref, R.ref])
        tie = np.zeros(nd + nr, dtype=_I64)
    else:  # arrays: by t, a resume before a delivery at the same t, then row order
        when = np.concatenate([D["t"], R["t"]])
        tie = np.concatenate([np.ones(nd, dtype=_I64), np.zeros(nr, dtype=_I64)])
    order = np.lexsort((np.arange(nd + nr), tie, when, stream, sub))
    sub, stream, is_res, val = sub[order], stream[order], is_res[order], val[order]
    group_start = np.ones(order.size, dtype=bool)
    group_start[1:] = (sub[1:] != sub[:-1]) | (stream[1:] != stream[:-1])
    # highest delivered before each element, ignoring resumes (for the resume check)
    before = _segment_prev(np.where(is_res, -1, val), group_start)
    # highest before each element since the last resume (a resume contributes r - 1)
    prev = _segment_prev(val, group_start | is_res)
    # a resume before the subscriber's first delivery of the stream is its starting point
    # (a subscription from an offset); a later one must not jump past the next position
    skips = np.flatnonzero(is_res & (val > before) & (before >= 0))
    resume_skips = [(int(order[i]) - nd, int(before[i])) for i in skips]
    firsts = np.flatnonzero(group_start & is_res)
    starts = {(int(sub[i]), int(stream[i])): int(val[i]) + 1 for i in firsts}
    keep = ~is_res
    rows = order[keep]
    return rows, dval[rows], prev[keep], resume_skips, starts


def _segment_prev(val: Array, start: Array) -> Array:
    """For each element, the maximum of the earlier elements of its segment (-1 if none);
    segments begin where ``start`` is set. ``val`` >= -1."""
    prev = np.full(val.size, -1, dtype=_I64)
    if val.size == 0:
        return prev
    group = np.cumsum(start) - 1
    span = int(val.max()) + 3
    if (int(group[-1]) + 1) * span < 2**62:
        shifted = (val + 1) + group * span
        run = np.maximum.accumulate(shifted) - group * span - 1
        prev[1:] = np.where(start[1:], -1, run[:-1])
    else:  # pragma: no cover - astronomically large positions
        for g in np.unique(group):
            idx = np.flatnonzero(group == g)
            run = np.maximum.accumulate(val[idx])
            prev[idx[1:]] = run[:-1]
    return prev


def _delivery_example(c: _Ctx, i: int, prev: int) -> dict[str, Any]:
    D = c.D
    return {
        "subscriber": int(D["subscriber"][i]),
        "stream": c.stream_name(int(c.d_stream[i])),
        "highest_before": None if prev < 0 else prev,
        "position": int(D["position"][i]),
        "batch": c.batch(D, i),
        **c.ref("deliveries", i),
    }


def _delivery_monotonic(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    rows, pos, prev = _delivery_steps(c)
    bad = np.flatnonzero(pos <= prev)
    return int(bad.size), [_delivery_example(c, int(rows[b]), int(prev[b])) for b in bad[: c.k]]


def _delivery_contiguous(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """Contiguity in each subscriber's own log: all positions of the stream, or, for a
    subscriber that follows only some brokers (Order 2), the positions the sequencer gave
    to batches of those brokers (counted by rank among them)."""
    D, R = c.D, c.h.resumes
    partial = c.partial_followers()
    dval, rval = D["position"].copy(), R["position"].copy()
    maps: dict[int, Array] = {}
    unfollowed = np.zeros(len(D), dtype=bool)
    if partial and c.order == 0:
        for s_, brokers in partial.items():
            unfollowed |= (D["subscriber"] == s_) & ~np.isin(D["broker"], brokers)
    elif partial:
        log_b = c.log_broker()
        for s_, brokers in partial.items():
            dm, rm = D["subscriber"] == s_, R["subscriber"] == s_
            if log_b is None:  # no order events: the subscriber's log cannot be known
                dval[dm], rval[rm] = -2, 0
                continue
            fp = np.flatnonzero(np.isin(log_b, brokers) & (log_b >= 0))
            maps[s_] = fp
            unfollowed |= dm & ~np.isin(D["broker"], brokers)
            dval[dm] = np.searchsorted(fp, D["position"][dm], "left")
            rval[rm] = np.searchsorted(fp, R["position"][rm], "left")
    if partial:  # resume skips are then counted in the same space
        rows, val, prev, skips, _ = _compute_delivery_steps(c, dval, rval)
    else:
        rows, val, prev = _delivery_steps(c)
        skips = c.resume_skips
    skip = (val > prev + 1) & (val >= 0) & ~unfollowed[rows]
    if c.order == 5 and len(c.h.markers) and skip.any():
        # Order 5: a subscriber passes over declared-lost markers; skipping exactly marker
        # positions is how it delivers them (in order)
        mk = np.unique(c.h.markers["seq"])
        n_mk = np.searchsorted(mk, val, "left") - np.searchsorted(mk, prev + 1, "left")
        part = (np.isin(D["subscriber"][rows], list(partial)) if partial
                else np.zeros(rows.size, dtype=bool))
        skip &= ~((n_mk == val - prev - 1) & ~part)
    if c.order == 0 and len(c.L) and skip.any():
        # Order 0: a position is a ring index, and a slot the broker declared lost has no
        # batch to deliver: skipping exactly declared-lost slots of that broker is no skip
        brokers = D["broker"][rows]
        for br in np.unique(brokers[skip]):
            lp = c.lost_positions(int(br))
            m = skip & (brokers == br)
            n_lost = np.searchsorted(lp, val[m], "left") - np.searchsorted(lp, prev[m] + 1, "left")
            skip[m] = n_lost != val[m] - prev[m] - 1
    bad = np.flatnonzero(skip)
    out: list[dict[str, Any]] = []

    def back(sub: int, rank: int) -> int:
        fp = maps.get(sub)
        return rank if fp is None or rank < 0 else int(fp[min(rank, fp.size - 1)])

    for b in bad[: c.k]:
        i = int(rows[b])
        sub = int(D["subscriber"][i])
        hb = back(sub, int(prev[b]))
        ex = _delivery_example(c, i, hb)
        ex["skipped_positions"] = [back(sub, int(prev[b]) + 1), back(sub, int(val[b]) - 1)]
        out.append(ex)
    for i in np.flatnonzero(unfollowed)[: max(0, c.k - len(out))]:
        ex = _delivery_example(c, int(i), -1)
        ex.pop("highest_before")
        ex["reason"] = "delivers a batch of a broker the subscriber does not follow"
        out.append(ex)
    for r, before in skips[: max(0, c.k - len(out))]:
        sub = int(R["subscriber"][r])
        out.append({"subscriber": sub, "resume": {"position": int(R["position"][r]),
                                                  "t": int(R["t"][r]), **c.ref("resumes", r)},
                    "highest_before": None if before < 0 else back(sub, before),
                    "reason": "resumes past the next undelivered position"})
    count = int(bad.size) + int(unfollowed.sum()) + len(skips)
    return count, out


# ---- cumulative ACKs: per-broker slot table ---------------------------------------------
@dataclass
class _Slots:
    """One broker's ring slots from pbr_index 0 up to the first unknown slot."""

    excl: Array  # messages before each slot (exclusive prefix sum)
    total: int  # messages in the known prefix
    pm_t: Array  # running max of the order time of slots that must be ordered
    pm_pos: Array  # running max of their position
    t_req: Array
    pos: Array
    pub_row: Array  # publish row of each slot, -1 when lost


def _slot_tables(c: _Ctx) -> dict[int, _Slots]:
    P, O = c.P, c.O
    ord_row, _ = c.first_order_of_b3()
    # slot -> publish row: publishes with a known pbr_index, plus unknown-slot publishes
    # whose order record names the slot
    b = [P["broker"][P["pbr_index"] >= 0]]
    p = [P["pbr_index"][P["pbr_index"] >= 0]]
    r = [np.flatnonzero(P["pbr_index"] >= 0)]
    unk = np.flatnonzero((P["pbr_index"] < 0) & (ord_row[c.pub_b3] >= 0))
    if unk.size:
        orow = ord_row[c.pub_b3[unk]]
        b.append(O["broker"][orow])
        p.append(O["pbr_index"][orow])
        r.append(unk)
    lb, lp = c.L["broker"], c.L["pbr_index"]
    sb = np.concatenate([*b, lb])
    sp = np.concatenate([*p, lp])
    sr = np.concatenate([*r, np.full(lb.size, -1, dtype=_I64)])
    out: dict[int, _Slots] = {}
    for br in np.unique(sb):
        m = sb == br
        order = np.lexsort((sr[m] < 0, sp[m]))  # per slot, a publish row before a loss row
        pbr, prow = sp[m][order], sr[m][order]
        keep = np.ones(pbr.size, dtype=bool)
        keep[1:] = pbr[1:] != pbr[:-1]
        pbr, prow = pbr[keep], prow[keep]
        known = int(np.argmax(pbr != np.arange(pbr.size))) if (pbr != np.arange(pbr.size)).any() \
            else int(pbr.size)
        pbr, prow = pbr[:known], prow[:known]
        is_lost = np.isin(pbr, lp[lb == br])
        live = (prow >= 0) & ~is_lost
        live_pub = np.where(live, prow, 0)
        failed = live & (P["outcome"][live_pub] == OUTCOME_FAILED)
        required = live & ~failed
        msgs = np.where(required, P["msg_count"][live_pub], 0)
        excl = np.concatenate([[0], np.cumsum(msgs)[:-1]]) if known else np.zeros(0, dtype=_I64)
        orow = ord_row[c.pub_b3[live_pub]] if known else np.zeros(0, dtype=_I64)
        ordered = required & (orow >= 0)
        t_req = np.where(required, np.where(ordered, O["t"][np.maximum(orow, 0)] if len(O) else 0,
                                            _INF), _NEG)
        pos = np.where(required, np.where(ordered, O["seq"][np.maximum(orow, 0)] if len(O) else 0,
                                          _INF), -1)
        out[int(br)] = _Slots(
            excl=excl.astype(_I64), total=int(msgs.sum()),
            pm_t=np.maximum.accumulate(t_req) if known else t_req,
            pm_pos=np.maximum.accumulate(pos) if known else pos,
            t_req=t_req, pos=pos, pub_row=np.where(required, prow, -1),
        )
    return out


def _ack_after_order(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    A, O, C = c.A, c.O, c.C
    if len(A) == 0:
        raise _Skip("no ack events")
    violations: list[tuple[int, dict[str, Any]]] = []  # (ack row, details)
    count = 0
    # -- per-batch acks
    pb = np.flatnonzero(A["through_msgs"] < 0)
    ord_row, ord_t = c.first_order_of_b3()
    if pb.size:
        orow = ord_row[c.ack_b3[pb]]
        ot = ord_t[c.ack_b3[pb]]
        never = orow < 0
        early = ~never & (ot > A["t"][pb] + c.u)
        stream = np.zeros(pb.size, dtype=_I64) if c.order != 0 else A["broker"][pb]
        nc = c.next_commit(stream, A["t"][pb] + c.u + 1)  # definitely after the ACK
        posn = np.where(never, -1, O["seq"][np.maximum(orow, 0)] if len(O) else -1)
        uncommitted = ~never & ~early & (nc >= 0) & (
            C["committed_seq"][np.maximum(nc, 0)] <= posn if len(C) else False)
        bad = never | early | uncommitted
        count += int(bad.sum())
        for j in np.flatnonzero(bad)[: c.k]:
            i = int(pb[j])
            d: dict[str, Any] = {"ack": {"level": int(A["level"][i]), "t": int(A["t"][i]),
                                         "batch": c.batch(A, i), **c.ref("acks", i)}}
            if never[j]:
                d["reason"] = "acked but never ordered"
            else:
                r = int(orow[j])
                d["order"] = {"position": int(O["seq"][r]), "t": int(O["t"][r]),
                              **c.ref("orders", r)}
                if early[j]:
                    d["reason"] = "ack before the batch's order event"
                else:
                    n = int(nc[j])
                    d["reason"] = "ack before the batch entered the committed prefix"
                    d["commit"] = {"committed_seq": int(C["committed_seq"][n]),
                                   "t": int(C["t"][n]), **c.ref("commits", n)}
            violations.append((i, d))
    # -- cumulative acks: "messages through N of broker b"
    cu = np.flatnonzero(A["through_msgs"] >= 0)
    if cu.size:
        slots = _slot_tables(c)
        stream = np.zeros(cu.size, dtype=_I64) if c.order != 0 else A["broker"][cu]
        nc = c.next_commit(stream, A["t"][cu] + c.u + 1)
        for j, ii in enumerate(cu):
            i = int(ii)
            br, n_msgs, ta = int(A["broker"][i]), int(A["through_msgs"][i]), int(A["t"][i])
            st = slots.get(br)
            total = st.total if st else 0
            base: dict[str, Any] = {"ack": {"level": int(A["level"][i]), "t": ta, "broker": br,
                                            "through_msgs": n_msgs, **c.ref("acks", i)}}
            reason = ""
            if n_msgs > total:
                reason = (f"acks {n_msgs} messages of broker {br} but its known, ordered-or-"
                          f"pending slots hold {total}")
            elif st is not None and n_msgs > 0:
                k = int(np.searchsorted(st.excl, n_msgs, "left"))
                if int(st.pm_t[k - 1]) > ta + c.u:
                    s = int(np.argmax(st.t_req[:k] > ta + c.u))
                    unordered = int(st.t_req[s]) == _INF
                    reason = (f"covers broker {br} pbr_index {s}, "
                              + ("never ordered" if unordered else "ordered after the ack"))
                    if not unordered:
                        r = int(ord_row[c.pub_b3[int(st.pub_row[s])]])
                        base["order"] = {"position": int(O["seq"][r]), "t": int(O["t"][r]),
                                         **c.ref("orders", r)}
                elif nc[j] >= 0 and int(st.pm_pos[k - 1]) >= int(C["committed_seq"][nc[j]]):
                    n = int(nc[j])
                    s = int(np.argmax(st.pos[:k] >= int(C["committed_seq"][n])))
                    reason = (f"covers broker {br} pbr_index {s} at position {int(st.pos[s])},"
                              " not yet in the committed prefix")
                    base["commit"] = {"committed_seq": int(C["committed_seq"][n]),
                                      "t": int(C["t"][n]), **c.ref("commits", n)}
            if reason:
                count += 1
                base["reason"] = reason
                violations.append((i, base))
    violations.sort(key=lambda v: v[0])
    return count, [d for _, d in violations[: c.k]]


def _no_lost_ack(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    if not c.h.drained:
        raise _Skip("history is not drained (header drained=false)")
    P, A, D = c.P, c.A, c.D
    n3 = c.pub_of_b3.size
    how = np.full(n3, -1, dtype=_I64)  # 0 publish ok, 1 ack, 2 cumulative ack
    how_row = np.full(n3, -1, dtype=_I64)
    ok = np.flatnonzero((P["outcome"] == OUTCOME_OK) & ~c.pub_lost)
    how[c.pub_b3[ok]], how_row[c.pub_b3[ok]] = 0, ok
    pb = np.flatnonzero(A["through_msgs"] < 0)
    if pb.size:
        # An ACK promised "ordered": a batch acknowledged and then declared lost is a lost
        # write like any other acknowledged batch that never shows up (a loss record explains
        # an unacknowledged slot only).
        sel = pb
        fresh = sel[how[c.ack_b3[sel]] < 0]
        how[c.ack_b3[fresh]], how_row[c.ack_b3[fresh]] = 1, fresh
    cu = np.flatnonzero(A["through_msgs"] >= 0)
    if cu.size:
        slots = _slot_tables(c)
        for br, st in slots.items():
            m = cu[A["broker"][cu] == br]
            if m.size == 0:
                continue
            i = int(m[np.argmax(A["through_msgs"][m])])
            k = int(np.searchsorted(st.excl, min(int(A["through_msgs"][i]), st.total), "left"))
            rows = st.pub_row[:k]
            rows = rows[rows >= 0]
            ids = c.pub_b3[rows]
            fresh = ids[how[ids] < 0]
            how[fresh], how_row[fresh] = 2, i
    acked = np.flatnonzero(how >= 0)
    missing_order = ~np.isin(acked, c.ord_b3) if c.has_orders else np.zeros(acked.size, bool)
    subs = c.h.subscribers()
    missing_sub = np.zeros((len(subs), acked.size), dtype=bool)
    broker_of = np.full(n3, -1, dtype=_I64)
    broker_of[c.ack_b3] = A["broker"]
    broker_of[c.pub_b3] = P["broker"]
    _delivery_steps(c)  # the subscribers' starting positions (a first resume)
    apos = astream = np.zeros(0, dtype=_I64)
    if any(p > 0 for p in c.starts.values()):
        arow = c.first_order_of_b3()[0][acked]
        apos = np.where(arow >= 0, c.O["seq"][np.maximum(arow, 0)] if len(c.O) else -1, -1)
        astream = np.where(arow >= 0, c.o_stream[np.maximum(arow, 0)] if len(c.O) else -1, -1)
    for k, s in enumerate(subs):
        # a subscriber that follows only some brokers owes only their batches, and one that
        # started at position p (a resume before its first delivery) owes none below p
        owed = c.follows_broker(s, broker_of[acked])
        for (sub, stm), p in c.starts.items():
            if sub == s and p > 0:
                owed &= ~((astream == stm) & (apos >= 0) & (apos < p))
        missing_sub[k] = ~np.isin(acked, c.del_b3[D["subscriber"] == s]) & owed
    lost_mask = missing_order | missing_sub.any(axis=0)
    lost_ids = acked[lost_mask]
    examples: list[dict[str, Any]] = []
    for j in np.flatnonzero(lost_mask)[: c.k]:
        b = int(acked[j])
        kind, row = int(how[b]), int(how_row[b])
        if kind == 0:
            batch = c.batch(P, row)
            by = {"by": "publish ok", **c.ref("publishes", row)}
        else:
            prow = int(c.pub_of_b3[b])
            if kind == 1:
                batch = c.batch(A, row) if prow < 0 else c.batch(P, prow)
                by = {"by": f"ack level {int(A['level'][row])}", **c.ref("acks", row)}
            else:
                batch = c.batch(P, prow)
                by = {"by": f"cumulative ack level {int(A['level'][row])} through "
                            f"{int(A['through_msgs'][row])} messages", **c.ref("acks", row)}
        examples.append({
            "batch": batch, "acknowledged": by,
            "ordered": not bool(missing_order[j]),
            "missing_from_subscribers": [s for k, s in enumerate(subs) if missing_sub[k, j]],
        })
    return int(lost_ids.size), examples


_PHANTOM_REASONS = {
    1: "never published",
    2: "publish failed (G1a: aborted read)",
    3: "slot differs from the publish's pbr_index",
    4: "slot declared lost",
}


def _no_phantom(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    P = c.P
    codes = []
    for pub, lost, tbl in ((c.ord_pub, c.ord_lost, c.O), (c.del_pub, c.del_lost, c.D)):
        code = np.zeros(len(tbl), dtype=_I64)
        has = pub >= 0
        pp = np.maximum(pub, 0)
        code[~has] = 1
        if len(P):
            code[(code == 0) & has & (P["outcome"][pp] == OUTCOME_FAILED)] = 2
            ppbr = P["pbr_index"][pp]
            code[(code == 0) & has & (ppbr >= 0) & (ppbr != tbl["pbr_index"])] = 3
        code[(code == 0) & lost] = 4
        codes.append(code)
    if not any(bool((k > 0).any()) for k in codes):
        return 0, []
    b4 = np.concatenate([c.ord_b4, c.del_b4])
    code = np.concatenate(codes)
    t = np.concatenate([c.O["t"], c.D["t"]])
    n_o = len(c.O)
    flagged = np.flatnonzero(code > 0)
    first = flagged[np.lexsort((flagged, t[flagged]))]
    batches = b4[first]
    _, idx = np.unique(batches, return_index=True)
    examples: list[dict[str, Any]] = []
    for j in np.sort(idx)[: c.k]:
        g = int(first[j])
        tname, i = ("orders", g) if g < n_o else ("deliveries", g - n_o)
        tbl = c.O if tname == "orders" else c.D
        same = flagged[b4[flagged] == b4[g]]
        ex: dict[str, Any] = {"batch": c.batch(tbl, i), "reason": _PHANTOM_REASONS[int(code[g])],
                              "seen_by": [c.seen(*(("orders", int(x)) if x < n_o else
                                                   ("deliveries", int(x) - n_o)))
                                          for x in same[:4]]}
        prow = int((c.ord_pub if tname == "orders" else c.del_pub)[i])
        if prow >= 0:
            ex["publish"] = {"outcome": ["ok", "failed", "unknown"][int(P["outcome"][prow])],
                             "pbr_index": int(P["pbr_index"][prow]), **c.ref("publishes", prow)}
        if int(code[g]) == 4:
            slot = (c.slot_o if tname == "orders" else c.slot_d)[i]
            ex["loss"] = c.ref("losses", int(c.loss_ref_of_slot[slot]))
        examples.append(ex)
    return int(idx.size), examples


def _payload_integrity(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    D, P = c.D, c.P
    has = np.flatnonzero(c.del_pub >= 0)
    pub = c.del_pub[has]
    bad = has[(D["checksum"][has] != P["checksum"][pub]) | (D["size"][has] != P["size"][pub])]
    examples = []
    for i in bad[: c.k]:
        i = int(i)
        p = int(c.del_pub[i])
        examples.append({
            "subscriber": int(D["subscriber"][i]), "position": int(D["position"][i]),
            "batch": c.batch(D, i),
            "published": {"checksum": _hex(int(P["checksum"][p])), "size": int(P["size"][p]),
                          **c.ref("publishes", p)},
            "delivered": {"checksum": _hex(int(D["checksum"][i])), "size": int(D["size"][i]),
                          **c.ref("deliveries", i)},
        })
    return int(bad.size), examples


def _broker_order(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    O, D = c.O, c.D
    sources: list[tuple[str, str, Array]] = []
    if c.has_orders:
        rows = np.lexsort((np.arange(len(O)), O["t"]))
        sources.append(("sequencer", "orders", rows[_first_rows(c.ord_b4[rows])]))
    else:
        for s in c.h.subscribers():
            rows = np.flatnonzero(D["subscriber"] == s)
            sources.append((f"subscriber {s}", "deliveries", rows[_first_rows(c.del_b4[rows])]))
    count = 0
    examples: list[dict[str, Any]] = []
    for observer, tname, rows in sources:
        tbl = c.O if tname == "orders" else c.D
        poscol = "seq" if tname == "orders" else "position"
        # Order 5 orders a held batch after later slots of other clients of its broker (as
        # upstream's hold buffer does): there the ring order binds each client's batches only
        cl = tbl["client"][rows] if c.order == 5 else constant_column(0, rows.size)
        srt = rows[np.lexsort((tbl["pbr_index"][rows], cl, tbl["broker"][rows]))]
        br, pos = tbl["broker"][srt], tbl[poscol][srt]
        same = br[1:] == br[:-1]
        if c.order == 5:
            cs = tbl["client"][srt]
            same &= cs[1:] == cs[:-1]
        bad = np.flatnonzero(same & (pos[1:] < pos[:-1]))
        count += int(bad.size)
        for b in bad[: c.k - len(examples)]:
            i, j = int(srt[b]), int(srt[b + 1])
            examples.append({
                "observer": observer, "broker": int(br[b]),
                "earlier_slot": {"pbr_index": int(tbl["pbr_index"][i]), "position": int(pos[b]),
                                 **c.ref(tname, i)},
                "later_slot": {"pbr_index": int(tbl["pbr_index"][j]), "position": int(pos[b + 1]),
                               **c.ref(tname, j)},
            })
    return count, examples


def _read_committed(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """A delivery is never of an uncommitted position, nor before its batch's order event.

    Committed: the delivery's own ``committed_seq`` (what the subscriber had observed) when
    recorded, else the highest ``committed_seq`` observation that may precede the delivery
    (t_c <= t_d + u; none by then: nothing was committed). A history without any commit
    observation skips that half; without order events the order half is skipped."""
    D = c.D
    if len(D) == 0:
        raise _Skip("no deliveries")
    if not c.has_orders and len(c.C) == 0 and not bool((D["committed_seq"] >= 0).any()):
        raise _Skip("needs order events or committed_seq observations")
    pos, td = D["position"], D["t"]
    # 1. delivered before the batch's order event (definitely: t_o > t_d + u)
    before_order = np.zeros(len(D), dtype=bool)
    if c.has_orders:
        _, t_o = c.first_order_of_b3()
        t_del = t_o[c.del_b3]
        before_order = (t_del != _INF) & (t_del > td + c.u)  # never ordered: t_o = _INF
        del t_del
    # 2. at or above the committed prefix the subscriber can have seen: its own record, else
    # the highest observation with t_c <= t_d + u (none by then: nothing was committed)
    own = D["committed_seq"]
    uncommitted = (own >= 0) & (pos >= own)
    C = c.C
    if len(C):
        rows = np.lexsort((np.arange(len(C)), C["t"], c.c_stream))
        cs, ct, cv = c.c_stream[rows], C["t"][rows], C["committed_seq"][rows]
        for st in np.unique(c.d_stream):
            q = np.flatnonzero((c.d_stream == st) & (own < 0))
            lo, hi = int(np.searchsorted(cs, st, "left")), int(np.searchsorted(cs, st, "right"))
            if lo == hi:
                uncommitted[q] = True
                continue
            k = np.searchsorted(ct[lo:hi], td[q] + c.u, "right")
            best = np.maximum.accumulate(cv[lo:hi])[np.maximum(k - 1, 0)]
            uncommitted[q] = (k == 0) | (pos[q] >= best)
    uncommitted &= ~before_order
    bad = np.flatnonzero(before_order | uncommitted)
    examples: list[dict[str, Any]] = []
    for i in bad[: c.k]:
        i = int(i)
        ex: dict[str, Any] = {"subscriber": int(D["subscriber"][i]),
                              "stream": c.stream_name(int(c.d_stream[i])),
                              "position": int(pos[i]), "batch": c.batch(D, i),
                              "delivered": {"t": int(td[i]), **c.ref("deliveries", i)}}
        if before_order[i]:
            r = int(c.first_order_of_b3()[0][c.del_b3[i]])
            ex["reason"] = "delivered before the batch's order event"
            ex["order"] = {"position": int(c.O["seq"][r]), "t": int(c.O["t"][r]),
                           **c.ref("orders", r)}
        elif own[i] >= 0:
            ex["reason"] = "delivered at or above the committed_seq the subscriber observed"
            ex["observed_committed_seq"] = int(own[i])
        else:
            seen = np.flatnonzero((c.c_stream == c.d_stream[i]) & (C["t"] <= td[i] + c.u))
            if seen.size:
                r = int(seen[np.argmax(C["committed_seq"][seen])])
                ex["reason"] = "delivered at or above every committed_seq observed by then"
                ex["commit"] = {"committed_seq": int(C["committed_seq"][r]),
                                "t": int(C["t"][r]), **c.ref("commits", r)}
            else:
                ex["reason"] = "delivered before any committed_seq observation of its stream"
        examples.append(ex)
    return int(bad.size), examples


def _message_ranges(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """Per-message total order: the batch at position p holds messages [total_order,
    total_order + msg_count); consecutive positions of a stream abut (position 0 starts at
    0), so message ranges are contiguous and disjoint."""
    O, P = c.O, c.P
    have = np.flatnonzero(O["total_order"] >= 0) if len(O) else np.zeros(0, dtype=_I64)
    if have.size == 0:
        raise _Skip("no order event carries total_order")
    # the log's record at each (stream, position): its earliest order event
    rows = have[np.lexsort((have, O["t"][have], O["seq"][have], c.o_stream[have]))]
    st, sq = c.o_stream[rows], O["seq"][rows]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = (st[1:] != st[:-1]) | (sq[1:] != sq[:-1])
    rows, st, sq = rows[first], st[first], sq[first]
    pub = c.ord_pub[rows]
    n = np.where(pub >= 0, P["msg_count"][np.maximum(pub, 0)] if len(P) else 0, -1)
    to = O["total_order"][rows]
    nxt = np.flatnonzero((st[1:] == st[:-1]) & (sq[1:] == sq[:-1] + 1) & (n[:-1] >= 0))
    expect = to[nxt] + n[nxt]
    got = to[nxt + 1]
    pair_bad = nxt[got != expect]
    start_bad = np.flatnonzero((sq == 0) & (to != 0))
    examples: list[dict[str, Any]] = []
    for j in start_bad[: c.k]:
        r = int(rows[j])
        examples.append({"stream": c.stream_name(int(st[j])), "position": 0,
                         "reason": "position 0 does not start at message 0",
                         "total_order": int(to[j]), "batch": c.batch(O, r),
                         **c.ref("orders", r)})
    for j in pair_bad[: max(0, c.k - len(examples))]:
        a, b = int(rows[j]), int(rows[j + 1])
        e, g = int(to[j] + n[j]), int(to[j + 1])
        examples.append({
            "stream": c.stream_name(int(st[j])),
            "reason": (f"gap of {g - e} messages" if g > e else
                       f"overlap of {e - g} messages"),
            "earlier": {"position": int(sq[j]), "total_order": int(to[j]),
                        "msg_count": int(n[j]), "messages": [int(to[j]), e - 1],
                        **c.ref("orders", a)},
            "later": {"position": int(sq[j + 1]), "total_order": g, **c.ref("orders", b)},
        })
    return int(start_bad.size + pair_bad.size), examples


def _ring_dense(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """Each broker's ring slots are used densely from pbr_index 0: every slot below the
    highest one named (by a publish, an order, a delivery or a loss) is named by one of
    them, or declared lost. When the history is not drained, or nothing observes the log
    (no order events, no deliveries), a gap may be the slot of a publish of unknown outcome
    whose slot is not known: one per such publish that is not ordered."""
    P, O, D, L = c.P, c.O, c.D, c.L
    tables = ((P, P["pbr_index"] >= 0), (O, None), (D, None), (L, None))
    brokers = np.unique(np.concatenate([np.unique(t["broker"]) for t, _ in tables]))
    if brokers.size == 0:
        raise _Skip("no ring slot is named")
    count = 0
    examples: list[dict[str, Any]] = []
    ordered_pub = np.zeros(len(P), dtype=bool)
    ordered_pub[c.ord_pub[c.ord_pub >= 0]] = True
    for br in brokers:
        # the slots this broker's events name, as a bitmap (no joint sort of all tables)
        named = [t["pbr_index"][(t["broker"] == br) if m is None else (t["broker"] == br) & m]
                 for t, m in tables]
        top = max((int(x.max()) for x in named if x.size), default=-1)
        if top < 0:
            continue
        present = np.zeros(top + 1, dtype=bool)
        for x in named:
            present[x] = True
        del named
        used = np.flatnonzero(present)
        gaps = top + 1 - int(used.size)
        if gaps <= 0:
            continue
        slack = 0
        if not c.h.drained or (not c.has_orders and len(D) == 0):
            slack = int(((P["broker"] == br) & (P["pbr_index"] < 0) & (P["outcome"] != OUTCOME_OK)
                         & (P["outcome"] != OUTCOME_FAILED) & ~ordered_pub).sum())
        if gaps <= slack:
            continue
        count += gaps - slack
        edges = np.concatenate([[-1], used])
        holes = np.flatnonzero(np.diff(edges) > 1)
        for h in holes[: c.k - len(examples)]:
            lo, hi = int(edges[h]) + 1, int(edges[h + 1]) - 1
            nxt = int(edges[h + 1])
            where: dict[str, Any] = {}
            for tname, what, tbl in (("publishes", "publish", P), ("orders", "order", O),
                                     ("losses", "loss", L), ("deliveries", "deliver", D)):
                m = np.flatnonzero((tbl["broker"] == br) & (tbl["pbr_index"] == nxt))
                if m.size:
                    where = {"next_named_slot": nxt, "named_by": what,
                             **c.ref(tname, int(m[0]))}
                    break
            examples.append({"broker": int(br), "missing_pbr_index": [lo, hi], **where})
    return count, examples


# ---- Order 5: per-client FIFO, declared-lost markers, fenced sessions ----------------------
def _need_order5(c: _Ctx) -> None:
    if c.order != 5:
        raise _Skip("Order 5 only")


def _session(t: Table) -> Array:
    return np.where(t["session"] < 0, 0, t["session"])


def _client_entries(c: _Ctx) -> tuple[Array, Array, Array, Array, Array, Array]:
    """Per (client, session, client_batch_seq): its earliest order record or marker.
    Returns client, session, cseq, position, kind (0 order, 1 marker) and row, sorted by
    client, session, cseq."""
    O, M = c.O, c.h.markers
    cl = np.concatenate([O["client"], M["client"]])
    se = np.concatenate([_session(O), _session(M)])
    cs = np.concatenate([O["client_batch_seq"], M["client_batch_seq"]])
    pos = np.concatenate([O["seq"], M["seq"]])
    tt = np.concatenate([O["t"], M["t"]])
    kind = np.concatenate([np.zeros(len(O), dtype=_I64), np.ones(len(M), dtype=_I64)])
    row = np.concatenate([np.arange(len(O), dtype=_I64), np.arange(len(M), dtype=_I64)])
    order = np.lexsort((kind, tt, cs, se, cl))
    cl, se, cs, pos, kind, row = cl[order], se[order], cs[order], pos[order], kind[order], \
        row[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (cl[1:] != cl[:-1]) | (se[1:] != se[:-1]) | (cs[1:] != cs[:-1])
    return cl[first], se[first], cs[first], pos[first], kind[first], row[first]


def _entry_ref(c: _Ctx, kind: int, row: int) -> dict[str, Any]:
    if kind == 0:
        return {"kind": "order", "position": int(c.O["seq"][row]), "t": int(c.O["t"][row]),
                **c.ref("orders", row)}
    M = c.h.markers
    return {"kind": "lost_marker", "position": int(M["seq"][row]), "t": int(M["t"][row]),
            **c.ref("markers", row)}


def _fence_limits(c: _Ctx) -> dict[tuple[int, int], tuple[int, int]]:
    """(client, session) -> (committed_through, fence row) of its first fence."""
    F = c.h.fences
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for i in np.lexsort((np.arange(len(F)), F["t"])):
        key = (int(F["client"][i]), int(_session(F)[i]))
        out.setdefault(key, (int(F["committed_through"][i]), int(i)))
    return out


def _client_order(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """Per-client FIFO: within a client session, positions increase with client_batch_seq,
    and every client_batch_seq below one that is ordered is ordered or declared lost (unless
    the session was fenced below it)."""
    _need_order5(c)
    cl, se, cs, pos, kind, row = _client_entries(c)
    P = c.P
    fences = _fence_limits(c)
    count = 0
    examples: list[dict[str, Any]] = []
    grp = np.ones(cl.size, dtype=bool)
    grp[1:] = (cl[1:] != cl[:-1]) | (se[1:] != se[:-1])
    starts = np.flatnonzero(grp)
    ends = np.append(starts[1:], cl.size)
    psess = _session(P)
    for a, b in zip(starts, ends):
        client, session = int(cl[a]), int(se[a])
        p, q = pos[a:b], cs[a:b]
        run = np.maximum.accumulate(p)
        arg = _running_argmax(p)
        back = np.flatnonzero(p[1:] < run[:-1]) + 1
        count += int(back.size)
        for j in back[: max(0, c.k - len(examples))]:
            e = int(arg[j - 1])
            examples.append({
                "client": client, "session": session,
                "reason": "a later client batch is ordered before an earlier one",
                "earlier": {"client_batch_seq": int(q[e]),
                            **_entry_ref(c, int(kind[a + e]), int(row[a + e]))},
                "later": {"client_batch_seq": int(q[j]),
                          **_entry_ref(c, int(kind[a + j]), int(row[a + j]))},
            })
        # holes: client_batch_seqs below the highest ordered one, neither ordered nor marked
        mine = (P["client"] == client) & (psess == session)
        lo = min(int(q.min()), int(P["client_batch_seq"][mine].min()) if mine.any() else int(q.min()))
        top = int(q.max())
        limit = fences.get((client, session), (None, -1))[0]
        if limit is not None:
            top = min(top, int(limit) - 1)
        have = np.unique(q)
        want = np.arange(lo, top + 1)
        missing = np.setdiff1d(want, have, assume_unique=True)
        count += int(missing.size)
        if missing.size and len(examples) < c.k:
            edges = np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1)
            for run_ in edges[: c.k - len(examples)]:
                nxt = int(np.searchsorted(q, int(run_[-1]) + 1))
                ex: dict[str, Any] = {
                    "client": client, "session": session,
                    "reason": "client batches skipped without a declared-lost marker",
                    "missing_client_batch_seq": [int(run_[0]), int(run_[-1])]}
                if nxt < q.size:
                    ex["next"] = {"client_batch_seq": int(q[nxt]),
                                  **_entry_ref(c, int(kind[a + nxt]), int(row[a + nxt]))}
                examples.append(ex)
    return count, examples


def _lost_markers(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """A declared-lost client batch is never ordered, and a marker's position holds no batch
    (subscribers pass over marker positions in order; see delivery-contiguous)."""
    _need_order5(c)
    M, O = c.h.markers, c.O
    if len(M) == 0:
        raise _Skip("no lost_marker events")
    mk = dense_ids([(M["client"], _session(M), M["client_batch_seq"]),
                    (O["client"], _session(O), O["client_batch_seq"])])
    both = np.isin(mk[0], mk[1])
    at_batch = np.isin(M["seq"], O["seq"])
    bad = np.flatnonzero(both | at_batch)
    examples: list[dict[str, Any]] = []
    for i in bad[: c.k]:
        i = int(i)
        ex: dict[str, Any] = {"client": int(M["client"][i]), "session": int(_session(M)[i]),
                              "client_batch_seq": int(M["client_batch_seq"][i]),
                              "marker": _entry_ref(c, 1, i)}
        if both[i]:
            r = int(np.flatnonzero(mk[1] == mk[0][i])[0])
            ex["reason"] = "declared lost but ordered"
            ex["order"] = _entry_ref(c, 0, r)
        else:
            r = int(np.flatnonzero(O["seq"] == M["seq"][i])[0])
            ex["reason"] = "the marker's position holds a batch"
            ex["order"] = {**_entry_ref(c, 0, r), "batch": c.batch(O, r)}
        examples.append(ex)
    return int(bad.size), examples


def _fenced_session(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """Nothing of a fenced session is ordered after its fence or at or beyond the
    committed_through the client was told, and everything below it is ordered."""
    _need_order5(c)
    F, O = c.h.fences, c.O
    if len(F) == 0:
        raise _Skip("no fence events")
    osess = _session(O)
    count = 0
    examples: list[dict[str, Any]] = []
    for (client, session), (through, fr) in sorted(_fence_limits(c).items()):
        tf = int(F["t"][fr])
        mine = np.flatnonzero((O["client"] == client) & (osess == session))
        late = mine[O["t"][mine] > tf + c.u]
        beyond = mine[(O["client_batch_seq"][mine] >= through) & ~np.isin(mine, late)]
        have = np.unique(O["client_batch_seq"][mine])
        lo = int(have.min()) if have.size else 0
        told = np.setdiff1d(np.arange(min(lo, through), through), have, assume_unique=True)
        fence = {"committed_through": through, "t": tf, **c.ref("fences", fr)}
        count += int(late.size + beyond.size + told.size)
        for rows, why in ((late, "ordered after the session's fence"),
                          (beyond, "ordered at or beyond the committed_through the client was "
                                   "told")):
            for r in rows[: max(0, c.k - len(examples))]:
                examples.append({"client": client, "session": session, "reason": why,
                                 "fence": fence,
                                 "order": {"client_batch_seq": int(O["client_batch_seq"][r]),
                                           **_entry_ref(c, 0, int(r))}})
        if told.size and len(examples) < c.k:
            examples.append({"client": client, "session": session, "fence": fence,
                             "reason": "below committed_through but never ordered",
                             "missing_client_batch_seq": [int(told[0]), int(told[-1])]})
    return count, examples


def _commit_once(c: _Ctx) -> tuple[int, list[dict[str, Any]]]:
    """No (client, session, client_batch_seq) is ordered at two positions (e.g. a retry
    sent to a second broker and ordered there too)."""
    _need_order5(c)
    O = c.O
    if len(O) == 0:
        raise _Skip("no order events")
    ident = dense_ids([(O["client"], _session(O), O["client_batch_seq"])])[0]
    pairs = _first_rows(dense_ids([(ident, O["seq"])])[0])
    n = np.bincount(ident[pairs])
    dup = np.flatnonzero(n > 1)
    examples: list[dict[str, Any]] = []
    for d in dup[: c.k]:
        rows = pairs[ident[pairs] == d]
        examples.append({
            "client": int(O["client"][rows[0]]), "session": int(_session(O)[rows[0]]),
            "client_batch_seq": int(O["client_batch_seq"][rows[0]]),
            "orders": [{**_entry_ref(c, 0, int(r)), "batch": c.batch(O, int(r))}
                       for r in rows[:4]],
        })
    return int(dup.size), examples


@dataclass(frozen=True)
class CheckSpec:
    check_id: str
    name: str
    rule: str
    func: Callable[[_Ctx], tuple[int, list[dict[str, Any]]]]


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("unique-positions", "inconsistent-offsets",
              "The sequencer gives each position of a stream one batch, and every subscriber "
              "delivers at a position the batch the sequencer ordered there.",
              _unique_positions),
    CheckSpec("no-duplicates", "duplicate",
              "No batch is ordered twice, and no subscriber delivers a batch at two positions.",
              _no_duplicates),
    CheckSpec("dense-prefix", "committed-hole",
              "Every position below the highest observed committed_seq has an order event (or is "
              "declared lost: a slot of its broker at Order 0, a marker at Order 5).",
              _dense_prefix),
    CheckSpec("commit-monotonic", "nonmonotonic-commit",
              "Observations of committed_seq never decrease over time.",
              _commit_monotonic),
    CheckSpec("commit-written", "commit-ahead-of-write",
              "committed_seq never covers a position whose order event is written after the "
              "observation.",
              _commit_written),
    CheckSpec("prefix-agreement", "divergent-prefix",
              "Every subscriber's delivered log is a prefix of the longest subscriber's log.",
              _prefix_agreement),
    CheckSpec("delivery-monotonic", "nonmonotonic-poll",
              "A subscriber never delivers a position at or below one it already delivered.",
              _delivery_monotonic),
    CheckSpec("delivery-contiguous", "poll-skip",
              "A subscriber delivers positions 0, 1, 2, ... without skipping any (but declared-lost "
              "positions).",
              _delivery_contiguous),
    CheckSpec("no-lost-ack", "lost-write",
              "After drain, every acknowledged batch (publish ok, or acked) not declared lost is "
              "ordered and delivered by every subscriber.",
              _no_lost_ack),
    CheckSpec("no-phantom", "G1a",
              "Nothing is ordered or delivered that was never published, whose publish failed, "
              "whose slot differs from the published one, or whose slot was declared lost.",
              _no_phantom),
    CheckSpec("payload-integrity", "corrupt-payload",
              "Checksum and size at delivery equal those at publish.",
              _payload_integrity),
    CheckSpec("broker-order", "broker-reorder",
              "Within a broker, positions increase with pbr_index (arrival order is kept; at "
              "Order 5 among each client's batches).",
              _broker_order),
    CheckSpec("ack-after-order", "premature-ack",
              "An ACK (per batch or cumulative) is never ahead of the batch's order event, nor "
              "of its entry into the committed prefix.",
              _ack_after_order),
    CheckSpec("read-committed", "dirty-read",
              "A subscriber never delivers a position at or above the committed_seq it can have "
              "observed, nor a batch before its order event.",
              _read_committed),
    CheckSpec("message-ranges", "overlapping-offsets",
              "Message ranges [total_order, total_order + msg_count) of consecutive positions "
              "are contiguous and disjoint, from message 0.",
              _message_ranges),
    CheckSpec("ring-dense", "ring-gap",
              "Each broker's ring slots are dense from pbr_index 0 unless a loss record "
              "explains the gap.",
              _ring_dense),
    CheckSpec("client-order", "client-reorder",
              "Order 5: within a client session, positions increase with client_batch_seq and "
              "no client_batch_seq below an ordered one is skipped without a declared-lost "
              "marker (or a fence).",
              _client_order),
    CheckSpec("lost-markers", "lost-but-committed",
              "Order 5: a declared-lost client batch is never ordered, and a marker's position "
              "holds no batch.",
              _lost_markers),
    CheckSpec("fenced-session", "zombie-write",
              "Order 5: nothing of a fenced session is ordered after its fence or at or beyond "
              "the committed_through the client was told; everything below it is ordered.",
              _fenced_session),
    CheckSpec("commit-once", "duplicate-commit",
              "Order 5: no (client, session, client_batch_seq) is ordered at two positions.",
              _commit_once),
)
ORDER5_CHECK_IDS: frozenset[str] = frozenset(
    {"client-order", "lost-markers", "fenced-session", "commit-once"})
CHECK_IDS: tuple[str, ...] = tuple(s.check_id for s in CHECKS)


def check_history(
    history: History, order: int | None = None, *, max_examples: int = DEFAULT_EXAMPLES
) -> CheckReport:
    """Run every check at ``order`` (default: the history's own level)."""
    level = history.order if order is None else order
    if isinstance(level, bool) or level not in ORDER_LEVELS:
        raise HistoryError(f"unknown order level {level!r}",
                           "use 0 (per-broker order), 2 (total order) or 5 (per-client FIFO)")
    if level != history.order:
        raise HistoryError(
            f"history recorded at order {history.order} cannot be checked at order {level}: "
            "positions mean different things at the two levels",
            f"check it at order {history.order}",
        )
    ctx = _Ctx(history, level, max(1, max_examples))
    results: list[CheckResult] = []
    for spec in CHECKS:
        try:
            count, examples = spec.func(ctx)
        except _Skip as skip:
            results.append(CheckResult(spec.check_id, spec.name, spec.rule, "skipped",
                                       note=str(skip)))
            continue
        if count:
            results.append(CheckResult(spec.check_id, spec.name, spec.rule, "failed",
                                       Anomaly(spec.check_id, spec.name, count, examples)))
        else:
            results.append(CheckResult(spec.check_id, spec.name, spec.rule, "passed"))
    return CheckReport(order=level, source=history.source, counts=history.counts(),
                       results=results)
