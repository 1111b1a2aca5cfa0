"""A Site resolves profile, discovery and consent once: sysfs is walked once however often the
run maps memory, a region takes what discovery found, and the device section agrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import site as site_mod
from harness.discovery import NumaNode
from harness.errors import DeviceError
from harness.log import LogConfig
from harness.profiles import load_profile
from harness.region import Region
from harness.site import Site

SYSFS = Path(__file__).resolve().parents[1] / "fixtures" / "sysfs"


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = site_mod.discover

    def counting(root: str | Path = "/", explicit_device: str | None = None):  # type: ignore[no-untyped-def]
        seen.append(str(root))
        return real(root, explicit_device=explicit_device)

    monkeypatch.setattr(site_mod, "discover", counting)
    return seen


def test_one_walk_for_profile_choice_maps_and_device_section(walks: list[str]) -> None:
    s = Site.resolve("auto", sysfs_root=str(SYSFS / "plain"))
    assert s.profile.name == "ci" and "auto chose ci" in s.reason
    cfg = LogConfig(brokers=1, total_bytes=1 << 20)
    for _ in range(3):
        with s.open_for(cfg) as region:
            assert region.backend == "emulated"
    section = s.device_section(None)
    assert section["backend"] == "emulated" and "auto chose ci" in section["discovery_reason"]
    assert walks == [str(SYSFS / "plain")]  # once, for everything above


def test_named_profile_walks_only_when_asked(walks: list[str]) -> None:
    s = Site.resolve("ci", sysfs_root=str(SYSFS / "plain"))
    with s.map(1 << 20):
        pass
    assert walks == []  # emulated memory: nothing to discover
    s.device_section(None)
    s.device_section(None)
    assert len(walks) == 1


def test_numa_region_takes_the_discovered_node() -> None:
    """A CPU-less node is refused without consent from what discovery found (no re-read)."""
    node = NumaNode(id=0, cpulist="", mem_total=1 << 30, read_latency_ns=None, write_latency_ns=None,
                    read_bandwidth_mbps=None, write_bandwidth_mbps=None)
    with pytest.raises(DeviceError, match="CPU-less device memory"):
        Region.numa(0, 2 << 20, allow_destructive=False, sysfs_root="/nonexistent", info=node)


def test_site_on_a_system_ram_tree_chooses_its_node(walks: list[str]) -> None:
    s = Site(load_profile("cxl-numa"), sysfs_root=str(SYSFS / "system-ram"))
    assert s.choice.backend == "numa" and s.choice.node is not None
    assert s.numa_node(s.choice.node) is not None and s.numa_node(s.choice.node).cpulist == ""  # type: ignore[union-attr]
    assert len(walks) == 1
