"""Ordering-invariant validation of shared-log histories (ours or recorded elsewhere).

Typical use::

    from harness.history import read_history, check_history
    report = check_history(read_history("run.jsonl"))
    if not report.ok:
        for a in report.anomalies:
            print(a.check_id, a.name, a.count, a.examples[:1])

The file format is documented in docs/history-format.md; :meth:`History.from_arrays` takes
the C core's arrays directly, and :func:`read_jepsen` reads a Jepsen kafka-style history.
"""

from harness.history.checks import (
    CHECK_IDS,
    CHECKS,
    ORDER5_CHECK_IDS,
    Anomaly,
    CheckReport,
    CheckResult,
    check_history,
)
from harness.history.jepsen import jepsen_events, read_jepsen
from harness.history.jsonl import (
    dumps_events,
    history_events,
    loads_history,
    parse_lines,
    read_history,
    write_history,
)
from harness.history.model import History, Table

__all__ = [
    "CHECKS",
    "CHECK_IDS",
    "ORDER5_CHECK_IDS",
    "Anomaly",
    "CheckReport",
    "CheckResult",
    "History",
    "Table",
    "check_history",
    "dumps_events",
    "history_events",
    "jepsen_events",
    "loads_history",
    "parse_lines",
    "read_history",
    "read_jepsen",
    "write_history",
]
