"""Every path that maps a region for a profile with a device model gives the region that model:
role processes of a multi-process run (each maps the region itself) and the checked build's
runs (the non-coherent profiles). The result reports what the model did, from the regions;
the ``ci`` profile and the model-less non-coherent profile report none.

The assertions are on counts the model keeps (operations padded, target time paid), not on
timings: they are non-zero exactly when the model is attached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main

SMALL_RUN = ["--brokers", "2", "--subscribers", "1", "--msg-size", "1024", "--batch-bytes", "16KiB",
             "--total-bytes", "512KiB", "--ring-slots", "64"]
MODEL_RUN = ["--brokers", "2", "--subscribers", "1", "--msg-size", "100", "--batch-bytes", "300",
             "--total-bytes", "30KB", "--ring-slots", "8"]


def _publish(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    rc = main(["publish", *args, "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _padded(model: dict[str, Any], kind: str) -> tuple[int, float]:
    ops = model["ops"][kind]
    return int(ops["ops"]), float(ops["target_ns"])


def test_role_processes_map_the_region_with_its_model(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    r = _publish(tmp_path, capsys, "--profile", "emulated-cxl", "--processes", *SMALL_RUN)
    assert r["config"]["processes"] == 3
    model = r["region"]["device_model"]
    assert model is not None and model["targets"]["flush_fence_ns"] == 300
    for kind in ("load", "flush_fence", "write"):
        ops, paid = _padded(model, kind)
        assert ops > 0 and paid > 0, (kind, model["ops"])
    per = {p["label"]: p for p in model["processes"]}
    assert set(per) == {"publishers", "scanners", "subscribers"}, list(per)
    for label, p in per.items():  # every role process mapped the region with the model
        assert p["targets"] == model["targets"], label
        assert sum(int(o["ops"]) for o in p["ops"].values()) > 0, (label, p["ops"])
    # the publishers' copies into the region went through the device's one write channel,
    # shared by the coordinator and every role process (not a bucket per process)
    assert _padded(per["publishers"], "write")[0] > 0
    assert model["shared_channels"] and all(p["shared_channels"] for p in per.values()), per
    # the totals are the coordinator's own operations plus every role process's
    for kind in ("load", "flush_fence", "write"):
        assert _padded(model, kind)[0] >= sum(_padded(p, kind)[0] for p in per.values())


def test_role_processes_on_ci_carry_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _publish(tmp_path, capsys, "--profile", "ci", "--processes", *SMALL_RUN)
    assert r["config"]["processes"] == 3 and r["region"]["device_model"] is None


def test_checked_runs_carry_the_profile_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _publish(tmp_path, capsys, "--profile", "emulated-cxl-pooled", *MODEL_RUN)
    model = r["region"]["device_model"]
    assert model is not None and model["targets"]["flush_fence_ns"] == 2200
    for kind in ("load", "flush_fence", "write"):
        ops, paid = _padded(model, kind)
        assert ops > 0 and paid > 0, (kind, model["ops"])
    # the checked build's model pads each fence to at least the device's 2.2 us
    fences, paid = _padded(model, "flush_fence")
    assert paid / fences >= 2200 * 0.99


def test_checked_runs_without_a_model_report_none(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = _publish(tmp_path, capsys, "--profile", "emulated-noncoherent", *MODEL_RUN)
    assert r["region"]["device_model"] is None
