"""``cxl-harness check-history`` on the fixture files: exit 0 valid, 1 anomalies (output
names the check identifier), 2 bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli
from harness.history import CHECK_IDS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "histories"


@pytest.fixture(autouse=True)
def _register(monkeypatch: pytest.MonkeyPatch) -> None:
    # until the lead registers the module in cli.COMMAND_MODULES
    if "harness.commands.check_history" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES",
                            (*cli.COMMAND_MODULES, "harness.commands.check_history"))


@pytest.mark.parametrize("name", ["valid.jsonl", "valid-order0.jsonl", "valid-v1.jsonl",
                                  "valid-order5.jsonl",
                                  "client-order-inverted.jsonl"])
def test_valid_fixtures_exit_0(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-history", str(FIXTURES / name)]) == 0
    out = capsys.readouterr().out
    assert "OK: no anomalies" in out and "FAIL" not in out


@pytest.mark.parametrize("check_id", CHECK_IDS)
def test_defect_fixtures_exit_1_and_name_the_check(
    check_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / f"defect-{check_id}.jsonl"
    assert cli.main(["check-history", str(path)]) == 1
    out = capsys.readouterr().out
    fails = [ln for ln in out.splitlines() if ln.strip().startswith("FAIL")]
    assert len(fails) == 1 and check_id in fails[0], out
    assert "e.g." in out and '"line":' in out


def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "defect-no-phantom.jsonl"
    assert cli.main(["check-history", str(path), "--json", "--examples", "1"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is False and rep["order"] == 2
    failed = [c for c in rep["checks"] if c["status"] == "failed"]
    assert [c["check_id"] for c in failed] == ["no-phantom"]
    assert failed[0]["name"] == "G1a" and failed[0]["count"] == 1
    assert len(failed[0]["examples"]) == 1 and failed[0]["examples"][0]["batch"]["client"] == 99
    assert {c["check_id"] for c in rep["checks"]} == set(CHECK_IDS)


def test_order_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-history", str(FIXTURES / "valid.jsonl"), "--order", "2"]) == 0
    assert cli.main(["check-history", str(FIXTURES / "valid-order0.jsonl"), "--order", "0"]) == 0
    capsys.readouterr()
    assert cli.main(["check-history", str(FIXTURES / "valid.jsonl"), "--order", "3"]) == 2
    assert "unknown order level" in capsys.readouterr().err
    assert cli.main(["check-history", str(FIXTURES / "valid.jsonl"), "--order", "5"]) == 2
    assert "cannot be checked at order 5" in capsys.readouterr().err
    assert cli.main(["check-history", str(FIXTURES / "valid.jsonl"), "--order", "x"]) == 2
    assert cli.main(["check-history", str(FIXTURES / "valid.jsonl"), "--order", "0"]) == 2
    assert "cannot be checked at order 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "piece"),
    [
        ("", "line 1: empty file"),
        ('{"type":"header","format":"cxl-history","version":1,"order":7}\n',
         "unknown order level 7"),
        ('{"type":"header","format":"cxl-history","version":1,"order":2}\n{"type":"pub',
         "line 2: not valid JSON"),
        ('{"type":"header","format":"cxl-history","version":1,"order":2}\n'
         '{"type":"gossip","t":1}\n', "line 2: unknown event type 'gossip'"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, content: str, piece: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert cli.main(["check-history", str(path)]) == 2
    err = capsys.readouterr().err
    assert "check-history: error:" in err and piece in err, err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-history", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot open history" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "piece"),
    [
        ('{"type":"header","format":"cxl-history","version":1,"order":2}\n{"type":"pub',
         "line 2: not valid JSON"),
        ('{"type":"header","format":"cxl-history","version":1,"order":2}\n'
         '{"type":"publish","t":1,"broker":0,"client":0,"client_batch_seq":0,"pbr_index":0,'
         '"outcome":"ok","msg_count":1,"size":64,"checksum":18446744073709551616}\n',
         "out of range"),
    ],
)
def test_bad_input_with_json_prints_an_error_object(
    tmp_path: Path, content: str, piece: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert cli.main(["check-history", str(path), "--json"]) == 2
    cap = capsys.readouterr()
    obj = json.loads(cap.out)
    assert obj["ok"] is False and obj["error"]["kind"] == "bad-input"
    assert piece in obj["error"]["problem"] and obj["error"]["fix"]
    assert obj["source"] == str(path)
    assert "check-history: error:" in cap.err and piece in cap.err


def test_bad_order_flag_with_json_prints_an_error_object(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check-history", str(FIXTURES / "valid.jsonl"), "--order", "7",
                     "--json"]) == 2
    obj = json.loads(capsys.readouterr().out)
    assert "unknown order level" in obj["error"]["problem"]
