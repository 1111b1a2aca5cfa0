"""The self-contained HTML report of a harness run.

- :mod:`harness.report.summary`: the ``summary.json`` format (``cxl-harness-summary/2``),
  its JSON schema, loading and validation.
- :mod:`harness.report.charts`: matplotlib charts as inline SVG.
- :mod:`harness.report.render`: :func:`render_report` writes ``index.html``.
"""

from __future__ import annotations

from typing import Any

from harness.report.summary import (
    SCHEMA_ID,
    SUMMARY_FILENAME,
    SUMMARY_SCHEMA,
    Summary,
    SummaryError,
    load_summary,
    validate_summary,
    write_summary,
)

__all__ = [
    "SCHEMA_ID",
    "SUMMARY_FILENAME",
    "SUMMARY_SCHEMA",
    "Summary",
    "SummaryError",
    "load_summary",
    "render_html",
    "render_report",
    "validate_summary",
    "write_summary",
]


def __getattr__(name: str) -> Any:
    """The renderer (matplotlib, jinja2) is imported on first use, not with the package."""
    if name in ("render_html", "render_report"):
        from harness.report import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
