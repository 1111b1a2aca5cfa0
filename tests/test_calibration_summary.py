"""Characterisation into the run summary and the report: every figure with its median, 95%
interval and n (harness.stats.Samples), the verdict against a device-model target, the host's
own capability, and both emulation errors. No measurement here: figures are built from
known samples, so every expected value is computed, not hard-coded."""

from __future__ import annotations

import copy
import html as html_lib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.characterize import Characterization, Figure
from harness.job.sections import calibration_items, emulation_section
from harness.report import SummaryError, render_html, validate_summary
from harness.report.render import fmt_num

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reports"


def _spread(centre: float, n: int = 11, step: float = 0.002) -> list[float]:
    return [centre * (1 + step * (i - n // 2)) for i in range(n)]


def _characterisation() -> Characterization:
    figs = [
        Figure("load_latency_ns", "load latency (pointer chase)", "ns", _spread(247.0),
               expected=250.0, tolerance_pct=10, target=True, host=_spread(23.0)),
        Figure("nt_copy_gbps_65536", "non-temporal copy, 64 KiB chunks", "GB/s", _spread(14.4),
               expected=21.0, tolerance_pct=10, target=True, host=_spread(15.3)),
        Figure("copy_gbps_256", "regular copy, 256 B chunks", "GB/s", _spread(9.9, n=7)),
    ]
    return Characterization("emulated-cxl", "emulated", {}, {"load_ns": 250.0}, 0, True, figs)


def test_calibration_items_carry_the_interval_n_verdict_and_host_capability() -> None:
    c = _characterisation()
    items = calibration_items(c)
    assert len(items) == len(c.figures)
    for item, f in zip(items, c.figures):
        st = f.stats
        assert item["measured"]["median"] == st.median
        assert item["measured"]["interval"] == list(st.interval)
        assert item["measured"]["runs"] == st.n and item["measured"]["coverage"] == st.coverage
        assert item["measured"]["interval"][0] < st.median < item["measured"]["interval"][1]
    met, limited, plain = items
    assert met["verdict"] == "MET" and met["expected"]["kind"] == "target"
    assert met["error_pct"] == pytest.approx((247.0 - 250.0) / 250.0 * 100)
    host = c.figures[1].host_stats
    assert host is not None
    assert limited["verdict"] == "HOST-LIMITED" and "host alone" in limited["verdict_reason"]
    assert limited["host_capability"] == {"median": host.median, "interval": list(host.interval),
                                          "n": host.n, "coverage": host.coverage}
    assert plain["expected"] is None and "verdict" not in plain and "host_capability" not in plain
    emu = emulation_section(c)["emulation_error"]
    assert emu["over_all_stated_figures_pct"] == pytest.approx(c.emulation_error_pct)
    assert emu["over_host_reachable_figures_pct"] == pytest.approx(1.2)
    assert emu["host_limited_figures"] == ["nt_copy_gbps_65536"]
    no_model = Characterization("ci", "emulated", {}, {}, 0, True, [c.figures[2]])
    assert emulation_section(no_model) == {}


def _summary_with(c: Characterization) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((FIXTURES / "summary-pass.json").read_text(encoding="utf-8"))
    summary["calibration"] = calibration_items(c)
    summary["profile"] = {**summary.get("profile", {}), **emulation_section(c)}
    return summary


def _section_text(page: str, ident: str) -> str:
    start = page.index(f'<section id="{ident}"')
    end = page.index("</section>", start)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page[start:end])))


def test_report_shows_intervals_host_capability_and_emulation_error() -> None:
    c = _characterisation()
    summary = _summary_with(c)
    validate_summary(summary)
    text = _section_text(render_html(summary), "calibration")
    for item in summary["calibration"]:
        lo, hi = item["measured"]["interval"]
        assert f"[{fmt_num(lo)}, {fmt_num(hi)}]" in text, item["name"]
    h = summary["calibration"][1]["host_capability"]
    assert (f"{fmt_num(h['median'])} [{fmt_num(h['interval'][0])}, {fmt_num(h['interval'][1])}], "
            f"n={fmt_num(h['n'])}") in text
    assert "HOST-LIMITED" in text and "MET" in text
    emu = summary["profile"]["emulation_error"]
    assert f"{fmt_num(emu['over_all_stated_figures_pct'])} % over all 2 stated figures" in text
    assert f"{fmt_num(emu['over_host_reachable_figures_pct'])} % over the figures this host can reach" in text


def test_summary_schema_refuses_a_malformed_interval_or_verdict() -> None:
    good = _summary_with(_characterisation())
    validate_summary(good)
    for path, value in ((("measured", "interval"), [1.0, 2.0, 3.0]), (("verdict",), "FINE"),
                        (("host_capability", "interval"), "wide")):
        bad = copy.deepcopy(good)
        node = bad["calibration"][1]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(SummaryError):
            validate_summary(bad)
