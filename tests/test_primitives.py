"""The shared-memory seam and the region back-ends (foundation issue)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import DeviceError, RegionError
from harness.native import flush_instruction, load, supported_flushes
from harness.region import Region

PATTERN = bytes(range(256)) * 17  # 4352 bytes: several lines, not line-aligned at the end


def _roundtrip(region: Region) -> None:
    region.write(64, PATTERN)
    assert region.read(64, len(PATTERN)) == PATTERN
    region.write(8192 + 3, PATTERN[:1000], nt=True)  # unaligned start: head bytes, then streaming
    assert region.read(8192 + 3, 1000) == PATTERN[:1000]


def test_flush_instruction_is_chosen_from_cpuid() -> None:
    chosen = flush_instruction()
    supported = supported_flushes()
    assert chosen in ("clwb", "clflushopt", "clflush", "none")
    if supported:
        assert chosen == supported[0], "the best supported instruction is preferred"


def test_emulated_region_roundtrip() -> None:
    with Region.emulated(1 << 20) as r:
        _roundtrip(r)
        info = r.info()
        assert info.backend == "emulated" and info.size == 1 << 20
        assert info.flush_instruction == flush_instruction()


def test_file_region_two_mappings_see_the_same_bytes(tmp_path: Path) -> None:
    path = Path("/dev/shm" if os.path.isdir("/dev/shm") else tmp_path) / f"cxlh-{os.getpid()}-map"
    try:
        with Region.file(path, 1 << 20, create=True, lock=False) as a, \
                Region.file(path, 1 << 20, create=False, lock=False) as b:
            a.write(4096, PATTERN)
            assert b.read(4096, len(PATTERN)) == PATTERN
            b.write(0, b"from-b", nt=True)
            assert a.read(0, 6) == b"from-b"
        assert (path.stat().st_mode & 0o777) == 0o600, "region files are owner-only"
    finally:
        path.unlink(missing_ok=True)


def test_file_region_shared_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared-region"
    child = textwrap.dedent(f"""
        from harness.region import Region
        with Region.file({str(path)!r}, 1 << 20, create=False, lock=False) as r:
            assert r.read(128, 5) == b"hello", r.read(128, 5)
            r.write(256, b"world")
    """)
    with Region.file(path, 1 << 20, create=True, lock=False) as r:
        r.write(128, b"hello")
        subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
        assert r.read(256, 5) == b"world"


def test_numa_node0_region_when_mbind_works() -> None:
    if not Path("/sys/devices/system/node/node0").is_dir():
        pytest.skip("no /sys/devices/system/node/node0 on this machine")
    try:
        region = Region.numa(0, 1 << 20, allow_destructive=True)
    except DeviceError as exc:
        pytest.skip(f"mbind to node 0 refused here: {exc}")
    with region:
        _roundtrip(region)
        assert region.info().numa_node == 0


@pytest.mark.parametrize("size", [0, -4096])
def test_bad_sizes_are_refused(size: int) -> None:
    with pytest.raises(RegionError, match="not a positive number"):
        Region.emulated(size)


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_bytes(b"keep me")
    with pytest.raises(RegionError, match="already exists; refusing to overwrite"):
        Region.file(path, 4096, create=True)
    assert path.read_bytes() == b"keep me"


def test_file_too_small_is_not_grown(tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(b"x" * 100)
    with pytest.raises(RegionError, match="100 bytes, smaller than the 4096"):
        Region.file(path, 4096, create=False)
    assert path.stat().st_size == 100


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RegionError, match="does not exist"):
        Region.file(tmp_path / "nope", 4096, create=False)
    with pytest.raises(RegionError, match="directory .* does not exist"):
        Region.file(tmp_path / "no-dir" / "f", 4096, create=True)
    assert not (tmp_path / "no-dir").exists()


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: permission checks cannot fail here")
    path = tmp_path / "locked"
    path.write_bytes(b"\0" * 8192)
    path.chmod(0)
    with pytest.raises(RegionError, match="Permission denied"):
        Region.file(path, 4096, create=False)


def test_second_run_on_a_locked_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "busy"
    with Region.file(path, 1 << 16, create=True, lock=True):
        with pytest.raises(RegionError, match="locked by another run"):
            Region.file(path, 1 << 16, create=False, lock=True)


def test_devdax_inputs(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="destroys the data"):
        Region.devdax("/dev/dax0.0", 2 << 20, 2 << 20, allow_destructive=False)
    with pytest.raises(DeviceError, match="does not exist"):
        Region.devdax("/dev/dax97.3", 2 << 20, 2 << 20, allow_destructive=True)
    with pytest.raises(DeviceError, match="not a device-dax path"):
        Region.devdax("/dev/sda", 2 << 20, 2 << 20, allow_destructive=True)


def test_numa_node_that_does_not_exist() -> None:
    with pytest.raises(DeviceError, match="NUMA node 4093 does not exist"):
        Region.numa(4093, 1 << 20, allow_destructive=True)


def test_access_outside_the_region_is_refused() -> None:
    with Region.emulated(4096) as r:
        with pytest.raises(RegionError, match="outside the region"):
            r.write(4090, b"0123456789")
        with pytest.raises(RegionError, match="outside the region"):
            r.read(-1, 4)


def test_both_builds_load() -> None:
    assert load(False).lib.cxl_is_checked() == 0
    assert load(True).lib.cxl_is_checked() == 1
