"""Reader and writer of the ``cxl-history`` JSON Lines format (docs/history-format.md).

The reader is built for large files: one ``loads`` per line (orjson when installed, else the
standard library), a fast path that takes a line whose keys are exactly the canonical ones in
canonical order straight into a row tuple, and conversion to numpy in chunks so memory stays
near 8 bytes per field. Everything else (other key order, optional fields, ``x-`` fields) goes
through a slower path with the same rules. Errors are :class:`HistoryError` with the line
number and the offending value.
"""

from __future__ import annotations

import gc
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import numpy as np

from harness.errors import HistoryError
from harness.history.model import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ORDER_LEVELS,
    OUTCOME_NAMES,
    OUTCOMES,
    TABLE_COLUMNS,
    UINT64_COLUMNS,
    Array,
    History,
    Table,
)

try:  # orjson parses about 4x faster; the standard library is the fallback.
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _JSONError: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _loads = json.loads
    _JSONError = (json.JSONDecodeError, UnicodeDecodeError)

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


CHUNK = 65536

# event type -> (table, required JSON fields in canonical order, optional fields)
EVENT_FIELDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "publish": (
        "publishes",
        ("t", "broker", "client", "client_batch_seq", "pbr_index", "outcome", "msg_count",
         "size", "checksum"),
        ("pbr_index",),
    ),
    "loss": ("losses", ("t", "broker", "pbr_index"), ()),
    "order": ("orders", ("t", "seq", "broker", "client", "client_batch_seq", "pbr_index"), ()),
    "commit": ("commits", ("t", "committed_seq", "broker"), ("broker",)),
    "ack": (
        "acks",
        ("t", "level", "broker", "client", "client_batch_seq", "pbr_index", "through_msgs"),
        ("client", "client_batch_seq", "pbr_index", "through_msgs"),
    ),
    "deliver": (
        "deliveries",
        ("t", "subscriber", "position", "broker", "client", "client_batch_seq", "pbr_index",
         "checksum", "size"),
        (),
    ),
}
TABLE_EVENT = {table: ev for ev, (table, _, _) in EVENT_FIELDS.items()}
HEADER_OPTIONAL = {"brokers", "drained", "source", "description", "clock"}


@dataclass
class _Sink:
    """Rows of one event type being collected, converted to numpy every CHUNK rows."""

    event: str
    table: str
    columns: tuple[str, ...]
    required: frozenset[str]
    allowed: frozenset[str]
    fast_keys: list[str]
    getter: Callable[[dict[str, Any]], tuple[Any, ...]]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    chunks: list[list[Array]] = field(default_factory=list)
    line_chunks: list[Array] = field(default_factory=list)

    def slow_row(self, d: dict[str, Any], lineno: int) -> tuple[Any, ...]:
        keys = set(d) - {"type"}
        unknown = sorted(k for k in keys - self.allowed if not k.startswith("x-"))
        if unknown:
            raise HistoryError(
                f"line {lineno}: {self.event} event has unknown field {unknown[0]!r} = "
                f"{d[unknown[0]]!r}",
                f"{self.event} fields are {', '.join(self.columns)}; put extensions under "
                "an 'x-' prefix",
            )
        missing = [c for c in self.columns if c in self.required and c not in keys]
        if missing:
            raise HistoryError(
                f"line {lineno}: {self.event} event lacks required field {missing[0]!r}",
                f"{self.event} events need {', '.join(c for c in self.columns if c in self.required)}",
            )
        return tuple(d.get(c, -1) for c in self.columns)

    def flush(self) -> None:
        if not self.rows:
            return
        lines = np.array(self.lines, dtype=np.int64)
        cols = list(zip(*self.rows))
        arrays: list[Array] = []
        for name, col in zip(self.columns, cols):
            arrays.append(_column(self.event, name, col, lines))
        self.chunks.append(arrays)
        self.line_chunks.append(lines)
        self.rows.clear()
        self.lines.clear()

    def build(self) -> Table:
        self.flush()
        if not self.chunks:
            return Table.empty(self.table)
        cols = {
            c: np.concatenate([ch[k] for ch in self.chunks]) for k, c in enumerate(self.columns)
        }
        return Table(self.table, cols, np.concatenate(self.line_chunks))


def _column(event: str, name: str, col: tuple[Any, ...], lines: Array) -> Array:
    """Convert one chunk of one field to numpy, rejecting anything but JSON integers."""
    if event == "publish" and name == "outcome":
        try:
            mapped = [OUTCOMES[v] for v in col]
        except (KeyError, TypeError):
            i = next(k for k, v in enumerate(col) if not isinstance(v, str) or v not in OUTCOMES)
            raise HistoryError(
                f"line {int(lines[i])}: publish outcome = {col[i]!r} is not one of "
                "'ok', 'failed', 'unknown'",
                "write the outcome as a string: ok, failed or unknown",
            ) from None
        return np.array(mapped, dtype=np.int64)
    if set(map(type, col)) - {int}:
        i = next(k for k, v in enumerate(col) if type(v) is not int)
        raise HistoryError(
            f"line {int(lines[i])}: {event} field {name!r} = {col[i]!r} is not an integer "
            f"(got {type(col[i]).__name__})",
            "write integers (no quotes, no fraction, no null; leave optional fields out)",
        )
    dtype = np.uint64 if name in UINT64_COLUMNS else np.int64
    try:
        return np.fromiter(col, dtype=dtype, count=len(col))
    except OverflowError:
        info = np.iinfo(dtype)
        i = next(k for k, v in enumerate(col) if not info.min <= v <= info.max)
        raise HistoryError(
            f"line {int(lines[i])}: {event} field {name!r} = {col[i]!r} is out of range "
            f"[{info.min}, {info.max}]",
            "checksums are unsigned 64-bit, other fields signed 64-bit",
        ) from None


def _sinks() -> dict[str, _Sink]:
    sinks: dict[str, _Sink] = {}
    for ev, (table, fields, optional) in EVENT_FIELDS.items():
        columns = TABLE_COLUMNS[table]
        assert set(fields) == set(columns), (ev, fields, columns)
        sinks[ev] = _Sink(
            event=ev,
            table=table,
            columns=columns,
            required=frozenset(fields) - set(optional),
            allowed=frozenset(fields),
            fast_keys=["type", *columns],
            getter=itemgetter(*columns),
        )
    return sinks


def _describe_line(raw: bytes, limit: int = 80) -> str:
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_header(raw: bytes, lineno: int) -> dict[str, Any]:
    try:
        head = _loads(raw)
    except _JSONError as exc:
        raise HistoryError(
            f"line {lineno}: not valid JSON ({exc}): {_describe_line(raw)!r}",
            "the first line must be the header object",
        ) from None
    if not isinstance(head, dict) or head.get("type") != "header":
        raise HistoryError(
            f"line {lineno}: missing header: first line is {_describe_line(raw)!r}",
            'start the file with {"type":"header","format":"cxl-history","version":1,"order":2}',
        )
    if head.get("format") != FORMAT_NAME:
        raise HistoryError(
            f"line {lineno}: header format = {head.get('format')!r}, expected {FORMAT_NAME!r}",
            f'set "format":"{FORMAT_NAME}"',
        )
    if head.get("version") != FORMAT_VERSION or type(head.get("version")) is not int:
        raise HistoryError(
            f"line {lineno}: unsupported header version = {head.get('version')!r}",
            f"this reader understands version {FORMAT_VERSION}",
        )
    if "order" not in head:
        raise HistoryError(f"line {lineno}: header lacks 'order'", 'add "order":0 or "order":2')
    order = head["order"]
    if type(order) is not int or order not in ORDER_LEVELS:
        raise HistoryError(
            f"line {lineno}: unknown order level {order!r}",
            "use 0 (per-broker order) or 2 (total order)",
        )
    for key in head:
        if key in ("type", "format", "version", "order") or key in HEADER_OPTIONAL:
            continue
        if not key.startswith("x-"):
            raise HistoryError(
                f"line {lineno}: header has unknown field {key!r} = {head[key]!r}",
                f"header fields are format, version, order, {', '.join(sorted(HEADER_OPTIONAL))}"
                "; put extensions under an 'x-' prefix",
            )
    if "drained" in head and type(head["drained"]) is not bool:
        raise HistoryError(
            f"line {lineno}: header drained = {head['drained']!r} is not true/false",
            'write "drained":true or "drained":false',
        )
    if "brokers" in head and (type(head["brokers"]) is not int or head["brokers"] < 1):
        raise HistoryError(
            f"line {lineno}: header brokers = {head['brokers']!r} is not a positive integer",
            "give the number of brokers",
        )
    return dict(head)


def parse_lines(lines: Iterable[bytes], source: str = "<memory>") -> History:
    """Parse JSON Lines (bytes, with or without newlines) into a validated History."""
    it: Iterator[bytes] = iter(lines)
    lineno = 0
    header: dict[str, Any] | None = None
    for raw in it:
        lineno += 1
        if raw.strip():
            header = _parse_header(raw, lineno)
            break
    if header is None:
        raise HistoryError(
            f"line {lineno + 1}: empty file, missing header",
            'a history starts with {"type":"header","format":"cxl-history","version":1,"order":2}',
        )
    tables, _ = _parse_events(it, lineno)
    _check_time_monotonic(tables)
    hist = History(
        order=int(header["order"]),
        drained=bool(header.get("drained", True)),
        brokers=header.get("brokers"),
        ref_kind="line",
        source=source,
        header=header,
        **tables,
    )
    hist.validate()
    return hist


def _parse_events(it: Iterable[bytes], lineno: int) -> tuple[dict[str, Table], int]:
    """Parse event lines; ``lineno`` is the number of the line before the first one.
    Returns the tables (``ref`` = line numbers) and the last line number."""
    sinks = _sinks()
    loads = _loads
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC would dominate parse time
    try:
        for raw in it:
            lineno += 1
            try:
                d = loads(raw)
                sink = sinks[d["type"]]
            except _JSONError as exc:
                if not raw.strip():
                    continue
                raise HistoryError(
                    f"line {lineno}: not valid JSON ({exc}): {_describe_line(raw)!r}",
                    "each line must be one complete JSON object; the file may be truncated",
                ) from None
            except (KeyError, TypeError):
                _bad_event(d, lineno, raw)
                raise AssertionError("unreachable") from None
            if list(d) == sink.fast_keys:
                sink.rows.append(sink.getter(d))
            else:
                sink.rows.append(sink.slow_row(d, lineno))
            sink.lines.append(lineno)
            if len(sink.rows) >= CHUNK:
                sink.flush()
        return {s.table: s.build() for s in sinks.values()}, lineno
    finally:
        if gc_was_enabled:
            gc.enable()


def _bad_event(d: Any, lineno: int, raw: bytes) -> None:
    if not isinstance(d, dict):
        raise HistoryError(
            f"line {lineno}: expected a JSON object, got {type(d).__name__}: "
            f"{_describe_line(raw)!r}",
            "write one event object per line",
        )
    if "type" not in d:
        raise HistoryError(f"line {lineno}: event has no 'type' field: {_describe_line(raw)!r}",
                           f"type is one of {', '.join(EVENT_FIELDS)}")
    if d["type"] == "header":
        raise HistoryError(f"line {lineno}: a second header", "only the first line is a header")
    raise HistoryError(
        f"line {lineno}: unknown event type {d['type']!r}",
        f"event types are {', '.join(EVENT_FIELDS)}",
    )


def _check_time_monotonic(tables: Mapping[str, Table]) -> None:
    ts = [tbl["t"] for tbl in tables.values()]
    ls = [tbl.ref for tbl in tables.values()]
    t = np.concatenate(ts)
    lines = np.concatenate(ls)
    if t.size < 2:
        return
    order = np.argsort(lines, kind="stable")
    t = t[order]
    bad = np.flatnonzero(t[1:] < t[:-1])
    if bad.size:
        i = int(bad[0]) + 1
        raise HistoryError(
            f"line {int(lines[order[i]])}: t = {int(t[i])} is before the previous event's "
            f"t = {int(t[i - 1])} (line {int(lines[order[i - 1]])})",
            "write events in time order; t must never decrease from one line to the next",
        )


def read_history(path: str | os.PathLike[str]) -> History:
    """Read a history file."""
    p = Path(path)
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise HistoryError(f"cannot open history {str(p)!r}: {exc.strerror}",
                           "check the path") from None
    with fh:
        return parse_lines(fh, source=str(p))


def loads_history(text: str | bytes, source: str = "<string>") -> History:
    """Parse a whole history held in memory."""
    data = text.encode() if isinstance(text, str) else text
    return parse_lines(io.BytesIO(data), source=source)


# --------------------------------------------------------------------------- writing
def dumps_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    """Serialise event dicts (header first) as JSON Lines, one compact object per line."""
    return b"".join(_dumps(dict(e)) + b"\n" for e in events)


def history_events(history: History) -> Iterator[dict[str, Any]]:
    """The events of ``history`` as dicts in canonical field order, header first, sorted by
    ``t`` (ties: publish, loss, order, commit, ack, deliver; then original order)."""
    head: dict[str, Any] = {
        "type": "header", "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "order": history.order, "drained": history.drained,
    }
    if history.brokers is not None:
        head["brokers"] = history.brokers
    for k, v in history.header.items():
        if k not in head and k != "type":
            head[k] = v
    yield head
    names = list(TABLE_EVENT)
    ts = [getattr(history, n)["t"] for n in names]
    t_all = np.concatenate(ts)
    which = np.concatenate([np.full(len(t), k, dtype=np.int64) for k, t in enumerate(ts)])
    row = np.concatenate([np.arange(len(t), dtype=np.int64) for t in ts])
    order = np.lexsort((row, which, t_all))
    tables = [getattr(history, n) for n in names]
    for k in order:
        w = int(which[k])
        yield _event_dict(names[w], tables[w], int(row[k]))


def _event_dict(table: str, tbl: Table, i: int) -> dict[str, Any]:
    ev = TABLE_EVENT[table]
    _, fields, optional = EVENT_FIELDS[ev]
    d: dict[str, Any] = {"type": ev}
    for c in fields:
        v = int(tbl[c][i])
        if c in optional and v == -1:
            continue
        d[c] = OUTCOME_NAMES[v] if (ev == "publish" and c == "outcome") else v
    return d


def write_history(history: History, dest: str | os.PathLike[str] | IO[bytes]) -> None:
    """Write ``history`` as a JSON Lines file (or to a binary stream)."""
    if isinstance(dest, (str, os.PathLike)):
        with open(dest, "wb") as fh:
            _write(history, fh)
    else:
        _write(history, dest)


def _write(history: History, fh: IO[bytes]) -> None:
    buf: list[bytes] = []
    for ev in history_events(history):
        buf.append(_dumps(ev) + b"\n")
        if len(buf) >= CHUNK:
            fh.write(b"".join(buf))
            buf.clear()
    fh.write(b"".join(buf))
