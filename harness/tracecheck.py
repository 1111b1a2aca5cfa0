"""Flush/fence trace rules over traces recorded elsewhere.

Two inputs are accepted (docs/trace-format.md):

* our JSON Lines trace: a header ``{"format": "cxl-trace", "version": 1, "region_size": N}``,
  then one event per line ``{"agent": 0, "op": "store", "off": 4096, "size": 8,
  "loc": "file.c:12"}``;
* pmemcheck's ``--log-stores=yes`` output: ``|STORE;0xADDR;0xVALUE;0xSIZE``,
  ``|FLUSH;0xADDR;0xSIZE`` and ``|FENCE`` entries (one agent; addresses are made relative to
  the lowest address seen, or to a ``REGISTER_FILE`` mapping when present).

The events drive the same C rule engine as the checked build (``cxl_chk_feed``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checked import Finding, _findings
from harness.errors import CoreError, HistoryError, why_not_a_file
from harness.native import check as cchk
from harness.native import op_codes

OPS = op_codes()  # the checked build's event ops
FORMAT = "cxl-trace"
_PMEM_RE = re.compile(r"\|(STORE|FLUSH|FENCE|REGISTER_FILE)((?:;[^|]*)?)")


@dataclass(frozen=True)
class TraceEvent:
    agent: int
    op: str
    off: int
    size: int
    loc: str = ""
    value: int = 0


@dataclass
class TraceReport:
    source: str
    events: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"source": self.source, "events": self.events, "ok": self.ok,
                "findings": [asdict(f) for f in self.findings]}


def _bad(path: str, lineno: int, problem: str) -> HistoryError:
    return HistoryError(f"{path}:{lineno}: {problem}", "see docs/trace-format.md for the accepted formats")


def read_jsonl_trace(path: str | Path) -> tuple[int, list[TraceEvent]]:
    """Parse our JSON Lines trace; returns (region_size, events)."""
    name = str(path)
    events: list[TraceEvent] = []
    region_size = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _bad(name, lineno, f"not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise _bad(name, lineno, "an event must be a JSON object")
            if lineno == 1 or not region_size:
                if obj.get("format") != FORMAT or obj.get("version") != 1:
                    raise _bad(name, lineno, f"expected a header {{\"format\": \"{FORMAT}\", \"version\": 1, ...}}")
                region_size = obj.get("region_size", 0)
                if not isinstance(region_size, int) or region_size <= 0:
                    raise _bad(name, lineno, f"region_size {region_size!r} is not a positive integer")
                continue
            events.append(_event(obj, name, lineno, region_size))
    if not region_size:
        raise _bad(name, 1, "empty trace: no header")
    return region_size, events


def _event(obj: dict[str, Any], name: str, lineno: int, region_size: int) -> TraceEvent:
    op = obj.get("op")
    if op not in OPS:
        raise _bad(name, lineno, f"unknown op {op!r} (one of {', '.join(OPS)})")
    agent, off, size = obj.get("agent", 0), obj.get("off", 0), obj.get("size", 8 if op != "fence" else 0)
    for key, v in (("agent", agent), ("off", off), ("size", size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _bad(name, lineno, f"{key} {v!r} is not a non-negative integer")
    if agent > 126:
        raise _bad(name, lineno, f"agent {agent} is out of range (0..126)")
    if op != "fence" and off + max(size, 1) > region_size:
        raise _bad(name, lineno, f"[{off}, {off + size}) lies outside the region of {region_size} bytes")
    loc = obj.get("loc", "")
    if not isinstance(loc, str):
        raise _bad(name, lineno, f"loc {loc!r} is not a string")
    return TraceEvent(agent, op, off, size, loc or f"{Path(name).name}:{lineno}")


def read_pmemcheck_log(path: str | Path) -> tuple[int, list[TraceEvent]]:
    """Parse pmemcheck's --log-stores output into events relative to the lowest address."""
    name = str(path)
    raw: list[tuple[str, int, int, int]] = []  # op, addr, size, entry number
    base: int | None = None
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for n, m in enumerate(_PMEM_RE.finditer(text), 1):
        kind, fields = m.group(1), [f for f in m.group(2).split(";") if f]
        try:
            if kind == "STORE":
                raw.append(("store", int(fields[0], 16), int(fields[2], 16), n))
            elif kind == "FLUSH":
                raw.append(("flush", int(fields[0], 16), int(fields[1], 16), n))
            elif kind == "FENCE":
                raw.append(("fence", 0, 0, n))
            elif kind == "REGISTER_FILE" and len(fields) >= 2:
                base = int(fields[1], 16) if base is None else base
        except (IndexError, ValueError):
            raise _bad(name, n, f"malformed pmemcheck entry |{kind}{m.group(2)}") from None
    if not raw:
        raise _bad(name, 1, "no pmemcheck STORE/FLUSH/FENCE entries found")
    addrs = [a for op, a, _, _ in raw if op != "fence"]
    lo = (min(addrs) if base is None else min(base, *addrs)) & ~63
    hi = max(a + max(s, 1) for op, a, s, _ in raw if op != "fence")
    events = [TraceEvent(0, op, a - lo if op != "fence" else 0, s, f"{Path(name).name}#{n}")
              for op, a, s, n in raw]
    return (hi - lo + 63) // 64 * 64, events


def read_trace(path: str | Path, fmt: str = "auto") -> tuple[int, list[TraceEvent]]:
    p = Path(path)
    if not p.is_file():
        why = why_not_a_file(p)
        raise HistoryError(f"{p}: {'no such trace file' if why == 'does not exist' else why}",
                           "check the path" if why == "does not exist" else "name a trace file (see docs/trace-format.md)")
    if fmt == "auto":
        with open(p, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
        if not head.strip():
            raise HistoryError(f"{p}: empty trace file", "record a trace first (see docs/trace-format.md)")
        fmt = "jsonl" if head.lstrip().startswith("{") else "pmemcheck"
    if fmt == "jsonl":
        return read_jsonl_trace(p)
    if fmt == "pmemcheck":
        return read_pmemcheck_log(p)
    raise HistoryError(f"unknown trace format {fmt!r}", "use auto, jsonl or pmemcheck")


def check_events(region_size: int, events: Iterable[TraceEvent], source: str = "trace") -> TraceReport:
    """Run the trace rules over ``events`` (a region of ``region_size`` bytes)."""
    try:
        cchk.begin(None, region_size)
    except CoreError:
        raise HistoryError(f"cannot track a region of {region_size} bytes", "split the trace") from None
    try:
        n = cchk.feed(_fed(events))
        cchk.finish()
        findings = _findings(log_agents=False)
    finally:
        cchk.end()
    return TraceReport(source, n, findings)


def _fed(events: Iterable[TraceEvent]) -> Iterator[tuple[int, int, int, int, str, int]]:
    """Events as the checker takes them: the op's code, the location as file and line."""
    where: dict[str, tuple[str, int]] = {}  # a trace repeats few locations many times
    for e in events:
        at = where.get(e.loc)
        if at is None:
            loc, _, line = e.loc.rpartition(":")
            at = where[e.loc] = (loc, int(line)) if line.isdigit() and loc else (e.loc, 0)
        yield e.agent, OPS[e.op], e.off, e.size, at[0], at[1]


def check_trace_file(path: str | Path, fmt: str = "auto") -> TraceReport:
    size, events = read_trace(path, fmt)
    return check_events(size, events, str(path))


def write_jsonl_trace(path: str | Path, region_size: int, events: Iterable[TraceEvent]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"format": FORMAT, "version": 1, "region_size": region_size}) + "\n")
        for e in events:
            fh.write(json.dumps({"agent": e.agent, "op": e.op, "off": e.off, "size": e.size,
                                 "loc": e.loc}) + "\n")


def events_from_checked_trace() -> Iterator[TraceEvent]:
    """The events the checked build kept during its last run (ModelConfig(keep_trace=True))."""
    names = {v: k for k, v in OPS.items()}
    for e in cchk.trace():
        loc = f"{e.file}:{e.line_no}" if e.file is not None else ""
        yield TraceEvent(e.agent, names[e.op], e.off, e.size, loc, e.value)
