"""A guard for real devices: explicit consent before writing to devdax / NUMA memory or an
existing file, no devdax in system-ram mode, an advisory lock so two runs never share a region
by accident, and region files with owner-only permissions."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import DeviceError, RegionError
from harness.log import LogConfig, format_region, layout_size
from harness.profiles import load_profile
from harness.region import Region
from harness.runner import choose_backend, open_region

ROOT = Path(__file__).resolve().parent.parent
SYSRAM = ROOT / "fixtures" / "sysfs" / "system-ram"
CFG = LogConfig(brokers=1, msg_size=64, batch_bytes=256, total_bytes=4096, pbr_slots=4, goi_slots=16)


def _file_profile(path: Path, consent: bool):
    p = load_profile("ci")
    return replace(p, memory=replace(p.memory, backend="file", path=str(path), allow_destructive=consent))


def test_devdax_write_needs_consent() -> None:
    with pytest.raises(DeviceError, match="destroys the data on that device") as ei:
        Region.devdax("/dev/dax0.0", 2 << 20, 2 << 20, allow_destructive=False)
    assert "--allow-destructive" in str(ei.value) and "allow_destructive: true" in str(ei.value)


def test_numa_cpu_less_node_needs_consent(tmp_path: Path) -> None:
    node = tmp_path / "sys/devices/system/node/node3"
    node.mkdir(parents=True)
    (node / "cpulist").write_text("\n")  # CPU-less: device memory
    with pytest.raises(DeviceError, match="CPU-less device memory") as ei:
        Region.numa(3, 2 << 20, allow_destructive=False, sysfs_root=tmp_path)
    assert "--allow-destructive" in str(ei.value)


def test_devdax_in_system_ram_mode_is_refused() -> None:
    profile = load_profile("ci")
    with pytest.raises(DeviceError, match="system-ram mode") as ei:
        choose_backend(profile, "/dev/dax0.0", sysfs_root=str(SYSRAM))
    assert "daxctl reconfigure-device --mode=devdax dax0.0" in str(ei.value)


def test_existing_file_needs_consent_and_is_untouched_without_it(tmp_path: Path) -> None:
    path = tmp_path / "region"
    data = os.urandom(4 << 20)
    path.write_bytes(data)
    mtime = path.stat().st_mtime_ns
    with pytest.raises(DeviceError, match="the run would overwrite it"):
        with open_region(_file_profile(path, consent=False), CFG):
            pass
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("how", ["profile field", "flag"])
def test_consent_by_profile_field_or_flag_allows_the_run(tmp_path: Path, how: str) -> None:
    path = tmp_path / "region"
    path.write_bytes(b"\0" * (4 << 20))
    profile = _file_profile(path, consent=how == "profile field")
    with open_region(profile, CFG, allow_destructive=how == "flag") as region:
        assert region.backend == "file" and region.path == str(path)
        format_region(region, CFG)
    assert path.stat().st_size == 4 << 20  # mapped in place: neither grown nor truncated


def test_advisory_lock_refuses_a_second_run_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "region"
    size = 2 << 20  # what open_region maps for CFG (rounded up to 2 MiB)
    assert layout_size(CFG) <= size
    with Region.file(path, size, create=True, lock=True) as first:
        assert first.info().locked
        with pytest.raises(RegionError) as ei:
            Region.file(path, size, create=False, lock=True)
        msg = str(ei.value)
        assert "is locked by another run" in msg and str(path) in msg
        assert "two runs must not share a device" in msg and "\n" not in msg
        # the runner path too: consent does not override the lock
        with pytest.raises(RegionError, match="locked by another run"):
            with open_region(_file_profile(path, consent=True), CFG):
                pass
    # released with the first run
    with Region.file(path, size, create=False, lock=True) as again:
        assert again.info().locked


def test_lock_conflict_across_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "region"
    size = 1 << 20
    with Region.file(path, size, create=True, lock=True):
        code = (f"from harness.region import Region\n"
                f"from harness.errors import RegionError\n"
                f"try:\n    Region.file({str(path)!r}, {size}, create=False, lock=True)\n"
                f"except RegionError as e:\n    print(e); raise SystemExit(3)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "locked by another run" in r.stdout


def test_region_files_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        with Region.file(tmp_path / "region", 1 << 20, create=True):
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "region").stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_runner_shareable_region_is_owner_only_and_removed(tmp_path: Path) -> None:
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    with open_region(load_profile("ci"), CFG, shareable=True) as region:
        assert region.path is not None
        assert stat.S_IMODE(os.fstat(region.fd).st_mode) == 0o600
        assert region.info().locked
        # unlinked as soon as it is mapped: role processes attach through the descriptor, and
        # a coordinator killed with SIGKILL leaves nothing on /dev/shm
        assert not os.path.exists(region.path) and not os.path.exists(os.path.dirname(region.path))
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert after == before  # nothing left behind
