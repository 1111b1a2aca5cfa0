"""The cxl-history JSON Lines reader/writer and from_arrays: malformed input is a clear
HistoryError naming the line (or row) and the offending value; round trips are exact."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HistoryError
from harness.history import History, check_history, loads_history, read_history, write_history

HEADER = '{"type":"header","format":"cxl-history","version":1,"order":2}\n'
PUB = ('{"type":"publish","t":1,"broker":0,"client":0,"client_batch_seq":0,"pbr_index":0,'
       '"outcome":"ok","msg_count":1,"size":64,"checksum":5}\n')
ORD = '{"type":"order","t":2,"seq":0,"broker":0,"client":0,"client_batch_seq":0,"pbr_index":0}\n'
DEL = ('{"type":"deliver","t":3,"subscriber":0,"position":0,"broker":0,"client":0,'
       '"client_batch_seq":0,"pbr_index":0,"checksum":5,"size":64}\n')
GOOD = HEADER + PUB + ORD + DEL


def err(text: str) -> str:
    with pytest.raises(HistoryError) as exc:
        loads_history(text)
    return str(exc.value)


def test_good_history_parses() -> None:
    h = loads_history(GOOD)
    assert (len(h.publishes), len(h.orders), len(h.deliveries)) == (1, 1, 1)
    assert check_history(h).ok


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", ["line 1", "empty file", "missing header"]),
        ("\n\n", ["empty file"]),
        (PUB + ORD, ["line 1", "missing header"]),
        (HEADER + PUB + ORD[:40], ["line 3", "not valid JSON", "truncated"]),
        (HEADER + PUB.replace('"broker":0', '"broker":"0"'), ["line 2", "'broker'", "'0'",
                                                             "not an integer"]),
        (HEADER + PUB.replace('"size":64', '"size":64.5'), ["line 2", "'size'", "64.5"]),
        (HEADER + PUB.replace('"size":64', '"size":true'), ["line 2", "'size'", "True"]),
        (HEADER + PUB.replace('"size":64', '"size":null'), ["line 2", "'size'", "None"]),
        (HEADER + PUB.replace('"ok"', '"maybe"'), ["line 2", "outcome", "'maybe'"]),
        (HEADER + PUB.replace('"checksum":5', '"checksum":-5'), ["line 2", "checksum", "-5"]),
        (HEADER + '{"type":"rollback","t":1}\n', ["line 2", "unknown event type 'rollback'"]),
        (HEADER + '{"t":1}\n', ["line 2", "no 'type'"]),
        (HEADER + '[1,2]\n', ["line 2", "expected a JSON object"]),
        (HEADER + PUB.replace('"size":64', '"size":64,"colour":"red"'),
         ["line 2", "unknown field 'colour'", "'red'"]),
        (HEADER + PUB.replace('"size":64,', ''), ["line 2", "lacks required field 'size'"]),
        (HEADER.replace('"order":2', '"order":3'), ["line 1", "unknown order level 3"]),
        (HEADER.replace('"order":2', '"order":"2"'), ["line 1", "unknown order level '2'"]),
        (HEADER.replace(',"order":2', ''), ["line 1", "lacks 'order'"]),
        (HEADER.replace('"version":1', '"version":3'), ["line 1", "unsupported", "version = 3"]),
        (HEADER.replace('cxl-history', 'jepsen'), ["line 1", "format = 'jepsen'"]),
        (HEADER.replace('}', ',"speed":3}'), ["line 1", "unknown field 'speed'"]),
        (HEADER + HEADER, ["line 2", "second header"]),
        (HEADER + PUB + ORD.replace('"t":2', '"t":0'), ["line 3", "t = 0", "before", "line 2"]),
        (HEADER + PUB + PUB.replace('"t":1', '"t":2'), ["line 3", "duplicate", "first at line 2"]),
        (HEADER + PUB + PUB.replace('"t":1', '"t":2').replace('"client_batch_seq":0',
                                                               '"client_batch_seq":1'),
         ["line 3", "duplicate", "pbr_index"]),
        (HEADER + PUB.replace('"pbr_index":0,', ''), ["line 2", "pbr_index", "required"]),
        (HEADER + PUB + '{"type":"ack","t":2,"level":3,"broker":0,"client":0,'
         '"client_batch_seq":0}\n', ["line 3", "level = 3"]),
        (HEADER + PUB + '{"type":"ack","t":2,"level":1,"broker":0}\n',
         ["line 3", "client", "required"]),
        (HEADER + PUB + '{"type":"commit","t":2,"committed_seq":1,"broker":0}\n',
         ["line 3", "broker", "absent at Order 2"]),
        (HEADER + PUB + '{"type":"ack","t":2,"level":1,"broker":0,"client":0,'
         '"client_batch_seq":0}\n', ["line 3", "no order events"]),
        (HEADER.replace('}', ',"brokers":1}') + PUB.replace('"broker":0', '"broker":3'),
         ["line 2", "broker = 3", "brokers = 1"]),
        (HEADER + PUB.replace('"broker":0', '"broker":-1'), ["line 2", "broker = -1"]),
        (HEADER + PUB.replace('"checksum":5', '"checksum":18446744073709551616'),
         ["line 2"]),
    ],
)
def test_malformed_input_names_line_and_value(text: str, pieces: list[str]) -> None:
    msg = err(text)
    for p in pieces:
        assert p in msg, (p, msg)


def test_order0_commit_needs_broker() -> None:
    text = HEADER.replace('"order":2', '"order":0') + PUB + ORD + \
        '{"type":"commit","t":3,"committed_seq":1}\n'
    assert "line 4" in err(text) and "required at Order 0" in err(text)


def test_extension_fields_blank_lines_and_key_order_are_accepted() -> None:
    text = (HEADER.replace('}', ',"x-rig":"lab3","source":"kafka"}') + "\n"
            + PUB.replace('"size":64', '"size":64,"x-note":"hi"')
            + '{"pbr_index":0,"client_batch_seq":0,"client":0,"broker":0,"seq":0,"t":2,'
              '"type":"order"}\n'
            + "   \n" + DEL)
    h = loads_history(text)
    assert h.header["x-rig"] == "lab3" and len(h.orders) == 1 and h.deliveries.ref[0] == 6
    assert check_history(h).ok


def test_big_checksums_and_large_values_round_trip(tmp_path: Path) -> None:
    text = GOOD.replace('"checksum":5', '"checksum":18446744073709551615')
    h = loads_history(text)
    assert int(h.publishes["checksum"][0]) == 2**64 - 1
    assert check_history(h).ok
    path = tmp_path / "h.jsonl"
    write_history(h, path)
    h2 = read_history(path)
    for name in ("publishes", "orders", "deliveries"):
        for col, arr in getattr(h, name).cols.items():
            assert np.array_equal(arr, getattr(h2, name).cols[col]), (name, col)
    buf = io.BytesIO()
    write_history(h2, buf)
    assert buf.getvalue() == path.read_bytes()


def test_read_missing_file_is_history_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot open history"):
        read_history(tmp_path / "nope.jsonl")


def test_chunked_conversion_keeps_line_numbers() -> None:
    # more rows than one conversion chunk; the bad value is in the second chunk
    from harness.history import jsonl

    n = jsonl.CHUNK + 10
    lines = [HEADER]
    for i in range(n):
        lines.append(PUB.replace('"t":1', f'"t":{i}').replace('"client_batch_seq":0',
                     f'"client_batch_seq":{i}').replace('"pbr_index":0', f'"pbr_index":{i}'))
    bad = jsonl.CHUNK + 5
    lines[bad] = lines[bad].replace('"size":64', '"size":"x"')
    msg = err("".join(lines))
    assert f"line {bad + 1}:" in msg and "'x'" in msg


# ---- from_arrays ------------------------------------------------------------------------
def pubs(**over: object) -> dict[str, object]:
    cols: dict[str, object] = {
        "t": [1, 2], "broker": [0, 1], "client": [0, 0], "client_batch_seq": [0, 1],
        "pbr_index": [0, 0], "outcome": ["ok", "unknown"], "msg_count": [1, 2],
        "size": [64, 128], "checksum": np.array([5, 2**64 - 1], dtype=np.uint64),
    }
    cols.update(over)
    return cols


def test_from_arrays_builds_and_checks() -> None:
    h = History.from_arrays(
        order=2, publishes=pubs(),  # type: ignore[arg-type]
        orders={"t": [3, 4], "seq": [0, 1], "broker": [1, 0], "client": [0, 0],
                "client_batch_seq": [1, 0], "pbr_index": [0, 0]},
        commits={"t": [5], "committed_seq": [2]},
        acks={"t": [6, 7], "level": [1, 2], "broker": [0, 1], "client": [0, -1],
              "client_batch_seq": [0, -1], "through_msgs": [-1, 2]},
        deliveries={4: {"t": [8, 9], "position": [0, 1], "broker": [1, 0], "client": [0, 0],
                        "client_batch_seq": [1, 0], "pbr_index": [0, 0],
                        "checksum": np.array([2**64 - 1, 5], dtype=np.uint64),
                        "size": [128, 64]}},
    )
    assert h.ref_kind == "row" and h.subscribers() == [4]
    rep = check_history(h)
    assert rep.ok, rep.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "pieces"),
    [
        ({"publishes": pubs(size=[64.0, 1.5])}, ["publishes", "'size'", "float64"]),
        ({"publishes": pubs(colour=[1, 2])}, ["unknown column 'colour'"]),
        ({"publishes": {k: v for k, v in pubs().items() if k != "size"}},
         ["missing column 'size'"]),
        ({"publishes": pubs(size=[64])}, ["'size' has 1 rows"]),
        ({"publishes": pubs(outcome=["ok", "perhaps"])}, ["publishes row 1", "'perhaps'"]),
        ({"publishes": pubs(broker=[0, -3])}, ["publishes row 1", "broker = -3"]),
        ({"publishes": pubs(checksum=[1, -1])}, ["publishes row 1", "checksum = -1"]),
        ({"publishes": pubs(), "order": 1}, ["unknown order level 1"]),
        ({"publishes": pubs(), "deliveries": {0: {"t": [2, 1], "position": [0, 1],
                                                   "broker": [0, 0], "client": [0, 0],
                                                   "client_batch_seq": [0, 0],
                                                   "pbr_index": [0, 0], "checksum": [5, 5],
                                                   "size": [64, 64]}}},
         ["deliveries[0] row 1", "t = 1"]),
    ],
)
def test_from_arrays_rejects_bad_columns(kwargs: dict[str, object], pieces: list[str]) -> None:
    args: dict[str, object] = {"order": 2}
    args.update(kwargs)
    with pytest.raises(HistoryError) as exc:
        History.from_arrays(**args)  # type: ignore[arg-type]
    for p in pieces:
        assert p in str(exc.value), (p, str(exc.value))


def test_documented_example_is_valid() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "history-format.md").read_text()
    start = doc.index("## Complete example")
    block = doc[doc.index("```json\n", start) + len("```json\n"): doc.index("```", doc.index(
        "```json\n", start) + 8)]
    h = loads_history(block)
    assert h.order == 2 and len(h.deliveries) == 6 and len(h.losses) == 1
    rep = check_history(h)
    assert rep.ok, rep.to_dict()
    # and the same example with subscriber 1's last delivery corrupted is flagged
    bad = block.rsplit("5555", 1)[0] + "5556" + block.rsplit("5555", 1)[1]
    assert check_history(loads_history(bad)).failed_ids() == ["payload-integrity"]



# ---- the vectorised block reader agrees with the line-by-line reader ----------------------
def _tables_equal(a: History, b: History) -> None:
    for name in ("publishes", "losses", "orders", "commits", "acks", "deliveries"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert np.array_equal(ta.ref, tb.ref), name
        for col, arr in ta.cols.items():
            assert arr.dtype == tb.cols[col].dtype, (name, col)
            assert np.array_equal(arr, tb.cols[col]), (name, col)


def _doc_example() -> str:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "history-format.md").read_text()
    start = doc.index("## Complete example")
    i = doc.index("```json\n", start) + len("```json\n")
    return doc[i:doc.index("```", i)]


@pytest.mark.parametrize("block", [64, 300, 1 << 20])
def test_block_reader_matches_line_reader(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.history import jsonl, parse_lines

    text = _doc_example()
    fast_calls: list[bool] = []
    real = jsonl._fast_block

    def spy(b: bytes) -> object:
        r = real(b)
        fast_calls.append(r is not None)
        return r

    monkeypatch.setattr(jsonl, "BLOCK", block)
    monkeypatch.setattr(jsonl, "_fast_block", spy)
    fast = loads_history(text)
    assert any(fast_calls), "the vectorised reader took no block"
    slow = parse_lines(text.encode().splitlines(keepends=True), source="<string>")
    _tables_equal(fast, slow)
    assert check_history(fast).to_dict() == check_history(slow).to_dict()


@pytest.mark.parametrize(
    ("change", "pieces"),
    [
        # an explicit null in an optional field is an error, not "absent"
        (lambda t: t.replace('"client_batch_seq":2,"pbr_index":2,"outcome"',
                             '"client_batch_seq":2,"pbr_index":null,"outcome"'),
         ["line 6", "'pbr_index'", "None", "not an integer"]),
        (lambda t: t.replace('"committed_seq":2}', '"committed_seq":2,"broker":null}'),
         ["line 10", "'broker'", "None"]),
        # a field of another event type
        (lambda t: t.replace('"committed_seq":2}', '"committed_seq":2,"seq":4}'),
         ["line 10", "unknown field 'seq'"]),
        (lambda t: t.replace('"checksum":2222,"size":64}', '"checksum":2222,"size":64,'
                             '"outcome":"ok"}', 1),
         ["line 15", "unknown field 'outcome'"]),
        (lambda t: t.replace('"outcome":"failed"', '"outcome":"lost"'), ["line 4", "'lost'"]),
        (lambda t: t.replace('"t":70', '"t":70.0'), ["line 8", "70.0", "not an integer"]),
        (lambda t: t.replace('"t":70', '"t":"70"'), ["line 8", "'70'", "not an integer"]),
        (lambda t: t.replace('"t":130', '"t":65'), ["line 14", "t = 65", "before", "line 13"]),
        (lambda t: t.replace('"size":64,"checksum":2222}', '"checksum":2222}', 1),
         ["line 3", "lacks required field 'size'"]),
        (lambda t: t.replace('\n{"type":"loss"', '\n{"type":"loss"} {"type":"loss"'),
         ["line 7"]),
        (lambda t: t.replace('"checksum":5555}', '"checksum":18446744073709551616}', 1),
         ["line 6", "checksum", "out of range"]),
        (lambda t: t.replace('"msg_count":2', '"msg_count":9223372036854775808'),
         ["line 2", "msg_count", "out of range"]),
    ],
)
def test_block_reader_leaves_bad_lines_to_the_line_reader(
    change: object, pieces: list[str]
) -> None:
    from harness.history import parse_lines

    text = change(_doc_example())  # type: ignore[operator]
    with pytest.raises(HistoryError) as fast:
        loads_history(text)
    with pytest.raises(HistoryError) as slow:
        parse_lines(text.encode().splitlines(keepends=True))
    assert str(fast.value) == str(slow.value)
    for p in pieces:
        assert p in str(fast.value), (p, str(fast.value))


def test_blank_and_indented_lines_keep_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.history import jsonl

    monkeypatch.setattr(jsonl, "BLOCK", 200)
    lines = _doc_example().splitlines(keepends=True)
    lines.insert(5, "\n")
    lines.insert(9, "   \n")
    lines[12] = "  " + lines[12]
    h = loads_history("".join(lines))
    assert check_history(h).ok
    text = "".join(lines).rsplit("5555", 1)
    bad = check_history(loads_history(text[0] + "5556" + text[1]))
    ex = bad.result("payload-integrity").anomaly.examples[0]  # type: ignore[union-attr]
    assert ex["delivered"]["line"] == len(lines)


def test_without_pyarrow_every_block_is_read_line_by_line(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.history import jsonl

    text = _doc_example()
    fast = loads_history(text)
    monkeypatch.setattr(jsonl, "_ARROW", False)  # as when pyarrow cannot be imported
    assert jsonl._fast_block(text.split("\n", 1)[1].encode()) is None
    _tables_equal(loads_history(text), fast)
