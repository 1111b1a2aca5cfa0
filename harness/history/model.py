"""In-memory history of one run of the shared log: publishes, losses, ordering events,
``committed_seq`` observations, ACKs and per-subscriber deliveries, held as numpy columns.

A :class:`History` is built either by the JSON Lines reader (:mod:`harness.history.jsonl`,
references are file line numbers) or from arrays handed over by the C core
(:meth:`History.from_arrays`, references are row indices). Both paths end in the same
validation, so a history that reaches the checks is structurally sound; what remains are the
ordering anomalies that :mod:`harness.history.checks` looks for.

Column names (identical to the JSON field names of docs/history-format.md):

================  =========================================================================
table             columns (all integers; ``-1`` = absent where noted)
================  =========================================================================
publishes         t, broker, client, client_batch_seq, pbr_index (-1: not known),
                  outcome (0 ok, 1 failed, 2 unknown; or the strings), msg_count, size,
                  checksum (uint64)
losses            t, broker, pbr_index
orders            t, seq, broker, client, client_batch_seq, pbr_index,
                  total_order (v2; -1: not recorded)
commits           t, committed_seq, broker (Order 0: required; Order 2: absent / -1)
acks              t, level (1 or 2), broker, and either client, client_batch_seq
                  [, pbr_index] (one batch) or through_msgs (cumulative; the others -1)
deliveries        per subscriber id: t, position, broker, client, client_batch_seq,
                  pbr_index, checksum (uint64), size, committed_seq (v2; -1: not recorded)
resumes (v2)      t, subscriber, position, broker (Order 0: required; Order 2: -1)
follows (v2)      t, subscriber, broker
================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.errors import HistoryError

FORMAT_NAME = "cxl-history"
FORMAT_VERSION = 2  # the newest version written; the reader takes 1 and 2
FORMAT_VERSIONS = (1, 2)
ORDER_LEVELS = (0, 2, 5)
ACK_LEVELS = (1, 2)

OUTCOME_OK = 0
OUTCOME_FAILED = 1
OUTCOME_UNKNOWN = 2
OUTCOMES: dict[str, int] = {"ok": OUTCOME_OK, "failed": OUTCOME_FAILED, "unknown": OUTCOME_UNKNOWN}
OUTCOME_NAMES: dict[int, str] = {v: k for k, v in OUTCOMES.items()}

Array = npt.NDArray[Any]

# Column order of each table. The first column of every table is the event time ``t``.
PUBLISH_COLUMNS = (
    "t", "broker", "client", "client_batch_seq", "pbr_index", "outcome", "msg_count", "size",
    "checksum", "session",
)
LOSS_COLUMNS = ("t", "broker", "pbr_index")
ORDER_COLUMNS = ("t", "seq", "broker", "client", "client_batch_seq", "pbr_index", "total_order",
                 "session")
COMMIT_COLUMNS = ("t", "committed_seq", "broker")
ACK_COLUMNS = ("t", "level", "broker", "client", "client_batch_seq", "pbr_index", "through_msgs")
DELIVERY_COLUMNS = (
    "t", "subscriber", "position", "broker", "client", "client_batch_seq", "pbr_index",
    "checksum", "size", "committed_seq", "session",
)
RESUME_COLUMNS = ("t", "subscriber", "position", "broker")
FOLLOW_COLUMNS = ("t", "subscriber", "broker")
MARKER_COLUMNS = ("t", "seq", "client", "session", "client_batch_seq")
FENCE_COLUMNS = ("t", "client", "session", "committed_through")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "publishes": PUBLISH_COLUMNS,
    "losses": LOSS_COLUMNS,
    "orders": ORDER_COLUMNS,
    "commits": COMMIT_COLUMNS,
    "acks": ACK_COLUMNS,
    "deliveries": DELIVERY_COLUMNS,
    "resumes": RESUME_COLUMNS,
    "follows": FOLLOW_COLUMNS,
    "markers": MARKER_COLUMNS,
    "fences": FENCE_COLUMNS,
}
V2_TABLES = ("resumes", "follows", "markers", "fences")
ORDER5_TABLES = ("markers", "fences")
# Columns that may be left out of from_arrays (filled with -1).
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "publishes": frozenset({"pbr_index", "session"}),
    "losses": frozenset(),
    "orders": frozenset({"total_order", "session"}),
    "commits": frozenset({"broker"}),
    "acks": frozenset({"client", "client_batch_seq", "pbr_index", "through_msgs"}),
    "deliveries": frozenset({"committed_seq", "session"}),
    "resumes": frozenset({"broker"}),
    "follows": frozenset(),
    "markers": frozenset({"session"}),
    "fences": frozenset({"session"}),
}
UINT64_COLUMNS = frozenset({"checksum"})
# An optional field is absent when left out or written as -1; any other value must be >= 0.
# A required field has no "absent": -1 there is an error like any negative value.
_OPTIONAL_RANGE = "must be >= 0 (this field is optional: leave it out, or -1, when absent)"


@dataclass(frozen=True)
class Table:
    """One event kind as equal-length numpy columns plus ``ref``: the line number (JSONL) or
    row index (arrays) of each row, used in error messages and counterexamples."""

    name: str
    cols: dict[str, Array]
    ref: Array
    # For deliveries built from arrays: which subscriber's array a row came from is the
    # ``subscriber`` column; ``ref`` is the row inside that array.

    def __len__(self) -> int:
        return int(self.ref.shape[0])

    def __getitem__(self, column: str) -> Array:
        return self.cols[column]

    @classmethod
    def empty(cls, name: str) -> Table:
        cols = {
            c: np.zeros(0, dtype=np.uint64 if c in UINT64_COLUMNS else np.int64)
            for c in TABLE_COLUMNS[name]
        }
        return cls(name, cols, np.zeros(0, dtype=np.int64))


@dataclass
class History:
    """A validated history. Build it with :meth:`from_arrays` or the JSONL reader."""

    order: int
    publishes: Table
    losses: Table
    orders: Table
    commits: Table
    acks: Table
    deliveries: Table
    drained: bool = True
    brokers: int | None = None
    ref_kind: str = "line"  # "line" (JSONL) or "row" (arrays)
    source: str = "<memory>"
    header: dict[str, Any] = field(default_factory=dict)
    resumes: Table = field(default_factory=lambda: Table.empty("resumes"))
    follows: Table = field(default_factory=lambda: Table.empty("follows"))
    markers: Table = field(default_factory=lambda: Table.empty("markers"))
    fences: Table = field(default_factory=lambda: Table.empty("fences"))
    uncertainty: int = 0  # clock uncertainty window: "A before B" means A.t + u < B.t

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls,
        *,
        order: int,
        publishes: Mapping[str, npt.ArrayLike],
        orders: Mapping[str, npt.ArrayLike] | None = None,
        commits: Mapping[str, npt.ArrayLike] | None = None,
        acks: Mapping[str, npt.ArrayLike] | None = None,
        deliveries: Mapping[int, Mapping[str, npt.ArrayLike]] | None = None,
        losses: Mapping[str, npt.ArrayLike] | None = None,
        resumes: Mapping[str, npt.ArrayLike] | None = None,
        follows: Mapping[str, npt.ArrayLike] | None = None,
        markers: Mapping[str, npt.ArrayLike] | None = None,
        fences: Mapping[str, npt.ArrayLike] | None = None,
        uncertainty: int = 0,
        drained: bool = True,
        brokers: int | None = None,
        source: str = "arrays",
    ) -> History:
        """Build a history from columns (see the module docstring for the names).

        ``deliveries`` maps a subscriber id to that subscriber's columns, rows in delivery
        order. Every other table may be in any row order; ``t`` defines "before". Errors name
        the table, the row and the offending value."""
        _check_order(order, "order argument")
        tables: dict[str, Table] = {}
        for name, given in (
            ("publishes", publishes),
            ("losses", losses),
            ("orders", orders),
            ("commits", commits),
            ("acks", acks),
            ("resumes", resumes),
            ("follows", follows),
            ("markers", markers),
            ("fences", fences),
        ):
            tables[name] = (
                Table.empty(name) if given is None else _table_from_columns(name, given, None)
            )
        parts: list[Table] = []
        for sub in sorted((deliveries or {}).keys()):
            if not isinstance(sub, (int, np.integer)) or isinstance(sub, bool) or sub < 0:
                raise HistoryError(
                    f"deliveries: subscriber id {sub!r} is not a non-negative integer",
                    "key the deliveries mapping by integer subscriber ids",
                )
            parts.append(_table_from_columns("deliveries", (deliveries or {})[sub], int(sub)))
        tables["deliveries"] = _concat("deliveries", parts)
        hist = cls(
            order=order,
            publishes=tables["publishes"],
            losses=tables["losses"],
            orders=tables["orders"],
            commits=tables["commits"],
            acks=tables["acks"],
            deliveries=tables["deliveries"],
            resumes=tables["resumes"],
            follows=tables["follows"],
            markers=tables["markers"],
            fences=tables["fences"],
            uncertainty=uncertainty,
            drained=bool(drained),
            brokers=brokers,
            ref_kind="row",
            source=source,
        )
        hist.validate()
        return hist

    # ----------------------------------------------------------------- helpers
    def where(self, table: str, index: int) -> str:
        """Human-readable location of row ``index`` of ``table``."""
        ref = int(getattr(self, table).ref[index])
        if self.ref_kind == "line":
            return f"line {ref}"
        if table == "deliveries":
            sub = int(self.deliveries["subscriber"][index])
            return f"deliveries[{sub}] row {ref}"
        return f"{table} row {ref}"

    def ref_of(self, table: str, index: int) -> dict[str, Any]:
        """Reference of row ``index`` for counterexamples: ``{"line": n}`` or table/row."""
        ref = int(getattr(self, table).ref[index])
        if self.ref_kind == "line":
            return {"line": ref}
        if table == "deliveries":
            return {"table": f"deliveries[{int(self.deliveries['subscriber'][index])}]", "row": ref}
        return {"table": table, "row": ref}

    def counts(self) -> dict[str, int]:
        return {
            "publish": len(self.publishes),
            "loss": len(self.losses),
            "order": len(self.orders),
            "commit": len(self.commits),
            "ack": len(self.acks),
            "deliver": len(self.deliveries),
            "resume": len(self.resumes),
            "follow": len(self.follows),
            "lost_marker": len(self.markers),
            "fence": len(self.fences),
            "subscribers": int(np.unique(self.deliveries["subscriber"]).size),
        }

    @property
    def events(self) -> int:
        return sum(len(getattr(self, n)) for n in TABLE_COLUMNS)

    def subscribers(self) -> list[int]:
        return [int(s) for s in np.unique(self.deliveries["subscriber"])]

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Structural checks shared by both constructors; raises HistoryError naming the
        first offending row and value. Ordering anomalies are *not* errors here."""
        _check_order(self.order, "header order")
        if self.brokers is not None and (
            not isinstance(self.brokers, int) or isinstance(self.brokers, bool) or self.brokers < 1
        ):
            raise HistoryError(
                f"brokers = {self.brokers!r} is not a positive integer",
                "give the number of brokers, or leave it out",
            )
        if (isinstance(self.uncertainty, bool) or not isinstance(self.uncertainty, (int, np.integer))
                or self.uncertainty < 0):
            raise HistoryError(
                f"uncertainty = {self.uncertainty!r} is not a non-negative integer",
                "give the clock uncertainty window in units of t, or leave it out (0)",
            )
        nonneg = {
            "publishes": ("t", "broker", "client", "client_batch_seq", "msg_count", "size"),
            "losses": ("t", "broker", "pbr_index"),
            "orders": ORDER_COLUMNS[:-2],
            "commits": ("t", "committed_seq"),
            "acks": ("t", "broker"),
            "deliveries": DELIVERY_COLUMNS[:-2],
            "resumes": ("t", "subscriber", "position"),
            "follows": FOLLOW_COLUMNS,
            "markers": ("t", "seq", "client", "client_batch_seq"),
            "fences": ("t", "client", "committed_through"),
        }
        # optional fields: absent is -1; anything else must be >= 0
        for name, col in (("orders", "total_order"), ("deliveries", "committed_seq"),
                          ("resumes", "broker"), ("publishes", "session"), ("orders", "session"),
                          ("markers", "session"), ("fences", "session"), ("deliveries", "session")):
            self._first_bad(name, col, getattr(self, name)[col] < -1, _OPTIONAL_RANGE)
        for name, cols in nonneg.items():
            table: Table = getattr(self, name)
            for col in cols:
                if col in UINT64_COLUMNS:
                    continue
                self._first_bad(name, col, table[col] < 0, "must be >= 0")
        if self.brokers is not None:
            for name in ("publishes", "losses", "orders", "acks", "deliveries", "resumes",
                         "follows"):
                t = getattr(self, name)
                self._first_bad(
                    name, "broker", t["broker"] >= self.brokers,
                    f"must be below the header's brokers = {self.brokers}",
                )
        pub = self.publishes
        self._first_bad("publishes", "pbr_index", pub["pbr_index"] < -1, _OPTIONAL_RANGE)
        self._first_bad(
            "publishes", "outcome", (pub["outcome"] < 0) | (pub["outcome"] > 2),
            "must be ok, failed or unknown (0, 1, 2)",
        )
        self._first_bad(
            "publishes", "pbr_index", (pub["outcome"] == OUTCOME_OK) & (pub["pbr_index"] < 0),
            "is required for an ok publish",
        )
        # commits: per-broker frontier at Order 0, one global committed_seq at Order 2
        com = self.commits
        if self.order == 0:
            self._first_bad("commits", "broker", com["broker"] < 0, "is required at Order 0")
        else:
            self._first_bad(
                "commits", "broker", com["broker"] != -1,
                "must be absent at Order 2 (committed_seq is global)",
            )
        if self.order != 5:
            for name, kind in (("markers", "lost_marker"), ("fences", "fence")):
                if len(getattr(self, name)):
                    raise HistoryError(
                        f"{self.where(name, 0)}: {kind} event in an Order {self.order} history",
                        "declared-lost markers and session fences exist at Order 5 only",
                    )
        res = self.resumes
        if self.order == 0:
            self._first_bad("resumes", "broker", res["broker"] < 0, "is required at Order 0")
        else:
            self._first_bad("resumes", "broker", res["broker"] != -1,
                            "must be absent at Order 2 (positions are global)")
        ack = self.acks
        self._first_bad("acks", "level", ~np.isin(ack["level"], ACK_LEVELS), "must be 1 or 2")
        cumulative = ack["through_msgs"] >= 0
        self._first_bad("acks", "through_msgs", ack["through_msgs"] < -1, _OPTIONAL_RANGE)
        for col in ("client", "client_batch_seq"):
            self._first_bad(
                "acks", col, cumulative & (ack[col] != -1),
                "must be absent in a cumulative ack (one with through_msgs)",
            )
            self._first_bad(
                "acks", col, ~cumulative & (ack[col] < 0),
                "is required in a per-batch ack (or give through_msgs)",
            )
        self._first_bad(
            "acks", "pbr_index", cumulative & (ack["pbr_index"] != -1),
            "must be absent in a cumulative ack",
        )
        self._first_bad("acks", "pbr_index", ack["pbr_index"] < -1, _OPTIONAL_RANGE)
        # uniqueness of publishes: (broker, client, session, client_batch_seq) and the slot
        self._unique_rows(
            "publishes", ("broker", "client", "session", "client_batch_seq"),
            np.ones(len(pub), dtype=bool),
            "a batch (broker, client, session, client_batch_seq) is published only once",
        )
        self._unique_rows(
            "publishes", ("broker", "pbr_index"), pub["pbr_index"] >= 0,
            "each ring slot (broker, pbr_index) holds one published batch",
        )
        dl = self.deliveries
        # JSONL: t never decreases from line to line (checked by the reader), so it never
        # decreases within one subscriber's deliveries either
        if len(dl) > 1 and self.ref_kind != "line":
            rows = np.lexsort((np.arange(len(dl)), dl["subscriber"]))
            sub, tt = dl["subscriber"][rows], dl["t"][rows]
            back = np.flatnonzero((sub[1:] == sub[:-1]) & (tt[1:] < tt[:-1]))
            if back.size:
                i = int(rows[back[0] + 1])
                raise HistoryError(
                    f"{self.where('deliveries', i)}: t = {int(dl['t'][i])} is before the "
                    f"subscriber's previous delivery (t = {int(tt[back[0]])})",
                    "deliveries of one subscriber are listed in delivery order",
                )
        if len(self.orders) == 0:
            # an ACK or a committed_seq > 0 claims ordering the history does not record
            for name, kind, rows in (
                ("acks", "ack", np.arange(len(ack))),
                ("commits", "committed_seq > 0", np.flatnonzero(com["committed_seq"] > 0)),
            ):
                if rows.size:
                    raise HistoryError(
                        f"{self.where(name, int(rows[0]))}: {kind} event but the history has "
                        "no order events; acks and committed_seq refer to ordering",
                        "record the order events, or leave out ack/commit events",
                    )

    def _first_bad(self, table: str, column: str, bad: Array, what: str) -> None:
        if bad.size and bool(bad.any()):
            i = int(np.argmax(bad))
            value = getattr(self, table)[column][i]
            shown: Any = int(value)
            if table == "publishes" and column == "outcome":
                shown = OUTCOME_NAMES.get(int(value), int(value))
            raise HistoryError(
                f"{self.where(table, i)}: {column} = {shown!r} {what}",
                "correct the value at that location (see docs/history-format.md)",
            )

    def _unique_rows(
        self, table: str, columns: tuple[str, ...], mask: Array, rule: str
    ) -> None:
        t: Table = getattr(self, table)
        idx = np.flatnonzero(mask)
        if idx.size < 2:
            return
        ids = dense_ids([tuple(t[c][idx] for c in columns)])[0]
        order = np.argsort(ids, kind="stable")
        s = ids[order]
        dup = np.flatnonzero(s[1:] == s[:-1])
        if dup.size:
            i = int(idx[order[dup + 1]].min())
            pos_i = int(np.searchsorted(idx, i))
            first = int(idx[int(np.argmax(ids == ids[pos_i]))])
            values = {c: int(t[c][i]) for c in columns}
            raise HistoryError(
                f"{self.where(table, i)}: duplicate {values} "
                f"(first at {self.where(table, first)}): {rule}",
                "give each published batch one record",
            )


# --------------------------------------------------------------------------- helpers
def _check_order(order: object, what: str) -> None:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in ORDER_LEVELS:
        raise HistoryError(
            f"{what}: unknown order level {order!r}",
            "use 0 (per-broker order), 2 (total order) or 5 (total order with per-client FIFO)",
        )


def _table_from_columns(name: str, given: Mapping[str, npt.ArrayLike], subscriber: int | None) -> Table:
    where = name if subscriber is None else f"deliveries[{subscriber}]"
    expected = TABLE_COLUMNS[name]
    if subscriber is not None:
        expected = tuple(c for c in expected if c != "subscriber")
    unknown = sorted(set(given) - set(expected))
    if unknown:
        raise HistoryError(
            f"{where}: unknown column {unknown[0]!r}",
            f"columns of {where} are {', '.join(expected)}",
        )
    missing = [c for c in expected if c not in given and c not in OPTIONAL_COLUMNS[name]]
    if missing:
        raise HistoryError(f"{where}: missing column {missing[0]!r}", f"give {', '.join(expected)}")
    cols: dict[str, Array] = {}
    n: int | None = None
    for c in expected:
        if c not in given:
            continue
        raw = np.asarray(given[c])
        if raw.ndim != 1:
            raise HistoryError(f"{where}: column {c!r} has shape {raw.shape}", "give 1-D arrays")
        if name == "publishes" and c == "outcome" and raw.dtype.kind in "UOS":
            try:
                raw = np.array([OUTCOMES[str(v.decode() if isinstance(v, bytes) else v)] for v in raw],
                               dtype=np.int64)
            except KeyError as exc:
                bad = int(np.flatnonzero([str(v) not in OUTCOMES for v in raw])[0])
                raise HistoryError(
                    f"{where} row {bad}: outcome = {raw[bad]!r} is not ok, failed or unknown",
                    "use ok / failed / unknown or 0 / 1 / 2",
                ) from exc
        if raw.dtype.kind not in "iu" and not (raw.size == 0 and raw.dtype.kind in "fb"):
            raise HistoryError(
                f"{where}: column {c!r} has dtype {raw.dtype}, expected integers",
                "pass integer arrays (int64; uint64 for checksum)",
            )
        if c in UINT64_COLUMNS:
            if raw.dtype.kind == "i" and raw.size and int(raw.min()) < 0:
                bad = int(np.argmax(raw < 0))
                raise HistoryError(
                    f"{where} row {bad}: {c} = {int(raw[bad])} is negative",
                    "checksums are unsigned 64-bit integers",
                )
            arr = raw.astype(np.uint64)
        else:
            if raw.dtype == np.uint64 and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
                bad = int(np.argmax(raw > np.iinfo(np.int64).max))
                raise HistoryError(f"{where} row {bad}: {c} = {int(raw[bad])} is too large",
                                   "values other than checksum fit in int64")
            arr = raw.astype(np.int64)
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise HistoryError(
                f"{where}: column {c!r} has {arr.shape[0]} rows, others have {n}",
                "give columns of equal length",
            )
        cols[c] = arr
    n = n or 0
    for c in TABLE_COLUMNS[name]:
        if c not in cols:
            cols[c] = constant_column(
                subscriber if c == "subscriber" and subscriber is not None else -1, n)
    return Table(name, cols, np.arange(n, dtype=np.int64))


def constant_column(value: int, n: int) -> Array:
    """A read-only int64 column of ``n`` equal values that takes no memory (a broadcast
    view): absent optional fields of large tables cost nothing."""
    return np.broadcast_to(np.array(value, dtype=np.int64), (n,))


def compact_absent(name: str, cols: dict[str, Array]) -> None:
    """Replace each optional column that is absent (-1) on every row by a constant view."""
    for c in OPTIONAL_COLUMNS[name]:
        col = cols.get(c)
        if col is not None and col.size and col.dtype == np.int64 and col.strides != (0,) \
                and int(col.min()) == -1 and int(col.max()) == -1:
            cols[c] = constant_column(-1, col.size)


def _concat(name: str, parts: list[Table]) -> Table:
    if not parts:
        return Table.empty(name)
    cols = {c: np.concatenate([p[c] for p in parts]) for c in TABLE_COLUMNS[name]}
    compact_absent(name, cols)
    return Table(name, cols, np.concatenate([p.ref for p in parts]))


def dense_ids(tables: list[tuple[Array, ...]]) -> list[Array]:
    """Give equal tuples equal small integers, consistently across several tables.

    ``tables`` is a list of column tuples (same arity everywhere, non-negative integers or
    -1). Returns one integer id array per table (int32 below 2^31 rows); ids follow the sorted order of the tuples.
    Packs the columns into one int64 when the value ranges fit (one array of the joint size,
    then one sort), else falls back to a row-wise unique."""
    sizes = [len(t[0]) if t else 0 for t in tables]
    total = sum(sizes)
    if not tables or total == 0:
        return [np.zeros(s, dtype=np.int64) for s in sizes]
    arity = len(tables[0])
    top = [max((int(t[k].max()) for t in tables if len(t[k])), default=0) + 1
           for k in range(arity)]
    bits = [max(m, 1).bit_length() for m in top]
    if sum(bits) <= 62:
        packed = np.empty(total, dtype=np.int64)
        at = 0
        for t, n in zip(tables, sizes):
            seg = packed[at:at + n]
            at += n
            if n == 0:
                continue
            np.add(t[0], 1, out=seg, casting="unsafe")
            for c, b in zip(t[1:], bits[1:]):
                seg <<= b
                seg |= np.add(c, 1, dtype=np.int64)
        inv = _inverse(packed)
        del packed
    else:
        cols = [np.concatenate([t[k] for t in tables]).astype(np.int64) + 1 for k in range(arity)]
        _, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
        inv = inv.reshape(-1).astype(np.int64)
    out: list[Array] = []
    start = 0
    for s in sizes:
        out.append(inv[start:start + s])
        start += s
    return out


def _inverse(keys: Array) -> Array:
    """``np.unique(keys, return_inverse=True)[1]`` with fewer temporaries."""
    order = np.argsort(keys)
    srt = keys[order]
    new = np.empty(srt.shape[0], dtype=bool)
    new[:1] = True
    np.not_equal(srt[1:], srt[:-1], out=new[1:])
    del srt
    dtype = np.int32 if keys.shape[0] < 2**31 - 1 else np.int64
    ids = np.cumsum(new, dtype=dtype)
    del new
    np.subtract(ids, 1, out=ids)
    inv = np.empty(ids.shape[0], dtype=dtype)
    inv[order] = ids
    return inv
