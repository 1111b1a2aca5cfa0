"""Discovery on fake sysfs trees: inventory, back-end choice and reason, tolerance of odd trees."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.discovery import discover, format_bytes
from harness.errors import DeviceError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"
GiB = 1 << 30


def copy_tree(name: str, dest: Path) -> Path:
    root = dest / name
    shutil.copytree(FIXTURES / name, root, symlinks=True)
    return root


def add_dax(root: Path, name: str, size: int, driver: str = "device_dax", node: int = 1) -> None:
    d = root / "sys/bus/dax/devices" / name
    d.mkdir(parents=True)
    (d / "size").write_text(f"{size}\n")
    (d / "align").write_text("2097152\n")
    (d / "target_node").write_text(f"{node}\n")
    drivers = root / "sys/bus/dax/drivers" / driver
    drivers.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../drivers/{driver}", d / "driver")


def test_devdax_tree_inventory_and_choice() -> None:
    d = discover(FIXTURES / "devdax")
    (dax,) = d.dax_devices
    assert (dax.name, dax.path, dax.size, dax.align) == ("dax0.0", "/dev/dax0.0", 16 * GiB, 2 << 20)
    assert (dax.driver, dax.mode, dax.numa_node) == ("device_dax", "devdax", 1)
    (mem,) = d.cxl_memdevs
    assert (mem.name, mem.ram_size, mem.pmem_size) == ("mem0", 16 * GiB, 0)
    assert (mem.serial, mem.numa_node, mem.firmware_version) == ("0x5a3c0001", 0, "1.0.3")
    (region,) = d.cxl_regions  # decoder0.0 is ignored
    assert (region.name, region.size, region.mode) == ("region0", 16 * GiB, "ram")
    assert (region.interleave_ways, region.interleave_granularity) == (1, 256)
    assert [(n.id, n.cpu_less, n.mem_total) for n in d.numa_nodes] == [(0, False, 32 * GiB)]
    assert d.problems == ()
    assert (d.choice.backend, d.choice.device, d.choice.node) == ("devdax", "/dev/dax0.0", 1)
    assert "first dax device in devdax mode" in d.choice.reason
    assert "16 GiB" in d.choice.reason and "align 2 MiB" in d.choice.reason


def test_system_ram_tree_chooses_cpu_less_node() -> None:
    d = discover(FIXTURES / "system-ram")
    (dax,) = d.dax_devices
    assert (dax.driver, dax.mode, dax.numa_node) == ("kmem", "system-ram", 1)
    node0, node1 = d.numa_nodes
    assert node0.cpu_less is False and node0.cpulist == "0-31"
    assert node1.cpu_less is True and node1.mem_total == 64 * GiB
    assert (node1.read_latency_ns, node1.write_latency_ns) == (250, 270)
    assert (node1.read_bandwidth_mbps, node1.write_bandwidth_mbps) == (22000, 21000)
    assert (d.choice.backend, d.choice.device, d.choice.node) == ("numa", None, 1)
    reason = d.choice.reason
    assert "no devdax-mode device" in reason and "first CPU-less node" in reason
    assert "onlined from dax0.0 by kmem" in reason and "250 ns" in reason


def test_plain_tree_falls_back_to_emulation() -> None:
    d = discover(FIXTURES / "plain")
    assert d.dax_devices == () and d.cxl_memdevs == () and d.cxl_regions == ()
    assert [(n.id, n.cpulist, n.mem_total) for n in d.numa_nodes] == [(0, "0-7", 16 * GiB)]
    assert (d.choice.backend, d.choice.device, d.choice.node) == ("emulated", None, None)
    assert "0 dax device(s)" in d.choice.reason and "emulated" in d.choice.reason


def test_missing_root_is_emulation_not_a_crash(tmp_path: Path) -> None:
    d = discover(tmp_path / "nothing-here")
    assert d.numa_nodes == () and d.choice.backend == "emulated"


def test_to_dict_is_json_ready() -> None:
    data = json.loads(json.dumps(discover(FIXTURES / "system-ram").to_dict()))
    assert data["choice"] == {
        "backend": "numa",
        "device": None,
        "node": 1,
        "reason": discover(FIXTURES / "system-ram").choice.reason,
    }
    assert [n["cpu_less"] for n in data["numa_nodes"]] == [False, True]
    assert data["dax_devices"][0]["mode"] == "system-ram"


# --- explicit devices ------------------------------------------------------------------------


def test_explicit_devdax_path() -> None:
    c = discover(FIXTURES / "devdax", "/dev/dax0.0").choice
    assert (c.backend, c.device, c.node) == ("devdax", "/dev/dax0.0", 1)
    assert c.reason.startswith("explicit device /dev/dax0.0 requested")


def test_explicit_devdax_only_in_dev(tmp_path: Path) -> None:
    root = copy_tree("devdax", tmp_path)
    (root / "dev/dax3.0").touch()
    c = discover(root, "/dev/dax3.0").choice
    assert (c.backend, c.device, c.node) == ("devdax", "/dev/dax3.0", None)
    assert "only the device node" in c.reason


def test_explicit_devdax_missing_names_path_and_probes() -> None:
    with pytest.raises(DeviceError) as exc:
        discover(FIXTURES / "devdax", "/dev/dax1.0")
    msg = str(exc.value)
    assert "/dev/dax1.0 not found" in msg
    assert "sys/bus/dax/devices/dax1.0" in msg and "dev/dax1.0" in msg
    assert "present: /dev/dax0.0" in msg


def test_explicit_devdax_bound_to_kmem_is_refused() -> None:
    with pytest.raises(DeviceError, match=r"bound to kmem .* node 1") as exc:
        discover(FIXTURES / "system-ram", "/dev/dax0.0")
    assert "node:1" in str(exc.value) and "daxctl reconfigure-device" in str(exc.value)


def test_explicit_numa_node() -> None:
    c = discover(FIXTURES / "system-ram", "node:1").choice
    assert (c.backend, c.device, c.node) == ("numa", None, 1)
    assert "CPU-less" in c.reason and "64 GiB" in c.reason


@pytest.mark.parametrize(
    ("device", "expected"),
    [("node:7", r"NUMA node 7 not found.*node7.*present: \[0, 1\]"), ("node:x", "'x' is not a node number")],
)
def test_explicit_bad_numa_node(device: str, expected: str) -> None:
    with pytest.raises(DeviceError, match=expected):
        discover(FIXTURES / "system-ram", device)


def test_explicit_file_path(tmp_path: Path) -> None:
    new = tmp_path / "region.bin"
    c = discover(FIXTURES / "plain", str(new)).choice
    assert (c.backend, c.device) == ("file", str(new))
    assert "new file (will be created)" in c.reason
    new.write_bytes(b"\0" * 4096)
    assert "existing file" in discover(FIXTURES / "plain", str(new)).choice.reason


def test_explicit_file_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="does not exist"):
        discover(FIXTURES / "plain", str(tmp_path / "no" / "such" / "f"))


def test_explicit_block_device_is_refused() -> None:
    with pytest.raises(DeviceError, match="/dev/sda is neither a devdax device"):
        discover(FIXTURES / "plain", "/dev/sda")


# --- ordering and odd trees ------------------------------------------------------------------


def test_natural_order_and_unusable_devdax_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    add_dax(root, "dax10.0", 8 * GiB)
    add_dax(root, "dax2.0", 4 * GiB)
    add_dax(root, "dax1.0", 0)  # devdax but no capacity
    d = discover(root)
    assert [x.name for x in d.dax_devices] == ["dax1.0", "dax2.0", "dax10.0"]
    assert d.choice.device == "/dev/dax2.0"
    assert "skipped dax1.0" in d.choice.reason


def test_garbled_size_is_unknown_not_a_crash(tmp_path: Path) -> None:
    root = copy_tree("devdax", tmp_path)
    (root / "sys/bus/dax/devices/dax0.0/size").write_text("lots\n")
    d = discover(root)
    assert d.dax_devices[0].size is None
    assert d.dax_devices[0].align == 2 << 20
    assert d.problems == ("/sys/bus/dax/devices/dax0.0/size: 'lots' is not a number",)
    # A devdax device of unknown size is not used blindly.
    assert d.choice.backend == "emulated"
    assert "skipped dax0.0 (devdax, size unknown or 0)" in d.choice.reason
    assert format_bytes(d.dax_devices[0].size) == "unknown"


def test_negative_target_node_falls_back_to_numa_node(tmp_path: Path) -> None:
    root = copy_tree("devdax", tmp_path)
    (root / "sys/bus/dax/devices/dax0.0/target_node").write_text("-1\n")
    d = discover(root)
    assert d.dax_devices[0].numa_node == 0 and d.problems == ()


def test_unbound_dax_and_garbled_meminfo(tmp_path: Path) -> None:
    root = copy_tree("system-ram", tmp_path)
    (root / "sys/bus/dax/devices/dax0.0/driver").unlink()
    (root / "sys/devices/system/node/node1/meminfo").write_text("Node 1 nonsense\n")
    (root / "sys/devices/system/node/node1/access0/initiators/read_latency").unlink()
    d = discover(root)
    assert (d.dax_devices[0].driver, d.dax_devices[0].mode) == (None, "unbound")
    assert d.numa_nodes[1].mem_total is None and d.numa_nodes[1].read_latency_ns is None
    assert any("node1/meminfo" in p and "MemTotal" in p for p in d.problems)
    # Node 1 no longer shows memory: nothing qualifies, so emulation.
    assert d.choice.backend == "emulated"


def test_attribute_that_is_a_directory(tmp_path: Path) -> None:
    root = copy_tree("devdax", tmp_path)
    size = root / "sys/bus/dax/devices/dax0.0/size"
    size.unlink()
    size.mkdir()
    d = discover(root)
    assert d.dax_devices[0].size is None
    assert any(p.startswith("/sys/bus/dax/devices/dax0.0/size: unreadable") for p in d.problems)


FILES = sorted(
    str(p.relative_to(FIXTURES / "system-ram"))
    for p in (FIXTURES / "system-ram").rglob("*")
    if p.is_file() and not p.is_symlink()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FILES), st.binary(max_size=24), min_size=1, max_size=6))
def test_any_garbage_never_crashes(garbage: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_tree("system-ram", Path(tmp))
        for rel, content in garbage.items():
            (root / rel).write_bytes(content)
        d = discover(root)
        json.dumps(d.to_dict())
        assert d.choice.backend in ("numa", "emulated")
        for dax in d.dax_devices:
            assert dax.size is None or dax.size >= 0
