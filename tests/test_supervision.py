"""Supervised role processes (``publish --processes``), killed for real.

- a role process that dies stops the run at once: the others are stopped, the region is gone,
  the coordinator exits 2 with one line naming the role, its PID and the signal;
- a coordinator killed with SIGTERM, SIGINT or SIGKILL leaves no role process behind and no
  region on /dev/shm;
- results travel through private files (O_EXCL|O_NOFOLLOW in a mkdtemp directory): a planted
  symbolic link is never followed, and two runs in one directory do not mix their results.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procutil import (
    ROOT,
    kill_all,
    start_cli,
    stderr_lines,
    wait_for_roles,
    wait_gone,
)

from harness.errors import RegionError
from harness.log import open_private

# long enough that it is still running when killed (minutes at any rate), small rings
LONG = ["publish", "--processes", "--total-bytes", "1TiB", "--batch-bytes", "64KiB", "--brokers", "2",
        "--ring-slots", "16"]
ROLES = 3  # publishers, scanners + sequencer, subscribers


@pytest.mark.parametrize("victim", [0, 1, 2], ids=["publishers", "scanners", "subscribers"])
def test_dead_role_process_stops_the_run_at_once(tmp_path: Path, victim: int) -> None:
    proc = start_cli(LONG, tmp_path)
    run = None
    try:
        run = wait_for_roles(proc, ROLES)
        assert not Path(run.region.removesuffix(" (deleted)")).exists(), "the region file is unlinked"
        time.sleep(0.3)
        dead = sorted(run.roles)[victim]
        others = [r for r in run.roles if r != dead]
        t0 = time.monotonic()
        os.kill(dead, signal.SIGKILL)
        rc = proc.wait(30)
        took = time.monotonic() - t0
    finally:
        kill_all(proc, run.roles if run else [])
    assert rc == 2
    assert took < 5.0, f"the coordinator took {took:.1f}s to notice"  # not a watchdog's 30 s
    assert wait_gone(others, 2.0) == []
    lines = stderr_lines(tmp_path)
    assert len(lines) == 1, lines
    name = ("publishers", "scanners", "subscribers")[victim]
    assert lines[0].startswith("cxl-harness publish: error: role process ")
    assert f"{name} (pid {dead}) was killed by SIGKILL" in lines[0]
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    assert not Path(run.region.removesuffix(" (deleted)")).parent.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_killed_coordinator_leaves_no_role_process_and_no_region(tmp_path: Path, sig: signal.Signals) -> None:
    proc = start_cli(LONG, tmp_path)
    run = None
    try:
        run = wait_for_roles(proc, ROLES)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(30)
        took = time.monotonic() - t0
        left = wait_gone(run.roles, 3.0)
    finally:
        kill_all(proc, run.roles if run else [])
    assert left == [], f"orphan role processes {left}"
    assert not Path(run.region.removesuffix(" (deleted)")).exists()
    assert not Path(run.region.removesuffix(" (deleted)")).parent.exists()
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
        return
    assert rc == 128 + sig, (rc, stderr_lines(tmp_path))
    assert took < 5.0
    lines = stderr_lines(tmp_path)
    assert lines == [f"cxl-harness publish: interrupted by {sig.name}: the run was stopped and its "
                     "memory released"], lines


def test_planted_symlink_next_to_the_region_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    # the names results were written to next to the region before: all planted
    planted = [tmp_path / f"roles-{roles}-4294967295-4294967295.npz" for roles in (1, 2, 4)]
    for p in planted:
        p.symlink_to(victim)
    region = tmp_path / "region.bin"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "publish", "--processes", "--device", str(region),
                        "--total-bytes", "2MiB", "--brokers", "2"], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert victim.read_text() == "keep me\n"
    assert all(p.is_symlink() and os.readlink(p) == str(victim) for p in planted)
    assert sorted(os.listdir(tmp_path)) == sorted(["precious.txt", "region.bin"] + [p.name for p in planted])


def test_two_concurrent_runs_in_one_directory_keep_their_results(tmp_path: Path) -> None:
    """Each run reads back its own role processes' results (different sizes and brokers, so
    results read from the other run would not add up)."""
    import json

    runs = {"a.region": (1, 4 << 20), "b.region": (3, 12 << 20)}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "publish", "--processes", "--device", str(tmp_path / name),
         "--total-bytes", str(total), "--brokers", str(brokers), "--batch-bytes", "16KiB",
         "--json", str(tmp_path / f"{name}.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name, (brokers, total) in runs.items()}
    outs = {name: p.communicate(timeout=180) for name, p in procs.items()}
    for name, (brokers, total) in runs.items():
        assert procs[name].returncode == 0, outs[name][1].decode()[-1500:]
        r = json.loads((tmp_path / f"{name}.json").read_text())
        assert r["brokers"] == brokers
        assert r["payload_bytes"] == total
        assert r["messages_published"] == r["messages_ordered"] == r["messages_delivered"][0] == total // 1024
        assert all(c["ok"] for c in r["checks"])


def test_result_files_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How a result file is made: O_CREAT|O_EXCL|O_NOFOLLOW, 0600, in a fresh 0700 directory."""
    from harness.log import processes as log

    seen: list[tuple[str, int, int, int]] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777, *a: object, **k: object) -> int:
        if str(path).endswith("roles.npz"):
            seen.append((str(path), flags, mode, stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)))
        return real_open(path, flags, mode)

    monkeypatch.setattr(log.os, "open", spy)
    fd = log._private_result_file(str(tmp_path))
    os.close(fd)
    ((path, flags, mode, dir_mode),) = seen
    need = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    assert flags & need == need and mode == 0o600 and dir_mode == 0o700
    assert Path(path).parent.parent == tmp_path
    assert os.listdir(tmp_path) == []  # the name and its directory are gone at once


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "file"])
def test_open_private_refuses_an_existing_name(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    target.write_text("target\n")
    name = tmp_path / "roles.npz"
    if kind == "symlink":
        name.symlink_to(target)
    elif kind == "dangling-symlink":
        name.symlink_to(tmp_path / "nowhere")
    else:
        name.write_text("theirs\n")
    with pytest.raises(RegionError, match="already exists"):
        open_private(name)
    assert target.read_text() == "target\n"
    assert not (tmp_path / "nowhere").exists()
