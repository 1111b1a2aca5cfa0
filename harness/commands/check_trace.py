"""``cxl-harness check-trace``: flush/fence trace rules over a recorded trace."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.commands._args import json_flag


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check-trace", parents=[json_flag()], help="check a store/flush/fence trace (ours or pmemcheck --log-stores)")
    p.add_argument("file", help="trace file (JSON Lines cxl-trace, or a pmemcheck store log)")
    p.add_argument("--format", choices=("auto", "jsonl", "pmemcheck"), default="auto")
    p.add_argument("--warnings", action="store_true", help="also list performance warnings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.tracecheck import check_trace_file

    report = check_trace_file(args.file, args.format)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    shown = report.findings if args.warnings else report.errors
    for f in shown:
        print(f"{f.severity.upper():7} {f.describe()}")
    warnings = len(report.findings) - len(report.errors)
    print(f"{report.events} events: {len(report.errors)} error finding(s), {warnings} warning(s); "
          f"{'PASS' if report.ok else 'FAIL'}")
    return 0 if report.ok else 1
