"""Adapter from Jepsen's Kafka-style queue histories to the ``cxl-history`` format.

Jepsen (and Elle) record a test as a sequence of operations: ``{:type :invoke, :f :send,
:value [[:send 5 1]], :process 0, :time 123, :index 0}`` and its completion ``{:type :ok, ...
:value [[:send 5 [12 1]]]}`` (value 1 was written to key 5 at offset 12), ``:poll``
completions ``[[:poll {5 [[11 3] [12 1]]}]]`` (a consumer read offsets 11 and 12 of key 5),
``:txn`` operations that mix both, ``:assign``/``:subscribe`` operations naming keys, and
``:fail`` (did not happen) or ``:info`` (may or may not have happened) completions. The file is
EDN (Jepsen's ``history.edn``: one operation map per line, or one vector of them) or JSON
(an array of objects, or JSON Lines, with the same keys as strings: ``"type": "ok"``,
``"value": [["send", 5, [12, 1]]]``, poll results as ``{"5": [[11, 3]]}``).

Mapping (docs/history-format.md, section "Histories from other systems"):

* each key is a broker (keys sorted; header ``x-jepsen-keys`` lists them), at Order 0: one
  log per key, positions per key;
* offsets become positions by dense rank per key (Kafka offsets may skip numbers for
  transaction markers; a skip is not an anomaly there);
* a sent value is a batch ``(broker=key, client=process, client_batch_seq=value)`` of one
  message; its ``publish`` is at the invocation time with outcome ``ok``/``failed``/
  ``unknown`` from the completion; ring slots (``pbr_index``) number a key's sends densely,
  in offset order, then invocation order;
* the first observation of ``(key, offset, value)`` (a send's completion or a poll) is the
  ``order`` event of that offset: two values at one offset are two batches at one position;
* every polled ``[offset value]`` is a ``deliver`` by ``subscriber=process``; a value nobody
  sent is delivered as a batch of client ``max process + 1`` (a phantom);
* a consumer's first poll of a key starting above the key's first offset gets a ``resume``
  there (it subscribed from a committed offset); ``:assign``/``:subscribe`` keys, else the
  keys it polled, become ``follow`` events;
* every event carries ``x-index``, the Jepsen operation's ``:index``.

Jepsen's kafka checker names (lost-write, poll-skip, nonmonotonic-poll, inconsistent-offsets,
duplicate, G1a) are the names of the corresponding checks here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HistoryError
from harness.history.jsonl import dumps_events, loads_history
from harness.history.model import History


# --------------------------------------------------------------------------- EDN (subset)
class Keyword(str):
    """An EDN keyword (``:ok`` reads as ``Keyword("ok")``); compares equal to its name."""


_TOKEN = re.compile(
    r"""[\s,]+|;[^\n]*|(?P<str>"(?:[^"\\]|\\.)*")|(?P<open>\#\{|[\[({])|(?P<close>[\])}])"""
    r"""|(?P<tag>\#[A-Za-z_][^\s,\[\](){}"]*)|(?P<atom>[^\s,\[\](){}";]+)""")
_INT = re.compile(r"[+-]?\d+N?$")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?$")


def parse_edn(text: str, source: str = "<edn>") -> list[Any]:
    """Every top-level form of ``text``. Maps become dicts, vectors and lists lists, sets
    frozensets (as lists), keywords :class:`Keyword`, ``nil`` None; a tagged form (``#inst
    "..."``, ``#jepsen.history.Op{...}``) reads as the form itself."""
    forms: list[Any] = []
    stack: list[tuple[str, list[Any], int]] = []
    pending_tag = 0

    def put(v: Any, pos: int) -> None:
        if stack:
            stack[-1][1].append(v)
        else:
            forms.append(v)

    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind is None:
            continue
        tok = m.group()
        if kind == "tag":
            pending_tag += 1
            continue
        pending_tag = 0
        if kind == "open":
            stack.append((tok, [], m.start()))
        elif kind == "close":
            if not stack:
                raise _edn_error(text, m.start(), f"unbalanced {tok!r}", source)
            opener, items, start = stack.pop()
            want = {"[": "]", "(": ")", "{": "}", "#{": "}"}[opener]
            if tok != want:
                raise _edn_error(text, m.start(), f"{opener!r} closed by {tok!r}", source)
            if opener == "{":
                if len(items) % 2:
                    raise _edn_error(text, start, "a map with an odd number of forms", source)
                put({_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}, start)
            else:
                put(items, start)
        elif kind == "str":
            put(json.loads(tok), m.start())
        else:
            put(_atom(tok, text, m.start(), source), m.start())
    if stack:
        raise _edn_error(text, stack[-1][2], f"{stack[-1][0]!r} never closed (truncated?)",
                         source)
    return forms


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _atom(tok: str, text: str, pos: int, source: str) -> Any:
    if tok.startswith(":"):
        return Keyword(tok[1:])
    if tok == "nil":
        return None
    if tok in ("true", "false"):
        return tok == "true"
    if _INT.match(tok):
        return int(tok.rstrip("N"))
    if _FLOAT.match(tok):
        return float(tok.rstrip("M"))
    if tok.startswith("\\"):
        return tok[1:]
    return Keyword(tok)  # a symbol


def _edn_error(text: str, pos: int, what: str, source: str) -> HistoryError:
    line = text.count("\n", 0, pos) + 1
    return HistoryError(f"{source}: line {line}: EDN: {what}",
                        "give a Jepsen history.edn (operation maps) or its JSON form")


# --------------------------------------------------------------------------- operations
def read_ops(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The operations of a Jepsen history file (EDN or JSON), keys as plain strings."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"cannot read Jepsen history {str(p)!r}: {exc}",
                           "check the path") from None
    return ops_from_text(text, str(p))


def ops_from_text(text: str, source: str = "<jepsen>") -> list[dict[str, Any]]:
    stripped = text.lstrip()
    forms: list[Any]
    if stripped.startswith("[{\"") or stripped.startswith("{\"") or stripped.startswith("[]"):
        try:
            whole = json.loads(text)
            forms = whole if isinstance(whole, list) else [whole]
        except json.JSONDecodeError:
            forms = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        forms.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise HistoryError(f"{source}: line {n}: not JSON ({exc.msg})",
                                           "one operation object per line") from None
    else:
        forms = parse_edn(text, source)
        if len(forms) == 1 and isinstance(forms[0], list):
            forms = forms[0]
    ops: list[dict[str, Any]] = []
    for k, f in enumerate(forms):
        if not isinstance(f, dict):
            raise HistoryError(f"{source}: operation {k} is {type(f).__name__}, not a map",
                               "a Jepsen history is a sequence of operation maps")
        op = {str(key): val for key, val in f.items()}
        for need in ("type", "process"):
            if need not in op:
                raise HistoryError(f"{source}: operation {k} lacks :{need}: {f!r}"[:200],
                                   "each operation has :type, :f, :process and :value")
        op.setdefault("index", k)
        ops.append(op)
    return ops


# --------------------------------------------------------------------------- conversion
def _micro(value: Any) -> Iterator[tuple[str, Any, Any]]:
    """The micro-operations of an op value: ("send", key, v) / ("poll", {key: pairs}, None)."""
    if not isinstance(value, list):
        return
    for m in value:
        if isinstance(m, list) and m and str(m[0]) == "send" and len(m) == 3:
            yield "send", m[1], m[2]
        elif isinstance(m, list) and m and str(m[0]) == "poll":
            yield "poll", (m[1] if len(m) > 1 else None), None


def _key(k: Any) -> Any:
    if isinstance(k, str) and re.fullmatch(r"-?\d+", k):
        return int(k)  # JSON object keys are strings
    return k


def _checksum(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64:
        return v
    import zlib

    return zlib.crc32(repr(v).encode())


def jepsen_events(ops: list[dict[str, Any]], *, drained: bool = False,
                  source: str = "jepsen") -> list[dict[str, Any]]:
    """Convert Jepsen operations to cxl-history events (header first, in time order)."""
    # pair invocations with completions per process
    open_inv: dict[Any, dict[str, Any]] = {}
    pairs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for op in ops:
        typ, proc = str(op["type"]), op["process"]
        if typ == "invoke":
            if proc in open_inv:
                pairs.append((open_inv.pop(proc), None))
            open_inv[proc] = op
        elif typ in ("ok", "fail", "info"):
            inv = open_inv.pop(proc, None)
            pairs.append((inv if inv is not None else op, op))
    pairs.extend((inv, None) for inv in open_inv.values())

    def when(op: dict[str, Any]) -> int:
        t = op.get("time", op.get("index", 0))
        return int(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0

    procs = [op["process"] for op in ops if isinstance(op["process"], int)]
    phantom_client = 1 + max([p for p in procs if p >= 0], default=-1)
    client_of: dict[Any, int] = {}  # process (any type) -> client id
    for op in ops:
        pr = op["process"]
        if pr not in client_of:
            client_of[pr] = pr if isinstance(pr, int) and pr >= 0 and not isinstance(pr, bool) \
                else phantom_client + 1 + len(client_of)
    sends: list[dict[str, Any]] = []  # one per sent value
    polls: list[tuple[dict[str, Any], Any, list[Any]]] = []  # (completion, key, [[off, v]])
    follows: dict[Any, set[Any]] = {}
    observed: list[tuple[int, Any, int, Any, int]] = []  # (t, key, offset, value, index)
    for inv, done in pairs:
        f = str(inv.get("f", ""))
        proc = inv["process"]
        if f in ("assign", "subscribe") and done is not None and str(done["type"]) == "ok":
            keys = inv.get("value") or []
            follows.setdefault(proc, set()).update(_key(k) for k in keys)
            continue
        outcome = "unknown" if done is None or str(done["type"]) == "info" else (
            "ok" if str(done["type"]) == "ok" else "failed")
        done_value = done.get("value") if done is not None and outcome == "ok" else None
        got = list(_micro(done_value)) if done_value is not None else []
        sent_done = [(k, v) for kind, k, v in got if kind == "send"]
        j = 0
        for kind, k, v in _micro(inv.get("value")):
            if kind != "send":
                continue
            offset = None
            if j < len(sent_done) and outcome == "ok":
                dv = sent_done[j][1]
                if isinstance(dv, list) and len(dv) == 2:
                    offset, v = dv
            j += 1
            sends.append({"key": _key(k), "value": v, "process": proc, "outcome": outcome,
                          "t": when(inv), "t_done": when(done) if done is not None else None,
                          "offset": offset, "index": inv["index"]})
            if offset is not None and done is not None:
                observed.append((when(done), _key(k), int(offset), v, done["index"]))
        if outcome == "ok" and done is not None:
            for kind, m, _ in got:
                if kind == "poll" and isinstance(m, dict):
                    for k, pairs_ in m.items():
                        polls.append((done, _key(k), list(pairs_ or [])))
                        for pr in pairs_ or []:
                            observed.append((when(done), _key(k), int(pr[0]), pr[1],
                                             done["index"]))
    keys = sorted({s["key"] for s in sends} | {k for _, k, _ in polls}
                  | {k for ks in follows.values() for k in ks}, key=lambda k: (str(type(k)), k))
    broker = {k: i for i, k in enumerate(keys)}
    # positions: dense rank of the offsets seen per key
    offsets: dict[Any, list[int]] = {}
    for _, k, off, _, _ in observed:
        offsets.setdefault(k, []).append(off)
    rank = {k: {o: r for r, o in enumerate(sorted(set(v)))} for k, v in offsets.items()}
    # ring slots: per key, sends in offset order (known offsets first), then invocation order
    by_value: dict[tuple[Any, Any], dict[str, Any]] = {}
    per_key: dict[Any, list[dict[str, Any]]] = {k: [] for k in keys}
    for s in sends:
        if s["outcome"] != "failed":  # a failed send takes no slot
            per_key[s["key"]].append(s)
    for k in keys:
        ks = per_key[k]
        ks.sort(key=lambda s: (s["offset"] is None, s["offset"] or 0, s["t"], s["index"]))
        for slot, s in enumerate(ks):
            s["pbr"] = slot
    for s in sends:
        ident = (s["key"], _hashable(s["value"]))
        if ident in by_value:
            raise HistoryError(
                f"value {s['value']!r} is sent to key {s['key']!r} twice (operations "
                f"{by_value[ident]['index']} and {s['index']})",
                "the adapter identifies a write by its value: values must be unique per key")
        by_value[ident] = s
    events: list[tuple[int, int, int, dict[str, Any]]] = []  # (t, kind, seq, event)

    def add(t: int, kind: int, ev: dict[str, Any]) -> None:
        events.append((t, kind, len(events), ev))

    for s in sends:
        e: dict[str, Any] = {"type": "publish", "t": s["t"], "broker": broker[s["key"]],
                             "client": client_of[s["process"]],
                             "client_batch_seq": _cseq(s["value"])}
        if "pbr" in s:
            e["pbr_index"] = s["pbr"]
        e.update(outcome=s["outcome"], msg_count=1, size=1, checksum=_checksum(s["value"]),
                 **{"x-index": s["index"]})
        add(s["t"], 0, e)
    phantoms: dict[tuple[Any, Any], int] = {}
    phantom_count: dict[Any, int] = {}

    def batch(k: Any, v: Any) -> dict[str, int]:
        s = by_value.get((k, _hashable(v)))
        if s is not None:
            return {"broker": broker[k], "client": client_of[s["process"]],
                    "client_batch_seq": _cseq(v), "pbr_index": s["pbr"]}
        ident = (k, _hashable(v))
        if ident not in phantoms:  # slots after the key's sends, in order of appearance
            phantoms[ident] = len(per_key[k]) + phantom_count.get(k, 0)
            phantom_count[k] = phantom_count.get(k, 0) + 1
        slot = phantoms[ident]
        return {"broker": broker[k], "client": phantom_client, "client_batch_seq": _cseq(v),
                "pbr_index": slot}

    seen: set[tuple[Any, int, Any]] = set()
    for t, k, off, v, idx in sorted(observed, key=lambda o: (o[0], o[4])):
        key3 = (k, off, _hashable(v))
        if key3 in seen:
            continue
        seen.add(key3)
        add(t, 1, {"type": "order", "t": t, "seq": rank[k][off], **batch(k, v),
                   "x-index": idx})
    started: set[tuple[Any, Any]] = set()
    polled_keys: dict[Any, set[Any]] = {}
    for done, k, prs in polls:
        proc = done["process"]
        sub = client_of[proc]
        t = when(done)
        polled_keys.setdefault(proc, set()).add(k)
        for off, v in prs:
            pos = rank[k][int(off)]
            if (proc, k) not in started:
                started.add((proc, k))
                if pos > 0:
                    add(t, 2, {"type": "resume", "t": t, "subscriber": sub, "position": pos,
                               "broker": broker[k], "x-index": done["index"]})
            b = batch(k, v)
            add(t, 3, {"type": "deliver", "t": t, "subscriber": sub, "position": pos, **b,
                       "checksum": _checksum(v), "size": 1, "x-index": done["index"]})
    t0 = min((e[0] for e in events), default=0)
    for proc in sorted(set(polled_keys) | set(follows), key=str):
        for k in sorted(follows.get(proc, polled_keys.get(proc, set())), key=str):
            if k in broker:
                add(t0, -1, {"type": "follow", "t": t0, "subscriber": client_of[proc],
                             "broker": broker[k]})
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head: dict[str, Any] = {"type": "header", "format": "cxl-history", "version": 2,
                            "order": 0, "brokers": max(1, len(keys)), "drained": drained,
                            "source": source, "clock": "Jepsen :time (ns)",
                            "x-jepsen-keys": [k if isinstance(k, (int, str)) else str(k)
                                              for k in keys]}
    return [head] + [e[3] for e in events]


def _cseq(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63:
        return v
    raise HistoryError(f"sent value {v!r} is not a non-negative integer",
                       "the adapter reads Jepsen kafka-style histories of integer values")


def read_jepsen(path: str | os.PathLike[str], *, drained: bool = False) -> History:
    """Read a Jepsen history file as a validated :class:`History` (Order 0, one log per
    key). Line numbers in counterexamples refer to :func:`jepsen_events`'s output; each
    event's ``x-index`` is the Jepsen operation index."""
    events = jepsen_events(read_ops(path), drained=drained, source=f"jepsen:{path}")
    return loads_history(dumps_events(events), source=str(path))
