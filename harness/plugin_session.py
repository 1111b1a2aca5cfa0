"""The pytest plugin's session: what it knows about the session (options, discovery, the runs,
checks and targets the tests handed over, per-test outcomes) and the session's report.

The hooks and fixtures live in :mod:`harness.plugin`; the multi-host fixture in
:mod:`harness.hosts.pytest_support`. Both read the session through :func:`state_of`.
"""

from __future__ import annotations

import datetime as _dt
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.results import Check, TargetCheck

if TYPE_CHECKING:
    from harness.discovery import Discovery
    from harness.hosts.coordinator import HostsRun
    from harness.log import LogResult

DEVICE_BACKENDS = ("devdax", "numa")
DEFAULT_PROFILE = "ci"
STATE_KEY = pytest.StashKey["CxlSession"]()
HOSTS_KEY = pytest.StashKey["list[HostsRun]"]()


def profile_names(config: pytest.Config) -> list[str]:
    values: list[str] = config.getoption("--hw-profile") or [DEFAULT_PROFILE]
    names: list[str] = []
    for value in values:
        if value == "all":
            from harness.profiles import list_profiles

            names.extend(list_profiles())
        else:
            names.extend(v for v in value.split(",") if v)
    return list(dict.fromkeys(names))


def device_probe(discovery: Discovery, device: str | None) -> tuple[bool, str]:
    """Whether a real CXL device is there, and a sentence naming what was probed."""
    root = discovery.sysfs_root.rstrip("/")
    probed = (f"probed {root}/sys/bus/dax/devices ({len(discovery.dax_devices)} dax device(s)), "
              f"{root}/sys/bus/cxl/devices ({len(discovery.cxl_memdevs)} memdev(s)) and "
              f"{root}/sys/devices/system/node ({len(discovery.numa_nodes)} node(s))")
    if device:
        probed = f"--cxl-device {device}; " + probed
    found = discovery.choice.backend in DEVICE_BACKENDS
    return found, f"{probed}: {discovery.choice.reason}"


# 

@dataclass
class RecordedRun:
    nodeid: str
    label: str
    result: LogResult
    profile: str


@dataclass
class Outcome:
    nodeid: str
    outcome: str  # passed, failed, skipped
    group: str
    detail: str
    location: str
    phase: str = "call"
    duration_s: float = 0.0


class CxlSession:
    """What the plugin knows about the session: options, discovery, recorded results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        device = config.getoption("--cxl-device")
        self.device: str | None = None if device in (None, "", "auto") else str(device)
        self.sysfs_root: str = config.getoption("--cxl-sysfs-root")
        self.allow_destructive: bool = bool(config.getoption("--cxl-allow-destructive"))
        report = config.getoption("--cxl-report")
        self.report_dir: Path | None = Path(report) if report else None
        self.started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._discovery: Discovery | None = None
        self.runs: list[RecordedRun] = []
        self.checks: list[Check] = []
        self.targets: list[TargetCheck] = []
        self.outcomes: dict[str, Outcome] = {}
        self.profiles_used: list[str] = []
        self.region_info: dict[str, Any] | None = None

    @property
    def discovery(self) -> Discovery:
        if self._discovery is None:
            from harness.discovery import discover

            self._discovery = discover(self.sysfs_root, explicit_device=self.device)
        return self._discovery

    def probe(self) -> tuple[bool, str]:
        return device_probe(self.discovery, self.device)

    def record(self, nodeid: str, result: LogResult, profile: str, label: str | None = None) -> None:
        name = label or f"order{result.order}/{result.variant}"
        test = nodeid.rsplit("::", 1)[-1]
        self.runs.append(RecordedRun(nodeid, f"{name} ({test})", result, profile))
        if profile not in self.profiles_used:
            self.profiles_used.append(profile)


def state_of(request: pytest.FixtureRequest) -> CxlSession:
    return request.config.stash[STATE_KEY]


# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# The session's report


def add_hosts_section(summary: dict[str, Any], config: pytest.Config) -> None:
    """The session report's Hosts section: the last multi-host run of the session."""
    from harness.hosts.cli import hosts_section

    runs = config.stash.get(HOSTS_KEY, [])
    if runs:
        summary["hosts"] = hosts_section(runs[-1])


def session_summary(state: CxlSession, config: pytest.Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``cxl-harness-summary/2`` document of a pytest session, and its raw data."""
    from harness.machine import meta_section
    from harness.job.sections import (
        device_section,
        ordering_checks,
        profile_section,
        run_entry,
        verdict_section,
    )
    from harness.profiles import load_profile
    from harness.report.summary import SCHEMA_ID

    tests = [o for o in state.outcomes.values() if o.outcome != "skipped"]
    skipped = [o for o in state.outcomes.values() if o.outcome == "skipped"]
    checks: list[Check] = []
    for o in tests:
        examples = [] if o.outcome == "passed" else [
            {"test": o.nodeid, "phase": o.phase, "location": o.location, "message": o.detail}]
        checks.append(Check(f"test:{o.nodeid}", o.nodeid, o.outcome == "passed",
                            f"passed in {o.duration_s:.2f} s" if o.outcome == "passed"
                            else f"{o.outcome} in {o.phase}: {o.detail}", examples, group=o.group))
    checks.extend(ordering_checks([(r.label, r.nodeid, r.result) for r in state.runs]))
    seen = {c.id for c in checks}
    for c in state.checks:
        ident, n = c.id, 2
        while ident in seen:
            ident, n = f"{c.id}#{n}", n + 1
        seen.add(ident)
        checks.append(replace(c, id=ident))

    names = state.profiles_used or profile_names(config)
    profile = load_profile(names[0])
    psection = profile_section(profile)
    if len(names) > 1:
        psection["name"] = ", ".join(names)
        psection["description"] = f"{len(names)} profiles in this session; first: {profile.description}"
    device = device_section(profile, state.device, state.region_info, state.sysfs_root,
                            f"the pytest session used {', '.join(names)}", discovery=state.discovery)
    where = device["path"] or f"{device['backend']} memory"
    verdict = verdict_section(checks, state.targets, [], [], where)
    verdict["summary"] = (f"pytest: {sum(o.outcome == 'passed' for o in tests)} passed, "
                          f"{sum(o.outcome != 'passed' for o in tests)} failed, {len(skipped)} skipped; "
                          + verdict["summary"])
    command = "pytest " + " ".join(shlex.quote(a) for a in config.invocation_params.args)
    summary = {
        "schema": SCHEMA_ID,
        "meta": meta_section(command, state.started),
        "verdict": verdict,
        "device": device,
        "profile": psection,
        "checks": [c.to_dict() for c in checks],
        "runs": [run_entry(r.label, r.result) for r in state.runs],
        "targets": [t.to_summary() for t in state.targets],
    }
    add_hosts_section(summary, config)
    raw = {
        "tests": [vars(o) for o in state.outcomes.values()],
        "log_runs": [{"test": r.nodeid, "label": r.label, "profile": r.profile, **r.result.to_dict()}
                     for r in state.runs],
    }
    return summary, raw


def write_session_report(state: CxlSession, config: pytest.Config) -> tuple[Path, Path, bool] | None:
    """Write the session's report under ``--cxl-report``; (run dir, index.html, verdict)."""
    if state.report_dir is None:
        return None
    from harness.report.rundir import write_run_dir

    summary, raw = session_summary(state, config)
    report_dir = state.report_dir
    if not report_dir.is_absolute():
        report_dir = Path(config.invocation_params.dir) / report_dir
    run_dir, report, _latest = write_run_dir(
        summary, report_dir, raw={"pytest results": ("pytest-results.json", raw["tests"]),
                                  "log runs": ("log-runs.json", raw["log_runs"])})
    return run_dir, report, bool(summary["verdict"]["ok"])
