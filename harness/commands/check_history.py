"""``cxl-harness check-history FILE``: validate the ordering invariants of a recorded history.

Exit status: 0 every check passed, 1 anomalies found, 2 bad input (via cli.main's HarnessError
handling). ``--json`` prints the machine-readable report instead of text.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from harness.commands._args import json_flag
from harness.errors import HistoryError

if TYPE_CHECKING:  # numpy-heavy: imported when a history is checked, not to build --help
    from harness.history.checks import CheckReport


EVENT_KINDS = ("publish", "loss", "order", "commit", "ack", "deliver")


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check-history", parents=[json_flag()],
        help="check a recorded history (JSON Lines) for ordering anomalies",
        description="Check a cxl-history JSON Lines file (docs/history-format.md) for "
        "ordering anomalies. Exit 0: valid; 1: anomalies found; 2: bad input.",
    )
    p.add_argument("file", help="history file (.jsonl)")
    p.add_argument(
        "--order", type=str, default=None, metavar="N",
        help="order level to check (0, 2 or 5); default: the header's order",
    )
    p.add_argument(
        "--from", dest="source_format", choices=("cxl", "jepsen"), default="cxl",
        help="format of FILE: cxl (default, docs/history-format.md) or jepsen (a Jepsen "
        "kafka-style history, EDN or JSON; see the doc's 'Histories from other systems')",
    )
    p.add_argument(
        "--drained", action="store_true",
        help="with --from jepsen: the test ended with every consumer caught up (enables "
        "lost-write)",
    )
    p.add_argument(
        "--converted", metavar="OUT",
        help="with --from jepsen: also write the converted cxl-history to OUT",
    )
    p.add_argument(
        "--examples", type=int, default=None, metavar="K",
        help="counterexamples per anomaly (default: the checker's, harness.history.checks."
             "DEFAULT_EXAMPLES)",
    )
    p.set_defaults(func=run)


def _parse_order(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        level = int(text)
    except ValueError:
        level = -1
    if str(level) != text.strip() or level not in (0, 2, 5):
        raise HistoryError(f"--order {text!r}: unknown order level",
                           "use --order 0 (per-broker order), --order 2 (total order) or "
                           "--order 5 (total order with per-client FIFO)")
    return level


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except HistoryError as exc:
        if getattr(args, "json", False):
            # machine readers get the error on stdout too; cli.main prints the line on stderr
            print(json.dumps(error_object(exc, args.file), indent=2))
        raise


def error_object(exc: HistoryError, source: str) -> dict[str, Any]:
    """The JSON object printed for bad input with --json (exit status 2)."""
    return {"format": "cxl-history-check", "version": 1, "ok": False, "source": source,
            "error": {"kind": "bad-input", "problem": exc.problem, "fix": exc.fix,
                      "message": str(exc)}}


def _run(args: argparse.Namespace) -> int:
    from harness.history.checks import DEFAULT_EXAMPLES, check_history
    from harness.history.jsonl import read_history

    if args.examples is None:
        args.examples = DEFAULT_EXAMPLES
    order = _parse_order(args.order)
    if args.examples < 1:
        raise HistoryError(f"--examples {args.examples}: must be at least 1", "use --examples 5")
    source_format = getattr(args, "source_format", "cxl")
    if source_format != "jepsen" and (getattr(args, "drained", False)
                                      or getattr(args, "converted", None)):
        raise HistoryError("--drained and --converted apply to --from jepsen only",
                           "add --from jepsen, or leave them out")
    t0 = time.perf_counter()
    if source_format == "jepsen":
        from harness.history.jepsen import jepsen_events, read_ops
        from harness.history.jsonl import dumps_events, loads_history

        events = jepsen_events(read_ops(args.file), drained=args.drained,
                               source=f"jepsen:{args.file}")
        data = dumps_events(events)
        if args.converted:
            try:
                with open(args.converted, "wb") as fh:
                    fh.write(data)
            except OSError as exc:
                raise HistoryError(f"cannot write {args.converted!r}: {exc.strerror}",
                                   "give a writable path for --converted") from None
        history = loads_history(data, source=args.file)
    else:
        history = read_history(args.file)
    t1 = time.perf_counter()
    counts = history.counts()
    if not any(counts.get(k, 0) for k in EVENT_KINDS):
        raise HistoryError(f"{args.file}: a header and no events, so there is nothing to check",
                           "record a run into the file (cxl-harness publish --history FILE)")
    report = check_history(history, order, max_examples=args.examples)
    t2 = time.perf_counter()
    if args.json:
        out = report.to_dict()
        out["timing_s"] = {"read": round(t1 - t0, 3), "check": round(t2 - t1, 3)}
        print(json.dumps(out, indent=2))
    else:
        print(format_report(report, t1 - t0, t2 - t1))
    return 0 if report.ok else 1


def format_report(report: CheckReport, read_s: float | None = None,
                  check_s: float | None = None) -> str:
    c = report.counts
    lines = [
        f"history {report.source}: order {report.order}, "
        + ", ".join(f"{c[k]} {k}" for k in ("publish", "loss", "order", "commit", "ack", "deliver"))
        + f" events, {c['subscribers']} subscribers"
    ]
    width = max(len(r.check_id) for r in report.results)
    for r in report.results:
        tag = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[r.status]
        line = f"  {tag}  {r.check_id:<{width}}  {r.name}"
        if r.anomaly is not None:
            line += f": {r.anomaly.count} violation{'s' if r.anomaly.count != 1 else ''}"
        elif r.note:
            line += f" ({r.note})"
        lines.append(line)
        if r.anomaly is not None:
            for ex in r.anomaly.examples:
                lines.append("        e.g. " + json.dumps(ex, separators=(", ", ": ")))
    failed = report.failed_ids()
    verdict = "OK: no anomalies" if not failed else (
        f"ANOMALIES: {len(failed)} check(s) failed: {', '.join(failed)}")
    if read_s is not None and check_s is not None:
        verdict += f"  (read {read_s:.2f} s, check {check_s:.2f} s)"
    lines.append(verdict)
    return "\n".join(lines)
