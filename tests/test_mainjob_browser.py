"""The main job's own report in a real headless Chromium, offline.

Runs ``cxl-harness run --quick`` (profile ci) for real, then opens the ``index.html`` it wrote
through the DevTools protocol with the network off (the client and the probe are those of
``test_report_browser.py``): no console error, no request but the page itself, the verdict
first and matching summary.json, every section laid out, every chart drawn with a real size.
The full-page screenshot is saved as ``reports/test-artifacts/mainjob-screenshot.png``.

Chromium comes from ``scripts/install-browser.sh``; without it the test skips locally and
fails in CI (``CI=true``).
"""

from __future__ import annotations

import json
import struct
from io import StringIO
from pathlib import Path

import pytest
from test_report_browser import (  # the shared CDP client, probe and browser fixture
    ARTIFACTS,
    SECTION_IDS,
    VIEWPORT_WIDTH,
    DevTools,
    browser,
    open_report,
    problems_in,
)

from harness.job.main import MainJobOptions, MainJobResult, run_main_job

__all__ = ["browser"]  # the fixture is used from here

SCREENSHOT = ARTIFACTS / "mainjob-screenshot.png"


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> MainJobResult:
    out = tmp_path_factory.mktemp("reports")
    return run_main_job(MainJobOptions(profile="ci", quick=True, out=out, command="cxl-harness run --quick"),
                        stream=StringIO())


def test_main_job_report_in_headless_chromium(browser: DevTools, main_run: MainJobResult) -> None:
    summary = json.loads((main_run.run_dir / "summary.json").read_text(encoding="utf-8"))
    page, events = open_report(browser, main_run.report, SCREENSHOT)

    # Offline and clean: nothing requested but the page, nothing logged.
    assert problems_in(events) == []
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requests == [main_run.report.as_uri()]

    # The verdict first, as summary.json has it.
    word = "PASS" if summary["verdict"]["ok"] else "FAIL"
    assert page["verdict"] == word.lower() and page["banner"] == word
    assert page["title"].startswith(f"{word} · cxl-harness report")
    assert page["bannerFontPx"] >= 40
    verdict_text = page["sections"]["verdict"]["text"]
    assert verdict_text.lstrip().startswith(word) and summary["verdict"]["summary"] in verdict_text

    # Every section is laid out and says what the run measured.
    for ident in SECTION_IDS:
        section = page["sections"][ident]
        assert section is not None, f"section #{ident} missing"
        assert section["w"] > 600 and section["h"] > 40, (ident, section)
        assert section["text"].strip(), ident
    assert summary["meta"]["host"] in page["sections"]["meta"]["text"]
    assert summary["meta"]["flush_instruction"] in page["sections"]["meta"]["text"]
    assert "emulated" in page["sections"]["device"]["text"]
    assert "order.dense-sequence" in page["sections"]["checks"]["text"]
    assert "pub_no_payload_flush" in page["sections"]["faults"]["text"]
    for target in summary["targets"]:
        assert target["name"] in page["sections"]["targets"]["text"]
    for name in ("summary.json", "pyperf.json", "benchmark.json"):
        assert name in page["sections"]["raw"]["text"]

    # Charts: throughput (Order 0 vs 2, both variants), latency percentiles and CDF, and one
    # per ablation; each drawn with a real size and many shapes.
    names = {chart["name"] for chart in page["charts"]}
    expected = {"throughput", "latency-percentiles", "latency-cdf"} | {
        f"ablation-{i}" for i in range(len(summary["ablations"]))}
    assert expected <= names, names
    assert len(summary["ablations"]) >= 5
    for chart in page["charts"]:
        assert chart["visible"], chart["name"]
        assert chart["w"] >= 300 and chart["h"] >= 150, chart
        assert chart["drawnW"] > 100 and chart["drawnH"] > 100, chart
        assert chart["shapes"] > 10, chart
    assert page["scrollWidth"] <= page["clientWidth"], (page["scrollWidth"], page["clientWidth"])
    assert page["brokenAnchors"] == []

    # The screenshot: a real full-page PNG.
    data = Path(SCREENSHOT).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == VIEWPORT_WIDTH and height > 3000
