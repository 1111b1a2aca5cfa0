"""How noisy the machine was while a figure was measured.

Per sample: the CPU time other processes used (busy time in /proc/stat minus this process's
own rusage), as a share of the machine's capacity over the sample. Per run: the load average
and the settings that make timings drift (governor, turbo, SMT, isolated CPUs, THP), read
where the kernel exposes them. ``warnings`` says what pyperf's ``check`` would say.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OTHER_CPU_WARN = 0.10  # other processes used more than 10% of the machine during samples
SPREAD_WARN = 0.10  # pyperf check: "the standard deviation is large" at 10%


def _busy_seconds(root: Path = Path("/")) -> float | None:
    """Machine-wide non-idle CPU seconds from /proc/stat's first line."""
    try:
        fields = (root / "proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Span:
    other_share: float = 0.0  # other processes' CPU / (wall * CPUs); 0 where unreadable


class CpuMeter:
    def __init__(self, cpus: int | None = None) -> None:
        self.cpus = cpus or os.cpu_count() or 1

    @contextmanager
    def span(self) -> Iterator[Span]:
        span = Span()
        busy0, own0, t0 = _busy_seconds(), _own_seconds(), time.monotonic()
        yield span
        busy1, own1, wall = _busy_seconds(), _own_seconds(), time.monotonic() - t0
        if busy0 is not None and busy1 is not None and wall > 0:
            other = (busy1 - busy0) - (own1 - own0)
            span.other_share = max(0.0, other / (wall * self.cpus))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def machine_state(root: Path = Path("/")) -> dict[str, Any]:
    """Load and timing-relevant settings, None where not readable."""
    cpu = root / "sys/devices/system/cpu"
    thp = _read(root / "sys/kernel/mm/transparent_hugepage/enabled")
    no_turbo = _read(cpu / "intel_pstate/no_turbo")
    boost = _read(cpu / "cpufreq/boost")
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "load_avg": load,
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "governor": _read(cpu / "cpu0/cpufreq/scaling_governor"),
        "turbo": (no_turbo == "0") if no_turbo is not None else
                 ((boost == "1") if boost is not None else None),
        "smt_active": {"1": True, "0": False}.get(_read(cpu / "smt/active") or ""),
        "isolated_cpus": _read(cpu / "isolated"),
        "thp": thp.split("[", 1)[1].split("]", 1)[0] if thp and "[" in thp else thp,
    }


def warnings(state: dict[str, Any], *, spreads: Sequence[tuple[str, float]] = (),
             other_cpu: Sequence[float] = ()) -> list[str]:
    """pyperf-check style warnings for a run."""
    out = []
    load, cpus = state.get("load_avg"), state.get("cpus") or 1
    if load and load[0] > cpus:
        out.append(f"load average {load[0]:.2f} above the {cpus} CPU(s): other work was running")
    if other_cpu and max(other_cpu) > OTHER_CPU_WARN:
        out.append(f"other processes used up to {max(other_cpu):.0%} of the machine during "
                   f"samples (median {sorted(other_cpu)[len(other_cpu) // 2]:.0%})")
    if state.get("governor") not in (None, "performance"):
        out.append(f"CPU governor is {state['governor']!r}, not 'performance': clock speed varies")
    if state.get("turbo"):
        out.append("turbo boost is on: clock speed depends on temperature and load")
    for name, spread in spreads:
        if spread > SPREAD_WARN:
            out.append(f"{name}: spread {spread:.0%} of the median is above {SPREAD_WARN:.0%}")
    return out
