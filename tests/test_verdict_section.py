"""The run's verdict counts what was decided: a calibration figure MISSED on its interval fails
the run; one the emulation could not show (INCONCLUSIVE, HOST-LIMITED) is listed and fails
only --strict; a check or a planted fault not caught fails it."""

from __future__ import annotations

from typing import Any

from harness.job.sections import verdict_section
from harness.results import Check


def _item(name: str, verdict: str | None, status: str = "fail") -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, "unit": "ns", "measured": {"median": 1.0}, "status": status}
    if verdict:
        item["verdict"] = verdict
    return item


def test_host_limited_and_inconclusive_are_listed_not_failed() -> None:
    cal = [_item("write", "HOST-LIMITED"), _item("read", "INCONCLUSIVE"), _item("load", "MET", "pass")]
    v = verdict_section([Check("c", "c", True, "")], [], cal, [], "here")
    assert v["ok"] and v["failed"] == []
    assert v["inconclusive"] == ["write", "read"]
    assert "1 of 3 calibration item(s) within tolerance" in v["summary"]
    none = verdict_section([], [], [_item("copy", None, "no-expectation")], [], "here")
    assert "no calibration target" in none["summary"]
    strict = verdict_section([], [], cal, [], "here", strict=True)
    assert not strict["ok"] and strict["failed"] == ["write", "read"]


def test_missed_figure_failed_check_and_missed_fault_fail() -> None:
    v = verdict_section([], [], [_item("fence", "MISSED")], [], "here")
    assert not v["ok"] and v["failed"] == ["fence"]
    # a median just outside the band with an interval that straddles it is not a failure
    assert verdict_section([], [], [_item("fence", "INCONCLUSIVE")], [], "here")["ok"]
    # items without a verdict (older summaries) are judged on their median status
    assert not verdict_section([], [], [_item("old", None)], [], "here")["ok"]
    v = verdict_section([Check("x", "x", False, "broken")], [], [], [{"name": "f", "caught": False}], "here")
    assert v["failed"] == ["x", "f"] and "1 of 1 checks failed" in v["summary"]
