"""Reader and writer of the ``cxl-history`` JSON Lines format (docs/history-format.md).

The reader is built for large files. The events are read in blocks of about BLOCK bytes;
each block goes to Arrow's JSON reader (one table over the union of all event fields, split
by ``type`` and validated with numpy, :func:`_fast_block`). A block that holds anything
unusual (blank or indented lines, ``null``, a value of the wrong type or range, an unknown
field or event type, a missing field) is instead read line by line (one ``loads`` per line,
orjson when installed, else the standard library), which applies every rule and names the
line and the offending value; both give identical tables. Columns grow in segments that are
separate memory mappings once large, so a history is not held twice while its tables are put
together. Errors are :class:`HistoryError` with the line number and the offending value.
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
    FORMAT_VERSIONS,
    ORDER_LEVELS,
    OUTCOME_NAMES,
    OUTCOMES,
    TABLE_COLUMNS,
    UINT64_COLUMNS,
    Array,
    History,
    Table,
    compact_absent,
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


CHUNK = 65536  # rows per numpy conversion on the line-by-line path
BLOCK = 8 << 20  # bytes per block of the vectorised reader
SEGMENT = 1 << 22  # rows per column segment once a table is large (32 MiB of int64)

# event type -> (table, required JSON fields in canonical order, optional fields)
EVENT_FIELDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "publish": (
        "publishes",
        ("t", "broker", "client", "client_batch_seq", "pbr_index", "outcome", "msg_count",
         "size", "checksum", "session"),
        ("pbr_index", "session"),
    ),
    "loss": ("losses", ("t", "broker", "pbr_index"), ()),
    "order": ("orders", ("t", "seq", "broker", "client", "client_batch_seq", "pbr_index",
                         "total_order", "session"), ("total_order", "session")),
    "commit": ("commits", ("t", "committed_seq", "broker"), ("broker",)),
    "ack": (
        "acks",
        ("t", "level", "broker", "client", "client_batch_seq", "pbr_index", "through_msgs"),
        ("client", "client_batch_seq", "pbr_index", "through_msgs"),
    ),
    "deliver": (
        "deliveries",
        ("t", "subscriber", "position", "broker", "client", "client_batch_seq", "pbr_index",
         "checksum", "size", "committed_seq", "session"),
        ("committed_seq", "session"),
    ),
    "resume": ("resumes", ("t", "subscriber", "position", "broker"), ("broker",)),
    "follow": ("follows", ("t", "subscriber", "broker"), ()),
    "lost_marker": ("markers", ("t", "seq", "client", "session", "client_batch_seq"),
                    ("session",)),
    "fence": ("fences", ("t", "client", "session", "committed_through"), ("session",)),
}
TABLE_EVENT = {table: ev for ev, (table, _, _) in EVENT_FIELDS.items()}
HEADER_OPTIONAL = {"brokers", "drained", "source", "description", "clock", "uncertainty"}


class _Growing:
    """Columns that grow by segments; segments double up to SEGMENT rows, so the large ones
    are separate memory mappings that go back to the system as soon as they are freed (a
    history of 10^7 events is not held twice while its table is put together)."""

    def __init__(self, dtypes: list[Any]) -> None:
        self.dtypes = dtypes
        self.segs: list[list[Array]] = []
        self.fill = 0  # rows used in the last segment
        self.total = 0

    def append(self, cols: list[Array]) -> None:
        n = int(cols[0].shape[0])
        done = 0
        while done < n:
            if not self.segs or self.fill == self.segs[-1][0].shape[0]:
                size = min(SEGMENT, max(CHUNK, self.total))
                self.segs.append([np.empty(size, dtype=d) for d in self.dtypes])
                self.fill = 0
            seg = self.segs[-1]
            take = min(n - done, seg[0].shape[0] - self.fill)
            for dst, src in zip(seg, cols):
                dst[self.fill:self.fill + take] = src[done:done + take]
            self.fill += take
            done += take
            self.total += take

    def build(self) -> list[Array]:
        out: list[Array] = []
        for k, d in enumerate(self.dtypes):  # column by column, freeing the segments
            col = np.empty(self.total, dtype=d)
            at = 0
            for j, seg in enumerate(self.segs):
                m = self.fill if j == len(self.segs) - 1 else seg[k].shape[0]
                col[at:at + m] = seg[k][:m]
                at += m
                seg[k] = _EMPTY
            out.append(col)
        self.segs.clear()
        return out


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
    store: _Growing | None = None

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

    def add(self, cols: list[Array], lines: Array) -> None:
        """Append converted columns (in ``columns`` order) and their line numbers."""
        if self.store is None:
            self.store = _Growing([c.dtype for c in cols] + [np.dtype(np.int64)])
        self.store.append([*cols, lines])

    def flush(self) -> None:
        if not self.rows:
            return
        lines = np.array(self.lines, dtype=np.int64)
        cols = list(zip(*self.rows))
        arrays: list[Array] = []
        for name, col in zip(self.columns, cols):
            arrays.append(_column(self.event, name, col, lines))
        self.add(arrays, lines)
        self.rows.clear()
        self.lines.clear()

    def build(self) -> Table:
        self.flush()
        if self.store is None or self.store.total == 0:
            return Table.empty(self.table)
        *arrays, ref = self.store.build()
        self.store = None
        cols = dict(zip(self.columns, arrays))
        compact_absent(self.table, cols)
        return Table(self.table, cols, ref)


_EMPTY = np.zeros(0, dtype=np.int64)


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
        v = col[i]
        if type(v) is float and v.is_integer() and abs(v) >= 2**63:
            # orjson reads an integer literal beyond 64 bits as a float: report the range
            info = np.iinfo(np.uint64 if name in UINT64_COLUMNS else np.int64)
            shown = str(int(v)) if abs(v) == 2**64 or v == -(2**63) - 1 else f"~{int(v)}"
            raise HistoryError(
                f"line {int(lines[i])}: {event} field {name!r} = {shown} is out of range "
                f"[{info.min}, {info.max}]",
                "checksums are unsigned 64-bit, other fields signed 64-bit",
            )
        raise HistoryError(
            f"line {int(lines[i])}: {event} field {name!r} = {v!r} is not an integer "
            f"(got {type(v).__name__})",
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
    if head.get("version") not in FORMAT_VERSIONS or type(head.get("version")) is not int:
        raise HistoryError(
            f"line {lineno}: unsupported header version = {head.get('version')!r}",
            f"this reader understands versions {', '.join(map(str, FORMAT_VERSIONS))}",
        )
    if "order" not in head:
        raise HistoryError(f"line {lineno}: header lacks 'order'", 'add "order":0 or "order":2')
    order = head["order"]
    if type(order) is not int or order not in ORDER_LEVELS:
        raise HistoryError(
            f"line {lineno}: unknown order level {order!r}",
            "use 0 (per-broker order), 2 (total order) or 5 (with per-client FIFO)",
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
    if "uncertainty" in head and (type(head["uncertainty"]) is not int or head["uncertainty"] < 0
                                  or head["uncertainty"] >= 2**63):
        raise HistoryError(
            f"line {lineno}: header uncertainty = {head['uncertainty']!r} is not a non-negative "
            "integer",
            "give the clock uncertainty window in units of t (0: only equal t is concurrent)",
        )
    if "brokers" in head and (type(head["brokers"]) is not int or head["brokers"] < 1):
        raise HistoryError(
            f"line {lineno}: header brokers = {head['brokers']!r} is not a positive integer",
            "give the number of brokers",
        )
    return dict(head)


def parse_lines(lines: Iterable[bytes], source: str = "<memory>") -> History:
    """Parse JSON Lines (bytes, with or without newlines) into a validated History.

    Line by line (no fast path); :func:`read_history` and :func:`loads_history` take whole
    blocks through the vectorised reader and give the same results and errors."""
    it: Iterator[bytes] = iter(lines)
    header, lineno = _read_header(it)
    reader = _Reader()
    lineno = reader.slow(it, lineno)
    return reader.finish(header, source)


def _read_header(it: Iterator[bytes]) -> tuple[dict[str, Any], int]:
    lineno = 0
    for raw in it:
        lineno += 1
        if raw.strip():
            return _parse_header(raw, lineno), lineno
    raise HistoryError(
        f"line {lineno + 1}: empty file, missing header",
        'a history starts with {"type":"header","format":"cxl-history","version":1,"order":2}',
    )


def _parse_stream(fh: IO[bytes], source: str) -> History:
    """Header line by line, then the events in blocks of about BLOCK bytes, each block read
    by the vectorised reader (:func:`_fast_block`) or, when it declines, line by line."""
    header, lineno = _read_header(iter(fh.readline, b""))
    reader = _Reader()
    rest = b""
    while True:
        data = fh.read(BLOCK)
        if not data:
            block, rest = rest, b""
        else:
            buf = rest + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                rest = buf
                continue
            block, rest = buf[: cut + 1], buf[cut + 1:]
        if not block:
            break
        lineno = reader.block(block, lineno)
    return reader.finish(header, source)


class _Reader:
    """Collects the event tables of one history, block by block or line by line."""

    def __init__(self) -> None:
        self.sinks = _sinks()
        self.any_slow = False
        self.last_t: int | None = None
        self.last_line = 0
        self.time_error: HistoryError | None = None

    # -- line by line: every rule, exact messages
    def slow(self, it: Iterable[bytes], lineno: int) -> int:
        """Parse event lines; ``lineno`` is the number of the line before the first one.
        Returns the last line number."""
        self.any_slow = True
        sinks = self.sinks
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
            return lineno
        finally:
            if gc_was_enabled:
                gc.enable()

    # -- a block of whole lines: vectorised when it can be, else line by line
    def block(self, block: bytes, lineno: int) -> int:
        fast = _fast_block(block)
        if fast is None:
            raw = block.split(b"\n")
            last = raw.pop()  # b"" when the block ends with a newline
            text = [r + b"\n" for r in raw]  # as a file yields them (same JSON messages)
            if last:
                text.append(last)
            return self.slow(text, lineno)
        n, t, per_type = fast
        lines = np.arange(lineno + 1, lineno + 1 + n, dtype=np.int64)
        if self.time_error is None and n:
            back = np.flatnonzero(t[1:] < t[:-1])
            if self.last_t is not None and int(t[0]) < self.last_t:
                self.time_error = _time_error(lineno + 1, int(t[0]), self.last_t, self.last_line)
            elif back.size:
                i = int(back[0]) + 1
                self.time_error = _time_error(int(lines[i]), int(t[i]), int(t[i - 1]),
                                              int(lines[i - 1]))
        if n:
            self.last_t, self.last_line = int(t[-1]), int(lines[-1])
        for ev, (rows, cols) in per_type.items():
            sink = self.sinks[ev]
            sink.flush()  # keep rows in line order
            sink.add(cols, lines[rows])
        return lineno + n

    def finish(self, header: dict[str, Any], source: str) -> History:
        tables = {s.table: s.build() for s in self.sinks.values()}
        _release_freed_memory()
        if self.any_slow:
            _check_time_monotonic(tables)
        elif self.time_error is not None:
            raise self.time_error
        hist = History(
            order=int(header["order"]),
            drained=bool(header.get("drained", True)),
            brokers=header.get("brokers"),
            ref_kind="line",
            source=source,
            header=header,
            uncertainty=int(header.get("uncertainty", 0)),
            **tables,
        )
        hist.validate()
        return hist


def _release_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc keeps the holes that many
    freed blocks leave); the checks then start from the history's own size."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _time_error(line: int, t: int, prev_t: int, prev_line: int) -> HistoryError:
    return HistoryError(
        f"line {line}: t = {t} is before the previous event's t = {prev_t} (line {prev_line})",
        "write events in time order; t must never decrease from one line to the next",
    )


# ---- the vectorised block reader -------------------------------------------------------
# Every field of every event type, with its Arrow type; the reader parses a block of lines
# into one table over this union and splits it by ``type``.
_UNION: dict[str, str] = {"type": "string", "outcome": "string"}
for _ev, (_tbl, _fields, _opt) in EVENT_FIELDS.items():
    for _f in _fields:
        if _f != "outcome":
            _UNION[_f] = "uint64" if _f in UINT64_COLUMNS else "int64"
_EVENT_NAMES = tuple(EVENT_FIELDS)
_ARROW: Any = None  # (pyarrow, json, compute, schema, event names, outcomes) once imported


def _arrow() -> Any:
    global _ARROW
    if _ARROW is None:
        try:
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.json as pj
        except ImportError:  # pragma: no cover - pyarrow is a dependency
            _ARROW = False
            return _ARROW
        schema = pa.schema([(k, getattr(pa, v)()) for k, v in _UNION.items()])
        _ARROW = (pa, pj, pc, schema, pa.array(list(_EVENT_NAMES)),
                  pa.array([OUTCOME_NAMES[k] for k in sorted(OUTCOME_NAMES)]))
    return _ARROW


def _fast_block(block: bytes) -> tuple[int, Array, dict[str, tuple[Array, list[Array]]]] | None:
    """Parse a block of complete lines with Arrow's JSON reader and validate it with numpy.

    Returns (lines, t of every line, {event: (row indices, columns)}), or None when the block
    needs the line-by-line reader: anything unusual (blank or indented lines, a ``null``
    anywhere, a value of the wrong type or range, an unknown field or type, a missing
    required field) is left to it, so that every error message names its line exactly as
    that reader does. Only blocks in which every line is one well-formed event come back."""
    arrow = _arrow()
    if not arrow or not block.startswith(b"{"):
        return None
    pa, pj, pc, schema, event_names, outcome_names = arrow
    raw = np.frombuffer(block, dtype=np.uint8)
    nl = np.flatnonzero(raw == 10)
    n = nl.size + (0 if block.endswith(b"\n") else 1)
    starts = nl[:-1] + 1 if block.endswith(b"\n") else nl + 1
    if starts.size and not bool((raw[starts] == 123).all()):
        return None  # a blank, whitespace-only or indented line
    try:
        tbl = pj.read_json(
            pa.BufferReader(block),
            read_options=pj.ReadOptions(block_size=1 << 20),
            parse_options=pj.ParseOptions(explicit_schema=schema,
                                          unexpected_field_behavior="infer"),
            memory_pool=pa.system_memory_pool(),  # freed blocks go back to the system
        )
    except (pa.ArrowException, UnicodeDecodeError, ValueError):
        return None
    if tbl.num_rows != n:
        return None  # a line holding two objects
    for name in tbl.column_names:
        if name not in _UNION and not name.startswith("x-"):
            return None
    types = pc.index_in(tbl.column("type"), value_set=event_names)
    if types.null_count:
        return None
    code = types.to_numpy(zero_copy_only=False)
    null: dict[str, Array] = {}
    value: dict[str, Array] = {}
    for name, kind in _UNION.items():
        col = tbl.column(name)
        null[name] = (col.is_null().to_numpy(zero_copy_only=False) if col.null_count
                      else np.zeros(n, dtype=bool))
    outcome = pc.index_in(tbl.column("outcome"), value_set=outcome_names)
    if outcome.null_count != tbl.column("outcome").null_count:
        return None  # an outcome string that is not ok/failed/unknown
    out: dict[str, tuple[Array, list[Array]]] = {}
    scanned = False
    present = np.bincount(code, minlength=len(_EVENT_NAMES))
    for k, ev in enumerate(_EVENT_NAMES):
        if not present[k]:
            continue
        table, fields, optional = EVENT_FIELDS[ev]
        rows = np.flatnonzero(code == k) if present[k] != n else np.arange(n)
        for name in _UNION:
            if name == "type":
                continue
            nm = null[name][rows]
            if name not in fields:
                if not nm.all():
                    return None  # a field of another event type
            elif name not in optional:
                if nm.any():
                    return None  # a required field missing
            elif nm.any() and not scanned:
                if b"null" in block:
                    return None  # absent or written as null? the line reader tells
                scanned = True
        cols: list[Array] = []
        for c in TABLE_COLUMNS[table]:
            if c not in value:
                if c == "outcome":
                    value[c] = outcome.fill_null(0).to_numpy(zero_copy_only=False).astype(
                        np.int64)
                else:
                    col = tbl.column(c)
                    if col.null_count:
                        col = col.fill_null(0 if c in UINT64_COLUMNS else -1)
                    value[c] = col.to_numpy(zero_copy_only=False)
            cols.append(value[c][rows] if rows.size != n else value[c])
        out[ev] = (rows, cols)
    t = tbl.column("t")
    if t.null_count:
        return None
    return n, t.to_numpy(zero_copy_only=False), out


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
        return _parse_stream(fh, source=str(p))


def loads_history(text: str | bytes, source: str = "<string>") -> History:
    """Parse a whole history held in memory."""
    data = text.encode() if isinstance(text, str) else text
    return _parse_stream(io.BytesIO(data), source=source)


# --------------------------------------------------------------------------- writing
def dumps_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    """Serialise event dicts (header first) as JSON Lines, one compact object per line."""
    return b"".join(_dumps(dict(e)) + b"\n" for e in events)


# Ties at equal t when writing a history built from arrays: what a later event may refer to
# comes first (a resume precedes the deliveries it applies to).
_WRITE_ORDER = ("publishes", "losses", "orders", "markers", "commits", "fences", "acks",
                "follows", "resumes", "deliveries")


def history_events(history: History) -> Iterator[dict[str, Any]]:
    """The events of ``history`` as dicts in canonical field order, header first. A history
    read from JSONL keeps its line order; one built from arrays is sorted by ``t`` (ties:
    publish, loss, order, lost_marker, commit, fence, ack, follow, resume, deliver; then
    row order)."""
    head: dict[str, Any] = {
        "type": "header", "format": FORMAT_NAME, "version": _version_needed(history),
        "order": history.order, "drained": history.drained,
    }
    if history.brokers is not None:
        head["brokers"] = history.brokers
    if history.uncertainty:
        head["uncertainty"] = history.uncertainty
    for k, v in history.header.items():
        if k not in head and k != "type":
            head[k] = v
    yield head
    names = list(_WRITE_ORDER)
    assert set(names) == set(TABLE_EVENT), "every table has a place in _WRITE_ORDER"
    ts = [getattr(history, n)["t"] for n in names]
    if history.ref_kind == "line":
        ts = [getattr(history, n).ref for n in names]
    t_all = np.concatenate(ts)
    which = np.concatenate([np.full(len(t), k, dtype=np.int64) for k, t in enumerate(ts)])
    row = np.concatenate([np.arange(len(t), dtype=np.int64) for t in ts])
    order = np.lexsort((row, which, t_all))
    tables = [getattr(history, n) for n in names]
    for k in order:
        w = int(which[k])
        yield _event_dict(names[w], tables[w], int(row[k]))


def _version_needed(history: History) -> int:
    """1 unless the history uses something version 2 added (so version-1 readers still read
    what they can)."""
    v2 = (history.uncertainty > 0 or len(history.resumes) > 0 or len(history.follows) > 0
          or history.order == 5 or bool((history.publishes["session"] >= 0).any())
          or bool((history.orders["total_order"] >= 0).any())
          or bool((history.deliveries["committed_seq"] >= 0).any()))
    return 2 if v2 else 1


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
