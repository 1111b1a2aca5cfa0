"""Who measured: this machine, its load and settings, and the checkout (for every report and
JSON output's metadata)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness
from harness.native import flush_instruction
from harness.noise import machine_state


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def git_revision(cwd: Path | None = None) -> str:
    """The short git revision of the harness's source tree (``+dirty`` when modified), or
    ``unknown`` outside a git checkout."""
    where = cwd or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev


def cpu_description() -> str:
    """Model name, logical CPUs and the cache-line instructions the CPU has."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    have = [f for f in ("clwb", "clflushopt", "clflush", "movdir64b", "avx512f") if f in flags]
    count = os.cpu_count() or 1
    return f"{model} ({count} logical CPUs{', ' if have else ''}{', '.join(have)})"


def meta_section(command: str, started: str, finished: str | None = None) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "started": started,
        "finished": finished or _now(),
        "host": socket.gethostname(),
        "kernel": f"{uname.system} {uname.release} {uname.version}".strip(),
        "cpu": cpu_description(),
        "flush_instruction": flush_instruction(),
        "package_version": harness.__version__,
        "git_revision": git_revision(),
        "git_dirty": git_revision().endswith("+dirty"),
        "command": command,
        "python": sys.version.split()[0],
        "memory_gib": _mem_gib(),
        "numa_nodes": _numa_nodes(),
        "machine_state": machine_state(),
    }


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _numa_nodes() -> int | None:
    try:
        return sum(1 for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    except OSError:
        return None


