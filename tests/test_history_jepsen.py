"""The Jepsen kafka-style history adapter (``check-history --from jepsen``): a hand-written
history in EDN and the same in JSON pass; planted defects in Jepsen terms (lost write,
inconsistent offsets, a value nobody sent, a re-read) are each flagged by the matching
check; malformed Jepsen input is a one-line error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli
from harness.errors import HistoryError
from harness.history import check_history, read_history
from harness.history.jepsen import jepsen_events, ops_from_text, parse_edn, read_jepsen

pytestmark = pytest.mark.checker
VALID = Path(__file__).resolve().parent.parent / "fixtures" / "histories" / "jepsen" / \
    "kafka-valid.edn"
FINAL_POLL = "[[:poll {1 [[0 10] [2 11]], 2 [[0 20] [1 22]]}]]"


@pytest.fixture(autouse=True)
def _register(monkeypatch: pytest.MonkeyPatch) -> None:
    if "harness.commands.check_history" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES",
                            (*cli.COMMAND_MODULES, "harness.commands.check_history"))


def variant(tmp_path: Path, old: str, new: str, extra: str = "") -> Path:
    text = VALID.read_text()
    assert old in text
    path = tmp_path / "h.edn"
    path.write_text(text.replace(old, new) + extra)
    return path


def test_edn_reader() -> None:
    forms = parse_edn('{:a 1, :b [1 -2 "x\\"y" nil true] :c #{1} :d #inst "2024"} ; c\n(1 2)')
    assert forms[0] == {"a": 1, "b": [1, -2, 'x"y', None, True], "c": [1], "d": "2024"}
    assert forms[1] == [1, 2]
    with pytest.raises(HistoryError, match="line 2: EDN: '\\[' closed by '}'"):
        parse_edn('{:a 1}\n{:b [1 2}')
    with pytest.raises(HistoryError, match="line 1: EDN: .*never closed"):
        parse_edn('{:a [1\n2')


def test_valid_history_converts_and_passes() -> None:
    h = read_jepsen(VALID, drained=True)
    assert h.order == 0 and h.brokers == 2 and h.header["x-jepsen-keys"] == [1, 2]
    assert sorted(h.subscribers()) == [0, 3]
    outcomes = sorted(int(x) for x in h.publishes["outcome"])
    assert outcomes == [0, 0, 0, 1, 2]  # three ok, one failed, one indeterminate
    rep = check_history(h)
    assert rep.ok, rep.to_dict()
    # offset 2 of key 1 follows offset 0 (offset 1 was a transaction marker): positions 0, 1
    d = h.deliveries
    key1 = [int(p) for p, b in zip(d["position"], d["broker"]) if b == 0]
    assert key1 == [0, 1]


def test_json_form_gives_the_same_history(tmp_path: Path) -> None:
    ops = ops_from_text(VALID.read_text())

    def plain(v: object) -> object:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    path = tmp_path / "h.json"
    path.write_text(json.dumps([plain(op) for op in ops]))
    a = jepsen_events(ops_from_text(path.read_text()), drained=True)
    b = jepsen_events(ops, drained=True)
    assert a == b
    lines = tmp_path / "h.jsonl"
    lines.write_text("\n".join(json.dumps(plain(op)) for op in ops))
    assert jepsen_events(ops_from_text(lines.read_text()), drained=True) == b


def failed(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    cli.main(["check-history", "--from", "jepsen", str(path), "--json", *extra])
    rep = json.loads(capsys.readouterr().out)
    return [c["check_id"] for c in rep["checks"] if c["status"] == "failed"]


def test_cli_valid_and_converted_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "conv.jsonl"
    assert cli.main(["check-history", "--from", "jepsen", str(VALID), "--drained",
                     "--converted", str(out)]) == 0
    assert "OK: no anomalies" in capsys.readouterr().out
    assert check_history(read_history(out)).ok
    assert cli.main(["check-history", str(VALID), "--drained"]) == 2
    assert "--from jepsen only" in capsys.readouterr().err


def test_lost_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the consumer assigned both keys never sees value 11, acknowledged at offset 2
    path = variant(tmp_path, FINAL_POLL, "[[:poll {1 [[0 10]], 2 [[0 20] [1 22]]}]]")
    assert failed(path, capsys) == []  # not drained: no loss can be claimed
    assert failed(path, capsys, "--drained") == ["no-lost-ack"]
    rep = check_history(read_jepsen(path, drained=True))
    ex = rep.result("no-lost-ack").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["batch"]["client_batch_seq"] == 11 and ex["missing_from_subscribers"] == [3]


def test_inconsistent_offsets_and_unknown_value(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # the consumer reads 99 at the offset where 11 was written; nobody sent 99
    path = variant(tmp_path, FINAL_POLL, "[[:poll {1 [[0 10] [2 99]], 2 [[0 20] [1 22]]}]]")
    assert failed(path, capsys) == ["unique-positions", "no-phantom"]
    rep = check_history(read_jepsen(path))
    ex = rep.result("unique-positions").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["stream"] == "broker 0" and ex["position"] == 1
    assert {v["batch"]["client_batch_seq"] for v in ex["views"]} == {11, 99}


def test_reread_is_a_nonmonotonic_poll(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    extra = ("{:index 14, :time 150, :type :invoke, :process 3, :f :poll, :value [[:poll]]}\n"
             "{:index 15, :time 160, :type :ok, :process 3, :f :poll, "
             ":value [[:poll {1 [[2 11]]}]]}\n")
    path = variant(tmp_path, "", "", extra)
    assert failed(path, capsys) == ["delivery-monotonic"]


def test_bad_jepsen_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.edn"
    bad.write_text("{:index 0, :type :invoke, :process 0, :value [[:send 1 5]]\n")
    assert cli.main(["check-history", "--from", "jepsen", str(bad)]) == 2
    assert "never closed" in capsys.readouterr().err
    path = variant(tmp_path, "[[:send 2 22]]}\n", "[[:send 2 20]]}\n")
    assert cli.main(["check-history", "--from", "jepsen", str(path), "--json"]) == 2
    cap = capsys.readouterr()
    assert "sent to key 2 twice" in json.loads(cap.out)["error"]["problem"]
