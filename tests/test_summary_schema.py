"""The summary format is written once (harness/report/summary.schema.json); the TypedDicts the
code is typed with must say the same: the same keys, the same required keys, and the results'
to_dict/to_summary must validate."""

from __future__ import annotations

from typing import Any, NotRequired, Required, get_origin, get_type_hints

import pytest

from harness.report import summary as s
from harness.results import Check, TargetCheck
from harness.stats import Samples, Verdict

# TypedDict -> where its object sits in the schema
PLACES: list[tuple[Any, tuple[str, ...]]] = [
    (s.Summary, ()),
    (s.Meta, ("meta",)),
    (s.Verdict, ("verdict",)),
    (s.Device, ("device",)),
    (s.Profile, ("profile",)),
    (s.CalibrationItem, ("calibration", "*")),
    (s.Measured, ("calibration", "*", "measured")),
    (s.Expected, ("calibration", "*", "expected")),
    (s.Check, ("checks", "*")),
    (s.Run, ("runs", "*")),
    (s.Latency, ("runs", "*", "latency_ns")),
    (s.Ablation, ("ablations", "*")),
    (s.Series, ("ablations", "*", "series", "*")),
    (s.Target, ("targets", "*")),
    (s.Fault, ("faults", "*")),
]


def _required(typed: Any) -> set[str]:
    """Required keys of a TypedDict written with ``from __future__ import annotations`` (whose
    own __required_keys__ cannot see NotRequired/Required in string annotations)."""
    hints = get_type_hints(typed, include_extras=True)
    out = set()
    for key, hint in hints.items():
        origin = get_origin(hint)
        if origin is NotRequired:
            continue
        if origin is Required or typed.__total__:
            out.add(key)
    return out


def _node(path: tuple[str, ...]) -> dict[str, Any]:
    node: dict[str, Any] = s.SUMMARY_SCHEMA
    for step in path:
        node = node["items"] if step == "*" else node["properties"][step]
    return node


@pytest.mark.parametrize(("typed", "path"), PLACES, ids=[t.__name__ for t, _ in PLACES])
def test_typeddict_matches_the_schema(typed: Any, path: tuple[str, ...]) -> None:
    node = _node(path)
    assert set(typed.__annotations__) == set(node["properties"]), typed.__name__
    required = set(node.get("required", []))
    if typed is s.Summary:  # the loaded form: normalize_summary fills every other section
        assert _required(typed) == required | set(s._DEFAULT_SECTIONS)
    else:
        assert _required(typed) == required, typed.__name__


def test_enums_of_the_schema_are_the_codes() -> None:
    assert _node(("checks", "*", "group"))["enum"] == list(s.CHECK_GROUPS)
    assert _node(("calibration", "*", "status"))["enum"] == list(s.CALIBRATION_STATUSES)


def test_the_schema_is_the_file() -> None:
    import json
    from importlib.resources import files

    text = files("harness.report").joinpath("summary.schema.json").read_text(encoding="utf-8")
    assert json.loads(text) == s.SUMMARY_SCHEMA
    assert s.SUMMARY_SCHEMA["$id"] == s.SCHEMA_ID


def test_result_objects_validate() -> None:
    check = Check("x.y", "a check", False, "why", [{"at": 1}], group="ordering")
    target = TargetCheck("t", "a target", "ratio", 0.9, "min", "test", None,
                         Samples.of([1.0, 1.01, 0.99, 1.02, 0.98, 1.0]), Verdict.MET, "above")
    doc = {"schema": s.SCHEMA_ID, "verdict": {"ok": False}, "checks": [check.to_dict()],
           "targets": [target.to_summary()]}
    assert s.schema_errors(doc) == []
    bad = {**doc, "checks": [{**check.to_dict(), "group": "nowhere"}]}
    assert s.schema_errors(bad)
