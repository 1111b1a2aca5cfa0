"""Helpers for tests that start the command line as a real process and kill things: find a
coordinator's role processes, the region it maps, and wait for processes to be gone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_cli(args: list[str], tmp: Path, **kw: object) -> subprocess.Popen[bytes]:
    """``python -m harness.cli ARGS`` with stdout and stderr to files in ``tmp``."""
    out = open(tmp / "stdout.txt", "wb")  # noqa: SIM115 - closed with the process
    err = open(tmp / "stderr.txt", "wb")  # noqa: SIM115
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, stdout=out,
                            stderr=err, stdin=subprocess.DEVNULL, env=env, **kw)  # type: ignore[call-overload]


def stderr_lines(tmp: Path, offset: int = 0) -> list[str]:
    """The lines written to stderr (from byte ``offset`` on), without progress-bar redraws."""
    text = (tmp / "stderr.txt").read_bytes()[offset:].decode(errors="replace").replace("\r", "\n")
    # a progress bar redraws itself with carriage returns: keep only real lines
    return [ln for ln in text.splitlines() if ln.strip() and not re.match(r"^ordering:", ln)]


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def role_processes(pid: int) -> list[int]:
    found = []
    for c in children(pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"harness.log.role_process" in cmd and alive(c):
            found.append(c)
    return found


def shm_mappings(pid: int) -> set[str]:
    """Paths under /dev/shm that ``pid`` maps (an unlinked one ends with ' (deleted)')."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {line.split(None, 5)[5] for line in maps.splitlines()
            if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith("/dev/shm/")}


@dataclass
class RunningRoles:
    coordinator: subprocess.Popen[bytes]
    roles: list[int]
    region: str  # the region's path on /dev/shm as the coordinator mapped it


def wait_for_roles(proc: subprocess.Popen[bytes], count: int, timeout: float = 60.0) -> RunningRoles:
    """Until the coordinator has ``count`` role processes and each of them maps the region."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the coordinator ended early (exit {proc.returncode})")
        roles = role_processes(proc.pid)
        mine = shm_mappings(proc.pid)
        if len(roles) == count and mine and all(shm_mappings(r) & mine for r in roles):
            return RunningRoles(proc, roles, sorted(mine)[0])
        time.sleep(0.02)
    raise AssertionError("the role processes did not start")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after ``timeout`` seconds (empty: all gone)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.01)
    return [p for p in pids if alive(p)]


def kill_all(proc: subprocess.Popen[bytes], pids: list[int]) -> None:
    for p in pids:
        if alive(p):
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
