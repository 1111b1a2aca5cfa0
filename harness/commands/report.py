"""``cxl-harness report DIR [--compare OLD_DIR] [--out FILE]``: re-render a run's report.

Reads ``DIR/summary.json`` and writes the self-contained HTML report to ``DIR/index.html``
(or ``FILE``). With ``--compare``, the targets and runs tables also show the figures of the
earlier run in ``OLD_DIR`` and the change.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.report.summary import REPORT_FILENAME, SUMMARY_FILENAME, Summary, load_summary


def register(subparsers: Any) -> None:
    """Add the ``report`` sub-command to the CLI's sub-parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="render a run directory's summary.json into a self-contained HTML report",
        description=(
            "Render DIR/summary.json into one self-contained HTML page (no network needed "
            "to view it), written to DIR/index.html unless --out is given."
        ),
    )
    parser.add_argument("directory", metavar="DIR", type=Path, help="run directory holding summary.json")
    parser.add_argument(
        "--compare",
        metavar="OLD_DIR",
        type=Path,
        default=None,
        help="an earlier run directory (or its summary.json) to compare targets and runs with",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        default=None,
        help=f"where to write the HTML (default: DIR/{REPORT_FILENAME})",
    )
    parser.set_defaults(func=run)


def _summary_path(location: Path, role: str) -> Path:
    """``location`` is a run directory (holding summary.json) or a summary file itself."""
    if location.is_dir():
        path = location / SUMMARY_FILENAME
        if not path.is_file():
            raise HarnessError(
                f"{role} {location}: has no {SUMMARY_FILENAME}",
                "point at the directory a harness run wrote its results to (it holds summary.json)",
            )
        return path
    if location.is_file():
        return location
    raise HarnessError(
        f"{role} {location}: no such directory",
        "give the run directory that holds summary.json (for example reports/<run>/)",
    )


def _load(location: Path, role: str) -> tuple[Path, Summary]:
    path = _summary_path(location, role)
    return path, load_summary(path)


def run(args: argparse.Namespace) -> int:
    from harness.report.render import render_report

    """Render the report; returns 0 and prints the written path."""
    summary_path, summary = _load(args.directory, "run directory")
    previous = None
    if args.compare is not None:
        _, previous = _load(args.compare, "--compare")
    raw_dir = summary_path.parent
    out: Path | None = args.out
    if out is None:
        out_dir, filename = raw_dir, REPORT_FILENAME
    else:
        if out.is_dir():
            raise HarnessError(f"--out {out}: is a directory", f"give a file name, for example {out / REPORT_FILENAME}")
        out_dir, filename = out.parent, out.name
    try:
        written = render_report(
            dict(summary), out_dir, dict(previous) if previous is not None else None,
            filename=filename, raw_dir=raw_dir,
        )
    except OSError as exc:
        raise HarnessError(
            f"cannot write the report to {out_dir / filename}: {exc.strerror or exc}",
            "choose a writable location with --out",
        ) from exc
    print(written)
    return 0
