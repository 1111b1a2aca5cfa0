"""Trace rules over traces recorded elsewhere: each rule fires on a planted defect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checked import ModelConfig, run_checked, small_config
from harness.cli import main
from harness.errors import HistoryError
from harness.tracecheck import (TraceEvent, check_events, check_trace_file, events_from_checked_trace,
                                write_jsonl_trace)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "traces"

# A correct publication by agent 0 of a two-line record (lines 0-1, token at 120), read by
# agent 1 after invalidating; both flush+fence discipline and reader discipline are right.
CLEAN = [
    TraceEvent(0, "store", 0, 64), TraceEvent(0, "store", 64, 56), TraceEvent(0, "flush", 0, 64),
    TraceEvent(0, "flush", 64, 64), TraceEvent(0, "fence", 0, 0), TraceEvent(0, "publish", 0, 128),
    TraceEvent(0, "flush", 64, 64), TraceEvent(0, "fence", 0, 0),
    TraceEvent(1, "invalidate", 0, 128), TraceEvent(1, "consume", 120, 8), TraceEvent(1, "load", 0, 128),
]


def _rules(events: list[TraceEvent]) -> set[str]:
    return {f.rule for f in check_events(4096, events).findings}


def _without(i: int) -> list[TraceEvent]:
    return CLEAN[:i] + CLEAN[i + 1:]


def test_clean_trace_has_no_findings() -> None:
    assert _rules(CLEAN) == set()


@pytest.mark.parametrize("events, rule", [
    (_without(2), "unflushed_before_publish"),                   # line 0 never flushed
    (_without(4), "unfenced_before_publish"),                    # header fence removed
    ([TraceEvent(0, "nt_store", 0, 64), CLEAN[1], CLEAN[3]] + CLEAN[5:], "nt_unfenced_before_publish"),
    (CLEAN[:5] + [TraceEvent(0, "publish", 0, 128), TraceEvent(0, "store", 0, 8),
                  TraceEvent(0, "flush", 0, 64), TraceEvent(0, "flush", 64, 64), TraceEvent(0, "fence", 0, 0),
                  TraceEvent(0, "fence", 0, 0), TraceEvent(0, "publish", 256, 64)], "body_after_token"),
    (_without(8), "read_without_invalidate"),
    (CLEAN + [TraceEvent(1, "store", 8, 8)], "two_writers_one_line"),
    (CLEAN[:9] + [TraceEvent(1, "load", 0, 128)], "record_read_without_token"),
    (_without(6), "publish_not_flushed"),
    (CLEAN[:1] + [TraceEvent(0, "store", 0, 8)] + CLEAN[1:], "overwrite_before_flush"),
    (CLEAN[:3] + [TraceEvent(0, "flush", 0, 64)] + CLEAN[3:], "redundant_flush"),
    (CLEAN + [TraceEvent(0, "flush", 1024, 64)], "clean_flush"),
    (CLEAN + [TraceEvent(0, "fence", 0, 0)], "empty_fence"),
    (CLEAN + [TraceEvent(0, "store", 2048, 8)], "unpersisted_at_end"),
])
def test_each_rule_fires_on_its_planted_defect(events: list[TraceEvent], rule: str) -> None:
    assert rule in _rules(events)


def test_pmemcheck_log_is_accepted() -> None:
    report = check_trace_file(FIX / "pmemcheck-missing-flush.log")
    assert report.events == 9
    assert [f.rule for f in report.errors] == ["unpersisted_at_end"]
    assert {f.rule for f in report.findings} >= {"redundant_flush", "empty_fence"}


def test_exported_trace_of_a_faulty_run_replays_to_the_same_rule(tmp_path: Path) -> None:
    run_checked(small_config(seed=2), fault="pub_no_hdr_fence",
                model=ModelConfig(keep_trace=True, trace_capacity=500_000))
    events = list(events_from_checked_trace())
    assert events
    path = tmp_path / "t.jsonl"
    write_jsonl_trace(path, max(e.off + e.size for e in events) + 4096, events)
    rules = {f.rule for f in check_trace_file(path).errors}
    assert "unfenced_before_publish" in rules


def test_cli_check_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clean.jsonl"
    write_jsonl_trace(path, 4096, CLEAN)
    assert main(["check-trace", str(path)]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["check-trace", str(FIX / "pmemcheck-missing-flush.log"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


@pytest.mark.parametrize("content, message", [
    ("", "empty trace"),
    ('{"format": "other"}\n', "expected a header"),
    ('{"format": "cxl-trace", "version": 1, "region_size": 4096}\n{"op": "jump", "off": 0}\n',
     "unknown op 'jump'"),
    ('{"format": "cxl-trace", "version": 1, "region_size": 4096}\n{"op": "store", "off": 5000}\n',
     "outside the region"),
    ('{"format": "cxl-trace", "version": 1, "region_size": 4096}\nnot json\n', ":2: not JSON"),
    ("|STORE;0xzz;0x1;0x8|", "malformed pmemcheck entry"),
])
def test_bad_traces(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.trace"
    path.write_text(content)
    with pytest.raises(HistoryError, match=message):
        check_trace_file(path)
    assert main(["check-trace", str(path)]) == 2
