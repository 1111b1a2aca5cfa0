"""Render a run summary (``cxl-harness-summary/2``) into one self-contained HTML page.

The page needs nothing but itself: CSS is inline, charts are inline SVG drawn by
matplotlib, there is no script, font, image or stylesheet to fetch. Links to the raw JSON
files written beside the summary are relative.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

import harness
from harness.stats import compare_samples
from harness.report import charts
from harness.report.mutation import MUTATION_FILENAME, NOT_COMPUTED
from harness.report.mutation import from_file as mutation_from_file
from harness.report.summary import (  # noqa: F401  (REPORT_FILENAME re-exported)
    CHECK_GROUPS,
    REPORT_FILENAME,
    SUMMARY_FILENAME,
    Summary,
    validate_summary,
)

TEMPLATE_NAME = "report.html.j2"

GROUP_TITLES: dict[str, str] = {
    "ordering": "Ordering invariants",
    "flush-fence": "Flush/fence discipline",
    "faults": "Fault plan",
    "crash": "Crash injection (named, expected outcomes)",
    "targets": "Throughput/latency targets",
}

# Counterexamples shown per check; the rest stay in summary.json.
MAX_COUNTEREXAMPLES = 20


# --------------------------------------------------------------------------- formatting


def fmt_num(value: Any, precision: int | None = None) -> str:
    """Human-readable number: thousands separators, precision that suits the magnitude."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if precision is not None:
        return f"{value:,.{precision}f}"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def fmt_ns(value: Any) -> str:
    """A duration in nanoseconds, in the unit that reads best."""
    if value is None:
        return "—"
    ns = float(value)
    if abs(ns) < 1_000:
        return f"{ns:,.0f} ns"
    if abs(ns) < 1_000_000:
        return f"{ns / 1_000:,.2f} µs"
    if abs(ns) < 1_000_000_000:
        return f"{ns / 1_000_000:,.2f} ms"
    return f"{ns / 1_000_000_000:,.2f} s"


def fmt_bytes(value: Any) -> str:
    """A size in bytes with a binary unit (``16.00 GiB``)."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fmt_pct(value: Any) -> str:
    """A signed percentage change (``+3.2 %``)."""
    if value is None:
        return "—"
    return f"{float(value):+,.1f} %"


def to_json(value: Any, compact: bool = False) -> str:
    """JSON text of a value for ``<pre>``/``<code>`` blocks (escaped by the template)."""
    if compact:
        return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    return json.dumps(value, indent=2, ensure_ascii=False)


def slug(text: str) -> str:
    """An id-safe slug: ``"order2/per-scanner"`` -> ``"order2-per-scanner"``."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "item"


def duration(started: str | None, finished: str | None) -> str | None:
    """``finished - started`` as ``1 h 02 min 05 s`` when both are ISO timestamps."""
    if not started or not finished:
        return None
    try:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    except (ValueError, TypeError):
        return None
    if seconds < 0:
        return None
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"


# --------------------------------------------------------------------------- view model


@dataclass(frozen=True)
class Delta:
    """An earlier figure and the relative change to the current one."""

    previous: float
    pct: float | None
    # "better" / "worse": a significant change (Mann-Whitney U at alpha 0.05, and more than
    # the noise threshold); "same": tested and not significant; "untested": one value on
    # either side, so no test is possible and no colour is given.
    trend: str
    test: str = ""


def delta(current: float | None, previous: float | None, *, higher_is_better: bool,
          samples: Sequence[float] | None = None,
          previous_samples: Sequence[float] | None = None) -> Delta | None:
    """The change from an earlier figure; significant only when both sides have samples and
    a two-sided Mann-Whitney U test says so (:func:`harness.stats.compare_samples`)."""
    if current is None or previous is None:
        return None
    pct = None if previous == 0 else (current - previous) / abs(previous) * 100.0
    if samples and previous_samples and len(samples) >= 2 and len(previous_samples) >= 2:
        change = compare_samples("", previous_samples, samples, higher_is_better=higher_is_better)
        trend = "same" if change.better is None else ("better" if change.better else "worse")
        return Delta(previous=float(previous), pct=pct, trend=trend, test=change.text)
    return Delta(previous=float(previous), pct=pct, trend="untested",
                 test="one value on a side: no significance test possible")


@dataclass(frozen=True)
class FailedItem:
    """One entry of the verdict's list of failures."""

    name: str
    kind: str  # "check", "target", "calibration", "fault", "run" or "item"
    anchor: str | None
    detail: str
    listed: bool  # named by verdict.failed (False: found failing in the data only)
    ident: str | None = None  # a check's id


@dataclass(frozen=True)
class RawFile:
    role: str
    path: str
    href: str | None
    exists: bool | None


@dataclass
class _Anchors:
    used: set[str] = field(default_factory=set)

    def make(self, prefix: str, text: str) -> str:
        base = f"{prefix}-{slug(text)}"
        anchor, n = base, 2
        while anchor in self.used:
            anchor, n = f"{base}-{n}", n + 1
        self.used.add(anchor)
        return anchor


def _counterexample_table(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """When every counterexample is a flat object of scalars, one table: columns are the
    union of keys in first-seen order, rows the counterexamples."""
    if not examples:
        return None
    if not all(
        not isinstance(value, (dict, list)) for example in examples for value in example.values()
    ):
        return None
    columns: list[str] = []
    for example in examples:
        for key in example:
            if key not in columns:
                columns.append(key)
    rows = [[example.get(col) for col in columns] for example in examples]
    return {"columns": columns, "rows": rows}


def _raw_files(summary: Summary, out_dir: Path, raw_dir: Path) -> list[RawFile]:
    files = dict(summary["files"])
    if "summary" not in files and (raw_dir / SUMMARY_FILENAME).is_file():
        files = {"summary": SUMMARY_FILENAME, **files}
    out: list[RawFile] = []
    for role, rel in files.items():
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", rel):
            # A URL (or drive path): never link out of the self-contained page.
            out.append(RawFile(role=role, path=rel, href=None, exists=None))
            continue
        target = raw_dir / rel
        href = Path(os.path.relpath(target, out_dir)).as_posix()
        out.append(RawFile(role=role, path=rel, href=quote(href), exists=target.is_file()))
    return out


def build_context(
    summary: Summary,
    previous: Summary | None,
    *,
    out_dir: Path,
    raw_dir: Path,
) -> dict[str, Any]:
    """Everything the template needs, derived once from the (normalised) summaries."""
    anchors = _Anchors()
    check_anchor = {c["id"]: anchors.make("check", c["id"]) for c in summary["checks"]}
    cal_anchor = [anchors.make("cal", c["name"]) for c in summary["calibration"]]
    target_anchor = [anchors.make("target", t["name"]) for t in summary["targets"]]
    fault_anchor = [anchors.make("fault", f["name"]) for f in summary["faults"]]
    run_anchor = [anchors.make("run", r["label"]) for r in summary["runs"]]

    # Every item the verdict may name, by each name it answers to (a check by its id and its
    # name), and the items that fail according to the data itself.
    lookup: dict[str, list[FailedItem]] = {}
    failing: list[FailedItem] = []

    def register(names: tuple[str, ...], item: FailedItem, failed: bool) -> None:
        for name in dict.fromkeys(names):
            lookup.setdefault(name, []).append(item)
        if failed:
            failing.append(item)

    for check in summary["checks"]:
        item = FailedItem(check["name"], "check", check_anchor[check["id"]], check["detail"], True, check["id"])
        register((check["id"], check["name"]), item, not check["ok"])
    for index, cal in enumerate(summary["calibration"]):
        detail = f"measured {fmt_num(cal['measured']['median'])} {cal['unit']}"
        if cal["expected"] is not None:
            detail += (
                f", expected {fmt_num(cal['expected']['value'])} {cal['unit']}"
                f" ± {fmt_num(cal['expected'].get('tolerance_pct', 0.0))} %"
            )
        register((cal["name"],), FailedItem(cal["name"], "calibration", cal_anchor[index], detail, True),
                 cal["status"] == "fail")
    for index, tgt in enumerate(summary["targets"]):
        unit = "×" if tgt["kind"] == "ratio" else (f" {tgt['unit']}" if tgt["unit"] else "")
        measured = "not measured" if tgt["measured"] is None else f"median {fmt_num(tgt['measured'])}{unit}"
        if tgt["interval"]:
            measured += f" [{fmt_num(tgt['interval'][0])}, {fmt_num(tgt['interval'][1])}], n={tgt['n']}"
        detail = (
            f"{tgt['verdict']}: {measured}, "
            f"required {'≥' if tgt['comparison'] == '>=' else '≤'} {fmt_num(tgt['bound'])}{unit}"
        )
        register((tgt["name"],), FailedItem(tgt["name"], "target", target_anchor[index], detail, True),
                 tgt["verdict"] == "MISSED" or (tgt["verdict"] == "INCONCLUSIVE"
                                                and bool(summary["verdict"]["strict"])))
    for index, fault in enumerate(summary["faults"]):
        detail = "not caught by any check" if not fault["caught"] else f"caught by {fault['by']}"
        register((fault["name"],), FailedItem(fault["name"], "fault", fault_anchor[index], detail, True),
                 not fault["caught"])
    for index, run in enumerate(summary["runs"]):
        register((run["label"],), FailedItem(run["label"], "run", run_anchor[index], "", True), False)

    # The verdict's list first, in its order; a name shared by several items stands for
    # every failing one of them (or the first, when none fails). Then what fails in the
    # data without being named.
    failed_items: list[FailedItem] = []
    shown: set[int] = set()
    for name in summary["verdict"]["failed"]:
        matches = lookup.get(name, [])
        if not matches:
            failed_items.append(FailedItem(name, "item", None, "", True))
            continue
        failing_ids = {id(f) for f in failing}
        for item in [m for m in matches if id(m) in failing_ids] or matches[:1]:
            if id(item) not in shown:
                shown.add(id(item))
                failed_items.append(item)
    failed_items.extend(
        FailedItem(item.name, item.kind, item.anchor, item.detail, False, item.ident)
        for item in failing
        if id(item) not in shown
    )

    verdict_ok = summary["verdict"]["ok"]
    inconsistency = None
    if verdict_ok and failing:
        inconsistency = (
            f"The run's verdict is PASS, but {len(failing)} item(s) below are marked as failing."
        )
    elif not verdict_ok and not failed_items:
        inconsistency = "The run's verdict is FAIL, but it names no failed item."

    stats = {
        "checks": (sum(c["ok"] for c in summary["checks"]), len(summary["checks"])),
        "targets": (sum(t["verdict"] == "MET" for t in summary["targets"]), len(summary["targets"])),
        "calibration": (
            sum(c["status"] == "pass" for c in summary["calibration"]),
            sum(c["status"] != "no-expectation" for c in summary["calibration"]),
        ),
        "faults": (sum(f["caught"] for f in summary["faults"]), len(summary["faults"])),
    }

    groups = [
        {
            "key": group,
            "title": GROUP_TITLES[group],
            "checks": [
                {
                    "check": check,
                    "anchor": check_anchor[check["id"]],
                    "table": _counterexample_table(check["counterexamples"][:MAX_COUNTEREXAMPLES]),
                    "shown": check["counterexamples"][:MAX_COUNTEREXAMPLES],
                    "hidden": max(0, len(check["counterexamples"]) - MAX_COUNTEREXAMPLES),
                }
                for check in summary["checks"]
                if check["group"] == group
            ],
        }
        for group in CHECK_GROUPS
    ]
    groups = [g for g in groups if g["checks"]]

    prev_targets = {t["name"]: t for t in previous["targets"]} if previous else {}
    prev_runs = {r["label"]: r for r in previous["runs"]} if previous else {}
    targets = [
        {
            "target": tgt,
            "anchor": target_anchor[index],
            "delta": delta(
                tgt["measured"],
                prev_targets[tgt["name"]]["measured"] if tgt["name"] in prev_targets else None,
                higher_is_better=tgt["comparison"] == ">=",
                samples=tgt.get("samples"),
                previous_samples=prev_targets[tgt["name"]].get("samples") if tgt["name"] in prev_targets else None,
            ),
        }
        for index, tgt in enumerate(summary["targets"])
    ]
    runs = []
    for index, run in enumerate(summary["runs"]):
        prev_run = prev_runs.get(run["label"])
        runs.append(
            {
                "run": run,
                "anchor": run_anchor[index],
                "lost": (
                    run["messages_published"] - run["messages_delivered"]
                    if "messages_published" in run and "messages_delivered" in run
                    else 0
                ),
                "throughput_delta": delta(
                    run["throughput_mib_s"],
                    prev_run["throughput_mib_s"] if prev_run else None,
                    higher_is_better=True,
                ),
                "p99_delta": delta(
                    run["latency_ns"].get("p99"),
                    prev_run["latency_ns"].get("p99") if prev_run else None,
                    higher_is_better=False,
                ),
            }
        )

    calibration = []
    for index, cal in enumerate(summary["calibration"]):
        deviation = None
        if cal["expected"] is not None and cal["expected"].get("value"):
            deviation = (cal["measured"]["median"] - cal["expected"]["value"]) / abs(cal["expected"]["value"]) * 100
        calibration.append({"item": cal, "anchor": cal_anchor[index], "deviation": deviation})

    chart_list = [
        ("Throughput", charts.throughput_chart(summary["runs"], previous["runs"] if previous else None)),
        ("Latency percentiles", charts.latency_percentile_chart(summary["runs"])),
        ("Latency CDF", charts.latency_cdf_chart(summary["runs"])),
    ]
    ablation_views = [
        {"ablation": ab, "anchor": anchors.make("ablation", ab["name"]), "svg": charts.ablation_chart(ab, index)}
        for index, ab in enumerate(summary["ablations"])
    ]
    calibration_svg = charts.calibration_chart(summary["calibration"])
    mutation = summary.get("mutation")
    if not mutation and (raw_dir / MUTATION_FILENAME).is_file():
        mutation = mutation_from_file(raw_dir / MUTATION_FILENAME)

    meta = summary["meta"]
    return {
        "s": summary,
        "previous": previous,
        "verdict_ok": verdict_ok,
        "failed_items": failed_items,
        "inconsistency": inconsistency,
        "stats": stats,
        "duration": duration(meta.get("started"), meta.get("finished")),
        "groups": groups,
        "fault_anchor": fault_anchor,
        "calibration": calibration,
        "calibration_svg": Markup(calibration_svg) if calibration_svg else None,
        "targets": targets,
        "runs": runs,
        "charts": [{"title": t, "svg": Markup(svg)} for t, svg in chart_list if svg],
        "ablations": [{**view, "svg": Markup(view["svg"]) if view["svg"] else None} for view in ablation_views],
        "raw_files": _raw_files(summary, out_dir, raw_dir),
        "mutation": mutation or None,
        "mutation_note": NOT_COMPUTED,
        "version": harness.__version__,
    }


# --------------------------------------------------------------------------- entry points


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=fmt_num, ns=fmt_ns, bytes=fmt_bytes, pct=fmt_pct, tojson_text=to_json, slug=slug
    )
    return env


def render_html(
    summary: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    *,
    out_dir: Path = Path("."),
    raw_dir: Path | None = None,
) -> str:
    """The report page for ``summary`` (validated here) as a string. ``previous`` is an
    earlier run's summary to compare with; ``raw_dir`` is where the raw JSON files named
    in ``files`` live (default ``out_dir``)."""
    current = validate_summary(dict(summary), source="summary")
    earlier = validate_summary(dict(previous), source="previous summary") if previous is not None else None
    context = build_context(current, earlier, out_dir=out_dir, raw_dir=raw_dir or out_dir)
    return _environment().get_template(TEMPLATE_NAME).render(**context)


def render_report(
    summary: Mapping[str, Any],
    out_dir: Path,
    previous: Mapping[str, Any] | None = None,
    *,
    filename: str = REPORT_FILENAME,
    raw_dir: Path | None = None,
) -> Path:
    """Write the self-contained report for ``summary`` to ``out_dir/filename`` (default
    ``index.html``), creating ``out_dir``; return the file's path.

    ``previous`` (an earlier run's summary) adds the earlier figures and % changes to the
    targets and runs tables. Raises :class:`harness.report.summary.SummaryError` when a
    summary is invalid."""
    out_dir = Path(out_dir)
    html = render_html(summary, previous, out_dir=out_dir, raw_dir=raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
