"""Charts of the HTML report, drawn with matplotlib (Agg, no pyplot state) and returned as
inline SVG strings ready to embed in the page.

Every function takes normalised summary sections (see :mod:`harness.report.summary`) and
returns ``None`` when there is nothing to draw, so the template can leave the chart out.
Output is deterministic for a given input: the SVG hash salt is fixed per chart and the
date metadata is dropped. Text is drawn as paths, so the SVG needs no fonts.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402  (after selecting the backend)

from harness.report.summary import Ablation, CalibrationItem, Run  # noqa: E402

# A colour-blind-safe palette (Okabe-Ito) and the two status colours of the page.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
PASS_COLOUR = "#1a7f37"
FAIL_COLOUR = "#cf222e"
NEUTRAL_COLOUR = "#6e7781"

_RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d0d7de",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "svg.fonttype": "path",
}

def _style(extra: dict[str, Any] | None = None) -> AbstractContextManager[None]:
    """The report's matplotlib style (plus ``extra`` rc settings) as a context."""
    params: Any = {**_RC, **(extra or {})}
    return matplotlib.rc_context(params)


_SVG_SIZE = re.compile(r'^(<svg\b[^>]*?)\s+width="[^"]*"\s+height="[^"]*"', re.S)


def _new_figure(width: float = 6.0, height: float = 3.4) -> Figure:
    with _style():
        fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


_ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')


def _scope_ids(svg: str, prefix: str) -> str:
    """Prefix every element id of one SVG (and every reference to it) so that several
    matplotlib SVGs, which all number their groups ``figure_1``, ``axes_1``..., can share
    one HTML document without duplicate ids."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))

    def rename(match: re.Match[str]) -> str:
        lead, ident = match.group(1), match.group(2)
        return f"{lead}{prefix}-{ident}" if ident in ids else match.group(0)

    return _ID_REF.sub(rename, svg)


def figure_to_svg(fig: Figure, *, name: str, title: str) -> str:
    """Serialise ``fig`` as an inline ``<svg>`` element (no XML prolog, no fixed size: it
    scales to its container) with an accessible title. ``name`` salts the element ids so
    several charts on one page never share an id."""
    buf = io.StringIO()
    with _style({"svg.hashsalt": f"cxl-harness-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "cxl-harness"})
    fig.clear()
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = _SVG_SIZE.sub(r"\1", text, count=1)
    text = _scope_ids(text, f"chart-{name}")
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace(
        "<svg ",
        f'<svg role="img" aria-label="{safe_title.replace(chr(34), "&quot;")}" data-chart="{name}" '
        'preserveAspectRatio="xMidYMid meet" ',
        1,
    )


def throughput_chart(runs: Sequence[Run], previous: Sequence[Run] | None = None) -> str | None:
    """Grouped bars: publish throughput per variant (and broker count), one bar per order
    level. With ``previous``, the earlier figure of the same run label is drawn as a hollow
    outline on each bar."""
    if not runs:
        return None
    with _style():
        broker_counts = {run.get("brokers") for run in runs}
        def group_of(run: Run) -> str:
            if len(broker_counts) > 1 and run.get("brokers") is not None:
                return f"{run['variant']}\n{run['brokers']} brokers"
            return run["variant"]

        groups: list[str] = []
        for run in runs:
            if group_of(run) not in groups:
                groups.append(group_of(run))
        orders = sorted({run["order"] for run in runs})
        prev_by_label = {run["label"]: run for run in previous or []}
        fig = _new_figure(6.0, 3.2 + 0.1 * len(groups))
        ax = fig.add_subplot()
        width = 0.8 / max(len(orders), 1)
        prev_xs: list[float] = []
        prev_ys: list[float] = []
        for o_index, order in enumerate(orders):
            xs: list[float] = []
            ys: list[float] = []
            for g_index, group in enumerate(groups):
                for run in runs:
                    if run["order"] == order and group_of(run) == group:
                        x = g_index - 0.4 + width * (o_index + 0.5)
                        xs.append(x)
                        ys.append(run["throughput_mib_s"])
                        prev = prev_by_label.get(run["label"])
                        if prev is not None:
                            prev_xs.append(x)
                            prev_ys.append(prev["throughput_mib_s"])
                        break
            bars = ax.bar(xs, ys, width * 0.92, label=f"Order {order}", color=PALETTE[o_index % len(PALETTE)])
            ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], padding=2, fontsize=7.5)
        if prev_xs:
            ax.bar(
                prev_xs, prev_ys, width * 0.92, fill=False, edgecolor="#24292f", linestyle="--",
                linewidth=1.0, label="previous run",
            )
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel("publish throughput (MiB/s)")
        ax.set_title("Throughput: Order 0 vs Order 2 per variant")
        ax.margins(y=0.15)
        ax.legend(
            frameon=False, ncols=len(orders) + (1 if prev_by_label else 0),
            loc="upper center", bbox_to_anchor=(0.5, -0.14 - (0.06 if len(broker_counts) > 1 else 0.0)),
        )
        ax.grid(axis="x", visible=False)
        return figure_to_svg(fig, name="throughput", title="Throughput per variant and order level")


def latency_percentile_chart(runs: Sequence[Run]) -> str | None:
    """Grouped bars of p50 / p99 / p99.9 end-to-end latency per run (log scale)."""
    with_latency = [run for run in runs if run.get("latency_ns")]
    if not with_latency:
        return None
    with _style():
        keys = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]
        fig = _new_figure(6.0, 3.4)
        ax = fig.add_subplot()
        width = 0.8 / len(keys)
        for k_index, (key, label) in enumerate(keys):
            xs = [r_index - 0.4 + width * (k_index + 0.5) for r_index in range(len(with_latency))]
            # A percentile the run did not record is left out (NaN draws no bar).
            ys = [float(cast(dict[str, float], run["latency_ns"]).get(key, math.nan)) for run in with_latency]
            ax.bar(xs, ys, width * 0.92, label=label, color=PALETTE[k_index])
        ax.set_xticks(range(len(with_latency)), [run["label"].replace("/", "\n") for run in with_latency])
        ax.set_yscale("log")
        ax.set_ylabel("latency (ns, log scale)")
        ax.set_title("Publish-to-delivery latency percentiles")
        ax.legend(frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        ax.margins(y=0.2)
        ax.grid(axis="x", visible=False)
        return figure_to_svg(fig, name="latency-percentiles", title="Latency percentiles per run")


def latency_cdf_chart(runs: Sequence[Run]) -> str | None:
    """Latency CDF lines (log-scaled latency axis) for runs that recorded one."""
    with_cdf = [run for run in runs if run.get("latency_cdf")]
    if not with_cdf:
        return None
    with _style():
        fig = _new_figure(6.0, 3.4)
        ax = fig.add_subplot()
        for r_index, run in enumerate(with_cdf):
            points = run["latency_cdf"]
            ax.plot(
                [max(p[0], 1e-3) for p in points], [p[1] for p in points],
                label=run["label"], color=PALETTE[r_index % len(PALETTE)], linewidth=1.6,
                drawstyle="steps-post",
            )
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("latency (ns, log scale)")
        ax.set_ylabel("fraction of messages")
        ax.set_title("Latency CDF")
        ax.legend(frameon=False, loc="lower right")
        return figure_to_svg(fig, name="latency-cdf", title="Latency cumulative distribution")


def _yerr(ys: Sequence[float], interval: Sequence[Sequence[float]] | None) -> list[list[float]] | None:
    """matplotlib's asymmetric error (below, above) from [low, high] intervals."""
    if not interval:
        return None
    return [[max(0.0, y - lo) for y, (lo, _) in zip(ys, interval)],
            [max(0.0, hi - y) for y, (_, hi) in zip(ys, interval)]]


def ablation_chart(ablation: Ablation, index: int) -> str | None:
    """One ablation: lines when x is numeric, grouped bars when x is categorical; each point
    is a median and its error bar the 95% interval of that median."""
    series = [s for s in ablation["series"] if s["y"]]
    if not series:
        return None
    with _style():
        fig = _new_figure(6.0, 3.4)
        ax = fig.add_subplot()
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for s in series for x in s["x"])
        unit = ablation.get("unit", "")
        if numeric:
            for s_index, s in enumerate(series):
                ax.errorbar(
                    [float(x) for x in s["x"]], s["y"], yerr=_yerr(s["y"], s.get("interval")), label=s["label"],
                    color=PALETTE[s_index % len(PALETTE)], marker="o", markersize=4, linewidth=1.6,
                    capsize=3, elinewidth=1.0,
                )
            xs_all = sorted({float(x) for s in series for x in s["x"]})
            if all(x.is_integer() for x in xs_all) and len(xs_all) <= 16:
                ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
        else:
            categories: list[str] = []
            for s in series:
                for x in s["x"]:
                    if str(x) not in categories:
                        categories.append(str(x))
            width = 0.8 / len(series)
            for s_index, s in enumerate(series):
                pos = {str(x): i for i, x in enumerate(s["x"])}
                xs = [c_index - 0.4 + width * (s_index + 0.5) for c_index, c in enumerate(categories) if c in pos]
                ys = [s["y"][pos[c]] for c in categories if c in pos]
                iv = s.get("interval")
                err = _yerr(ys, [iv[pos[c]] for c in categories if c in pos] if iv else None)
                ax.bar(
                    xs, ys, width * 0.92, yerr=err, capsize=3, label=s["label"],
                    color=PALETTE[s_index % len(PALETTE)], error_kw={"elinewidth": 1.0},
                )
            ax.set_xticks(range(len(categories)), categories)
            ax.grid(axis="x", visible=False)
        ax.set_xlabel(ablation.get("x_label", ""))
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.set_title(ablation["name"])
        ax.legend(frameon=False, loc="best")
        return figure_to_svg(fig, name=f"ablation-{index}", title=ablation["name"])


def calibration_chart(items: Sequence[CalibrationItem]) -> str | None:
    """Device characterisation against the profile: measured median / expected value per
    item (1.0 = exactly as expected), with the 95% interval of the median as whiskers (the
    min-max range in summaries that recorded none) and the profile's tolerance as a grey band.
    Items without an expectation are left out."""
    rows = [item for item in items if item.get("expected") and item["expected"].get("value")]  # type: ignore[union-attr]
    if not rows:
        return None
    with _style():
        fig = _new_figure(8.0, 1.0 + 0.45 * len(rows))
        ax = fig.add_subplot()
        hi_all = 1.0
        lo_all = 1.0
        for r_index, item in enumerate(rows):
            expected = item["expected"]
            assert expected is not None
            value = float(expected["value"])
            tol = float(expected.get("tolerance_pct", 0.0)) / 100.0
            y = len(rows) - 1 - r_index
            ax.barh(y, 2 * tol, left=1 - tol, height=0.6, color="#eaeef2", edgecolor="#afb8c1", linewidth=0.6)
            measured = item["measured"]
            ratio = float(measured["median"]) / value
            interval = measured.get("interval")  # the 95% interval; min-max in older summaries
            lo = float(interval[0] if interval else measured.get("min", measured["median"])) / value
            hi = float(interval[1] if interval else measured.get("max", measured["median"])) / value
            colour = {"pass": PASS_COLOUR, "fail": FAIL_COLOUR}.get(item["status"], NEUTRAL_COLOUR)
            ax.errorbar(
                [ratio], [y], xerr=[[ratio - lo], [hi - ratio]], fmt="o", color=colour, markersize=6,
                capsize=3, elinewidth=1.2,
            )
            ax.annotate(
                f"{measured['median']:,.4g} {item['unit']} (exp. {value:,.4g})", (hi, y),
                xytext=(6, 0), textcoords="offset points", va="center", fontsize=7.5, color="#24292f",
            )
            lo_all = min(lo_all, lo, 1 - tol)
            hi_all = max(hi_all, hi, 1 + tol)
        ax.axvline(1.0, color="#57606a", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(len(rows)), [item["name"] for item in reversed(rows)])
        span = hi_all - lo_all
        ax.set_xlim(max(0.0, lo_all - 0.1 * span), hi_all + 0.55 * span)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel("measured median / expected (grey: profile tolerance; whiskers: 95% interval, "
                      "min–max where none was recorded)")
        ax.set_title("Device characterisation vs profile expectations")
        ax.grid(axis="y", visible=False)
        return figure_to_svg(fig, name="calibration", title="Calibration: measured versus expected")
