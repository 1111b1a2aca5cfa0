"""Run the log once, then check it: the one place where running and the checks meet, above
both (harness.log does not import the checks, the checks do not import this)."""

from __future__ import annotations

from contextlib import ExitStack

from harness.errors import ConfigError
from harness.invariants import CheckContext, run_checks
from typing import Any

from harness.log import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, LogHandle, LogResult, RoleGroup, format_region, make_result, merge_records, merge_stats, region_size, shm_region, start_role_processes, supervise
from harness.region import Region, RegionInfo
from harness.results import Check


def build_result(cfg: LogConfig, stats: dict[str, Any], recs: dict[str, Any] | None,
                 region: RegionInfo, rc: int, check_history: bool, processes: int = 1,
                 context: CheckContext = CheckContext()) -> LogResult:
    """Check one run's statistics and records (with what the runner knows of it, ``context``),
    and make its LogResult."""
    checks = run_checks(cfg, stats, recs, check_history, context)
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


def crash_groups(cfg: LogConfig) -> tuple[list[RoleGroup], int]:
    """The role processes of a run, and which of them an injected crash kills (-1: none). A
    crashed publisher or subscriber gets a process of its own, so that its SIGKILL takes no
    other role with it; the scanners share theirs with the sequencer (a scanner crash stops
    its thread only)."""
    every = 0xFFFFFFFF
    groups: list[RoleGroup] = []
    killed = -1
    if cfg.crash_publisher >= 0 and cfg.crash_kill:
        b = cfg.crash_publisher // cfg.publishers_per_broker
        if cfg.brokers > 1:
            groups.append(RoleGroup(ROLE_PUBLISHERS, pub_brokers=((1 << cfg.brokers) - 1) & ~(1 << b)))
        killed = len(groups)
        groups.append(RoleGroup(ROLE_PUBLISHERS, pub_brokers=1 << b))
    else:
        groups.append(RoleGroup(ROLE_PUBLISHERS))
    groups.append(RoleGroup(ROLE_SCANNERS))
    if cfg.subscribers and cfg.crash_subscriber >= 0 and cfg.crash_kill:
        k = cfg.crash_subscriber
        if cfg.subscribers > 1:
            groups.append(RoleGroup(ROLE_SUBSCRIBERS, sub_mask=((1 << cfg.subscribers) - 1) & ~(1 << k)))
        killed = len(groups)
        groups.append(RoleGroup(ROLE_SUBSCRIBERS, sub_mask=1 << k))
    elif cfg.subscribers:
        groups.append(RoleGroup(ROLE_SUBSCRIBERS, sub_mask=every))
    return groups, killed


def _run_processes(cfg: LogConfig, region: Region | None, check_history: bool) -> LogResult:
    with ExitStack() as stack:
        if region is None:
            region = stack.enter_context(shm_region(region_size(cfg)))
        if region.backend != "file" and region.path is None:
            raise ConfigError("multi-process mode needs a shareable region", "use the file back-end (or none)")
        format_region(region, cfg)
        groups, killed = crash_groups(cfg)
        # children attach to this very file through the descriptor, never by name
        where = f"/proc/self/fd/{region.fd}" if region.fd >= 0 else str(region.path)
        # ... and map it with the device model this region carries
        # ... sharing its channels: one bandwidth cap and one utilisation for every process
        channels = -1
        if region.device_model is not None:
            channels = region.channels_fd if region.channels_fd >= 0 else region.share_channels()
        procs = start_role_processes(where, region.size, cfg, groups, device_model=region.device_model,
                                     channels_fd=channels)
        expected = procs[killed] if killed >= 0 else None
        results = supervise(procs, cfg.watchdog_s + 60, expect_killed=expected)
        # the killed one has no result: the others' groups, in order
        survivors = [g for i, g in enumerate(groups) if not (expected is not None and i == killed)]
        stats = merge_stats([r.stats for r in results])
        if expected is not None and not stats.get("crash_ns") and expected.died_ns:
            stats["crash_ns"] = expected.died_ns  # seen by this process (same clock), <= 10 ms late
        recs = merge_records([r.records for r in results]) if cfg.recording else None
        rc = max(r.rc for r in results)
        info = region.info([(g.label, r.device_model) for g, r in zip(survivors, results)])
        # a killed publisher's own records (what it published) died with it: the history of
        # the run cannot be complete, so it is not checked -- and the result says so
        lost_records = expected is not None and cfg.crash_publisher >= 0
        result = build_result(cfg, stats, recs, info, rc, check_history and not lost_records,
                              processes=len(groups))
        if expected is not None and lost_records and check_history and recs is not None:
            result.checks.append(Check(
                "history-not-checked", "history check not run: the killed publisher process's own "
                "publish records died with it", True,
                f"{expected.group.label} was SIGKILLed on purpose; the in-run checks above cover the "
                "run (every other broker complete, the lost slot named)", group="history"))
        return result
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: ExitStack may swallow)
