"""Run the log once, then check it: the one place where running and the checks meet, above
both (harness.log does not import the checks, the checks do not import this)."""

from __future__ import annotations

from contextlib import ExitStack

from harness.errors import ConfigError
from harness.invariants import run_checks
from typing import Any

from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, LogHandle, LogResult, RoleGroup, format_region, make_result, merge_records, merge_stats, region_size, shm_region, start_role_processes, supervise
from harness.region import Region, RegionInfo


def build_result(cfg: LogConfig, stats: dict[str, Any], recs: dict[str, Any] | None,
                 region: RegionInfo, rc: int, check_history: bool, processes: int = 1) -> LogResult:
    """Check one run's statistics and records, and make its LogResult."""
    checks = run_checks(cfg, stats, recs, check_history)
    return make_result(cfg, stats, recs, region, rc, checks, processes)


def run_log(cfg: LogConfig, *, region: Region | None = None, progress: bool = False,
            check_history: bool = True) -> LogResult:
    """Run the log once and check it. With ``region=None`` an emulated region (or, with
    ``processes=True``, a file on /dev/shm) is made for the run and released after it."""
    if cfg.processes:
        return _run_processes(cfg, region, check_history)
    owned = region is None
    if region is None:
        region = Region.emulated(region_size(cfg), hugepages=True)
    try:
        format_region(region, cfg)
        h = LogHandle(region, cfg)
        try:
            rc = h.run(progress=progress)
            stats = h.stats()
            recs = h.records() if cfg.recording else None
        finally:
            h.close()
        return build_result(cfg, stats, recs, region.info(), rc, check_history)
    finally:
        if owned:
            region.close()


def _run_processes(cfg: LogConfig, region: Region | None, check_history: bool) -> LogResult:
    with ExitStack() as stack:
        if region is None:
            region = stack.enter_context(shm_region(region_size(cfg)))
        if region.backend != "file" and region.path is None:
            raise ConfigError("multi-process mode needs a shareable region", "use the file back-end (or none)")
        format_region(region, cfg)
        groups = [RoleGroup(ROLE_PUBLISHERS), RoleGroup(ROLE_SCANNERS)]
        if cfg.subscribers:
            groups.append(RoleGroup(ROLE_SUBSCRIBERS))
        # children attach to this very file through the descriptor, never by name
        where = f"/proc/self/fd/{region.fd}" if region.fd >= 0 else str(region.path)
        # ... and map it with the device model this region carries
        procs = start_role_processes(where, region.size, cfg, groups, device_model=region.device_model)
        results = supervise(procs, cfg.watchdog_s + 60)
        stats = merge_stats([r.stats for r in results])
        recs = merge_records([r.records for r in results]) if cfg.recording else None
        rc = max(r.rc for r in results)
        info = region.info([(g.label, r.device_model) for g, r in zip(groups, results)])
        return build_result(cfg, stats, recs, info, rc, check_history, processes=len(groups))
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: ExitStack may swallow)
