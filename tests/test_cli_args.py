"""The command line's argument checks beyond the bad-inputs table: the long-run question on a
terminal, notes instead of silent changes, output checks that leave files alone, the list of
bench comparisons kept in step with the suite, and the exit codes of the error paths."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands import _args
from harness.commands.bench import COMPARISONS
from harness.errors import ConfigError, HarnessError

ROOT = Path(__file__).resolve().parent.parent
HEADER = '{"type":"header","format":"cxl-history","version":1,"order":2,"brokers":1,"drained":true}\n'


@pytest.mark.parametrize("text,value", [("0", 0), ("18446744073709551615", (1 << 64) - 1), (" 7 ", 7)])
def test_int_range_accepts_the_bounds(text: str, value: int) -> None:
    assert _args.int_range(0, (1 << 64) - 1)(text) == value


@pytest.mark.parametrize("text", ["-1", "18446744073709551616", "1e3", "0x10", "", "seven"])
def test_int_range_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(fix: use 0\.\.18446744073709551615\)"):
        _args.int_range(0, (1 << 64) - 1)(text)


@pytest.mark.parametrize("text,ok", [("2", True), ("256", True), ("2147483648", True), ("1", False),
                                     ("3", False), ("4294967296", False), ("96", False)])
def test_ring_slots(text: str, ok: bool) -> None:
    if ok:
        assert _args.ring_slots(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            _args.ring_slots(text)


def test_ring_slots_not_a_power_of_two_names_the_neighbours() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"96 is not a power of two \(fix: use 64 or 128\)"):
        _args.ring_slots("96")


def test_suggestions_are_close_matches() -> None:
    with pytest.raises(ConfigError) as e:
        _args.check_names("--only", ["order2_vs_ordr0"], COMPARISONS, "comparison")
    assert "did you mean 'order2_vs_order0'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _args.check_names("--only", ["zzzz"], COMPARISONS, "comparison")
    assert "did you mean" not in str(e.value) and "choose one of: fence_amortisation" in str(e.value)
    _args.check_names("--only", ["order2_vs_order0"], COMPARISONS, "comparison")  # known: no error


def test_bench_comparisons_are_the_suites_names() -> None:
    """COMPARISONS must be exactly what run_suite selects with on("...")."""
    source = (ROOT / "harness" / "benchmarks.py").read_text()
    suite = source[source.index("def run_suite("):]
    assert tuple(re.findall(r'if on\("(\w+)"\)', suite)) == COMPARISONS


# ---- the long-run question


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    monkeypatch.setattr("sys.stdin", _Tty(answer))
    monkeypatch.setattr("sys.stderr", _Tty())


def test_long_run_refused_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # an answer on a pipe is not consent
    with pytest.raises(ConfigError, match=r"would take at least 2\.0 hours .*--yes"):
        _args.confirm_long_run("publish", 7200, False, "the run")


@pytest.mark.parametrize("answer,runs", [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False), ("", False)])
def test_long_run_asks_on_a_terminal(monkeypatch: pytest.MonkeyPatch, answer: str, runs: bool) -> None:
    _terminal(monkeypatch, answer)
    if runs:
        _args.confirm_long_run("publish", 7200, False, "the run")
    else:
        with pytest.raises(HarnessError, match="not started"):
            _args.confirm_long_run("publish", 7200, False, "the run")


def test_long_run_with_yes_or_short_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    _args.confirm_long_run("publish", 1e9, True, "the run")
    _args.confirm_long_run("publish", 3599, False, "the run")


def test_estimate_is_a_lower_bound_from_bytes_or_batches() -> None:
    assert _args.estimated_seconds(16 << 30, 0) == pytest.approx(1.0)
    assert _args.estimated_seconds(0, 20_000_000) == pytest.approx(1.0)
    assert _args.estimated_seconds(100 << 40, 1) > _args.LONG_RUN_S


def test_publish_long_run_refused_before_any_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    region = tmp_path / "region.bin"
    assert main(["publish", "--total-bytes", "100TiB", "--device", str(region)]) == 2
    assert "would take at least" in capsys.readouterr().err
    assert not region.exists()


# ---- nothing changed silently


def test_batch_not_a_multiple_of_the_message_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--msg-size", "1000", "--batch-bytes", "4096", "--total-bytes", "256KiB",
                 "--brokers", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: a batch holds 4 message(s) of 1000 bytes: 4000 of the 4096 bytes of --batch-bytes" in err


def test_history_with_header_and_no_events_is_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.jsonl"
    f.write_text(HEADER)
    assert main(["check-history", str(f)]) == 2
    out = capsys.readouterr()
    assert "PASS" not in out.out and "no events" in out.err


def test_history_with_events_still_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-history", str(ROOT / "fixtures" / "histories" / "valid.jsonl")]) == 0
    assert "OK: no anomalies" in capsys.readouterr().out


def test_detect_on_a_real_tree_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--sysfs-root", str(ROOT / "fixtures" / "sysfs" / "devdax")]) == 0
    assert "Would use: devdax" in capsys.readouterr().out


# ---- output checks


def test_existing_output_file_is_checked_without_being_changed(tmp_path: Path) -> None:
    f = tmp_path / "result.json"
    f.write_text("old\n")
    before = os.stat(f)
    _args.check_output_file(str(f), "--json")
    after = os.stat(f)
    assert f.read_text() == "old\n" and before.st_mtime_ns == after.st_mtime_ns
    assert os.listdir(tmp_path) == ["result.json"]


def test_output_file_named_through_a_link_is_checked_without_change(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("t\n")
    (tmp_path / "link.json").symlink_to(tmp_path / "target")
    _args.check_output_file(str(tmp_path / "link.json"), "--json")  # the user's own link: fine
    assert (tmp_path / "target").read_text() == "t\n"
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nodir" / "x")
    with pytest.raises(ConfigError, match="directory .*nodir does not exist|cannot"):
        _args.check_output_file(str(tmp_path / "dangling.json"), "--json")
    assert sorted(os.listdir(tmp_path)) == ["dangling.json", "link.json", "target"]


def test_output_dir_nested_new_path_is_fine_and_not_created(tmp_path: Path) -> None:
    _args.check_output_dir(tmp_path / "a" / "b" / "c", "--out")
    assert os.listdir(tmp_path) == []


def test_output_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        _args.check_output_dir(tmp_path / "f" / "sub", "--out")


def test_publish_json_checked_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run does not start (no region is made) when its result could not be written."""
    region = tmp_path / "region.bin"
    assert main(["publish", "--device", str(region), "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert not region.exists()
    assert "--json" in capsys.readouterr().err


def test_publish_json_written(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["publish", "--total-bytes", "256KiB", "--brokers", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["brokers"] == 1


# ---- exit codes of the error paths


def test_internal_error_is_one_line_exit_70(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import harness.commands.profiles as profiles

    def boom(args: argparse.Namespace) -> int:
        raise ValueError("planted")

    monkeypatch.setattr(profiles, "run", boom)
    monkeypatch.delenv("CXL_HARNESS_TRACEBACK", raising=False)
    assert main(["profiles"]) == 70  # main builds its parser on each call: it finds the planted run
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cxl-harness profiles: internal error: ValueError: planted (fix: this is a bug in the "
                   "harness; rerun with CXL_HARNESS_TRACEBACK=1 and report the traceback)"]
    monkeypatch.setenv("CXL_HARNESS_TRACEBACK", "1")
    with pytest.raises(ValueError, match="planted"):
        main(["profiles"])
