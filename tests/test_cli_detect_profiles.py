"""The ``detect`` and ``profiles`` sub-commands, driven through harness.cli.main."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.profiles import profile_dir

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"


def test_detect_human_devdax(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--sysfs-root", str(FIXTURES / "devdax")]) == 0
    out = capsys.readouterr().out
    assert "dax0.0" in out and "mode devdax" in out and "driver device_dax" in out
    assert "mem0" in out and "region0" in out and "node0" in out
    assert "Would use: devdax (/dev/dax0.0)" in out
    assert "Why: Found 1 dax device(s)" in out


def test_detect_human_system_ram_shows_hmat(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--sysfs-root", str(FIXTURES / "system-ram")]) == 0
    out = capsys.readouterr().out
    assert "CPU-less" in out and "HMAT latency r/w 250 ns / 270 ns" in out
    assert "Would use: numa (node 1)" in out


def test_detect_plain_says_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--sysfs-root", str(FIXTURES / "plain")]) == 0
    out = capsys.readouterr().out
    assert out.count("  none") == 3  # no dax, memdevs or regions
    assert "Would use: emulated (ordinary memory)" in out


def test_detect_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--sysfs-root", str(FIXTURES / "system-ram"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["choice"]["backend"] == "numa" and data["choice"]["node"] == 1
    assert [n["id"] for n in data["numa_nodes"]] == [0, 1]
    assert data["cxl_memdevs"][0]["ram_size"] == 64 << 30
    assert data["problems"] == []


def test_detect_explicit_node_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["detect", "--sysfs-root", str(FIXTURES / "system-ram"), "--device", "node:0", "--json"]
    assert main(argv) == 0
    choice = json.loads(capsys.readouterr().out)["choice"]
    assert (choice["backend"], choice["node"]) == ("numa", 0)
    assert choice["reason"].startswith("explicit NUMA node 0 requested")


def test_detect_missing_device_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--sysfs-root", str(FIXTURES / "devdax"), "--device", "/dev/dax4.1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cxl-harness detect: error: device /dev/dax4.1 not found")
    assert "fix:" in lines[0]


def test_detect_reports_garbled_attributes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "t"
    shutil.copytree(FIXTURES / "devdax", root, symlinks=True)
    (root / "sys/bus/cxl/devices/mem0/ram/size").write_text("0xZZ\n")
    assert main(["detect", "--sysfs-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ram unknown" in out
    assert "Unreadable or garbled attributes" in out
    assert "/sys/bus/cxl/devices/mem0/ram/size: '0xZZ' is not a number" in out


def test_profiles_lists_all_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines if line and not line.startswith("*")]
    assert names == ["ci", "cxl-devdax", "cxl-numa", "emulated-cxl", "emulated-cxl-pooled",
                     "emulated-cxl-switch", "emulated-noncoherent"]
    ci = next(line for line in lines if line.startswith("ci "))
    assert "ci *" in ci and "emulated" in ci and "coherent" in ci and " ok " in ci
    assert any("noncoherent-model" in line for line in lines)
    assert lines[-1] == "* default profile"


def test_profiles_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert all(e["valid"] and e["problems"] == [] for e in entries)
    assert [e["name"] for e in entries if e["default"]] == ["ci"]
    devdax = next(e for e in entries if e["name"] == "cxl-devdax")
    assert (devdax["backend"], devdax["coherence"]) == ("devdax", "coherent")


def test_profiles_check_mixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = profile_dir() / "emulated-cxl.yaml"
    doc = yaml.safe_load(good.read_text())
    doc["workload"]["brokers"] = 9
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert main(["profiles", "--check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "emulated-cxl" in out and " ok " in out
    assert "INVALID" in out
    assert f"profile {bad}: workload.brokers: 9 is above the maximum 8" in out
    assert "default profile" not in out  # --check lists only the given files


def test_profiles_check_json_and_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["profiles", "--check", str(missing), "--json"]) == 1
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["name"], entry["valid"], entry["backend"]) == ("missing", False, None)
    assert "cannot read the file" in entry["problems"][0]


def test_profiles_check_valid_file_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "--check", str(profile_dir() / "cxl-numa.yaml")]) == 0
    assert "cxl-numa" in capsys.readouterr().out
