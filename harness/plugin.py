"""pytest plugin (entry point ``pytest11``): options, markers and fixtures for labs.

Installed with the package, so any test suite run with this environment's ``pytest`` gets:

Options
    ``--hw-profile NAME`` (repeatable, or ``all``; default ``ci``): the hardware profiles the
    ``hw_profile`` fixture is parametrised over; ``--cxl-device PATH|auto`` (default
    ``auto``): a device every profile uses instead of its own memory; ``--cxl-report DIR``:
    write the harness's HTML report of the session to ``DIR/<timestamp>/`` (and
    ``DIR/latest``); ``--cxl-allow-destructive``: consent to overwrite a real device;
    ``--run-slow`` (or ``CXL_SLOW=1``): run tests marked ``slow``; ``--cxl-sysfs-root``:
    where discovery reads sysfs (a fake tree, for testing); ``--cxl-hosts FILE``: the hosts
    the ``cxl_hosts`` fixture places the roles on (docs/multi-host.md).
Markers
    ``needs_device`` (skipped, naming what discovery probed, when there is no devdax device
    or CPU-less NUMA node), ``throughput``, ``checker``, ``slow`` (skipped unless asked).
Fixtures
    ``hw_profile`` (a :class:`harness.profiles.Profile`), ``cxl_region`` (a mapped region for
    it, closed after the test), ``log_runner`` (runs a :class:`harness.log.LogConfig` on that
    region and records the result for the report), ``cxl_report`` (hand results, checks
    and targets to the session's report), ``cxl_discovery`` (the session's discovery).

Heavy modules (the C core, matplotlib) are imported only when a fixture or the report needs
them, so the plugin costs nothing to suites that do not use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from harness.hosts.pytest_support import add_pytest_option as add_hosts_pytest_option
from harness.hosts.pytest_support import cxl_hosts  # noqa: F401 - the fixture, registered with the plugin
from harness.plugin_session import (DEFAULT_PROFILE, DEVICE_BACKENDS, STATE_KEY, CxlSession, Outcome,
                                    device_probe, profile_names, session_summary, state_of, write_session_report)
from harness.results import Check, TargetCheck

if TYPE_CHECKING:
    from harness.discovery import Discovery
    from harness.log import LogConfig, LogResult
    from harness.profiles import Profile
    from harness.region import Region

MARKERS: dict[str, str] = {
    "needs_device": "needs a real CXL device (devdax or CPU-less NUMA node)",
    "throughput": "compares measured throughput against the profile's targets",
    "checker": "flush/fence and ordering checkers, fault catalogue",
    "slow": "long-running; excluded from CI by default",
}
_STATE = STATE_KEY
_profile_names = profile_names
_state = state_of


# ------------------------------------------------------------------------------------------
# Options and markers


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cxl-harness", "CXL shared-log hardware validation (cxl-harness)")
    group.addoption("--hw-profile", action="append", default=None, metavar="NAME",
                    help="hardware profile for the hw_profile fixture: a name, a .yaml path, or "
                         "'all' (repeatable; default: ci)")
    group.addoption("--cxl-device", default="auto", metavar="PATH|auto",
                    help="CXL device for every profile (/dev/daxX.Y, node:N); 'auto' (default): "
                         "each profile's own memory, discovery where it says auto")
    group.addoption("--cxl-report", default=None, metavar="DIR",
                    help="write the HTML report of this session to DIR/<timestamp>/ and DIR/latest")
    group.addoption("--cxl-allow-destructive", action="store_true", default=False,
                    help="consent to overwrite the contents of a real device")
    group.addoption("--cxl-sysfs-root", default="/", metavar="DIR",
                    help="root under which discovery reads sysfs (default: /; a fake tree for tests)")
    group.addoption("--run-slow", action="store_true", default=False,
                    help="run tests marked slow (also: CXL_SLOW=1)")
    add_hosts_pytest_option(group)


def pytest_configure(config: pytest.Config) -> None:
    declared = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    for name, doc in MARKERS.items():
        if name not in declared:  # pyproject may declare them already: add each once
            config.addinivalue_line("markers", f"{name}: {doc}")
    validate_options(config)
    state = CxlSession(config)
    config.stash[_STATE] = state
    if state.report_dir is not None:
        config.pluginmanager.register(_ReportPlugin(state), "cxl-harness-report")


def validate_options(config: pytest.Config) -> None:
    """A mistyped option is one usage error at start-up, not an error in every test using it."""
    from harness.errors import ProfileError
    from harness.profiles import load_profile

    for name in _profile_names(config):
        try:
            load_profile(name)
        except ProfileError as exc:
            raise pytest.UsageError(f"--hw-profile {name}: {exc}") from None
    device = config.getoption("--cxl-device")
    if device is not None and not str(device).strip():
        raise pytest.UsageError("--cxl-device '': empty device name (fix: pass /dev/daxX.Y, node:N, "
                                "a file path, or auto)")
    root = config.getoption("--cxl-sysfs-root")
    if not Path(root).is_dir():
        raise pytest.UsageError(f"--cxl-sysfs-root {root}: no such directory (fix: give the directory "
                                "holding sys/, default /)")


def _slow_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-slow")) or os.environ.get("CXL_SLOW", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    slow = None if _slow_enabled(config) else pytest.mark.skip(
        reason="slow test: pass --run-slow or set CXL_SLOW=1 to run it")
    for item in items:
        if slow is not None and item.get_closest_marker("slow") is not None:
            item.add_marker(slow)
        if item.get_closest_marker("needs_device") is not None:
            found, why = state.probe()
            if not found:
                item.add_marker(pytest.mark.skip(reason=f"needs a CXL device, none found: {why}"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hw_profile" in metafunc.fixturenames:
        names = _profile_names(metafunc.config)
        metafunc.parametrize("hw_profile", names, indirect=True, ids=[Path(n).stem for n in names])


# ------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def hw_profile(request: pytest.FixtureRequest) -> Profile:
    """The hardware profile of this test (parametrised over ``--hw-profile``)."""
    from harness.errors import ProfileError
    from harness.profiles import load_profile

    name = getattr(request, "param", None) or _profile_names(request.config)[0]
    try:
        return load_profile(name)
    except ProfileError as exc:
        raise pytest.UsageError(f"--hw-profile {name}: {exc}") from exc


@pytest.fixture(scope="session")
def cxl_discovery(request: pytest.FixtureRequest) -> Discovery:
    """What discovery found on this machine (or under ``--cxl-sysfs-root``)."""
    return _state(request).discovery


@pytest.fixture
def cxl_region(request: pytest.FixtureRequest, hw_profile: Profile) -> Iterator[Region]:
    """A mapped region of the profile's memory, sized for its workload with up to 8 brokers;
    the region carries the profile's device model. Skips (naming the probe) when
    the profile needs a device this machine does not have."""
    from harness.errors import DeviceError
    from harness.log import MAX_BROKERS
    from harness.log import workload_config as log_config
    from harness.runner import open_region

    state = _state(request)
    sizing = replace(log_config(hw_profile, order=2, variant="per-scanner", quick=False), brokers=MAX_BROKERS)
    stack = ExitStack()
    try:
        region = stack.enter_context(open_region(
            hw_profile, sizing, device=state.device, allow_destructive=state.allow_destructive,
            sysfs_root=state.sysfs_root))
    except DeviceError as exc:
        stack.close()
        found, why = state.probe()
        pytest.skip(f"profile {hw_profile.name}: {exc.problem}" + ("" if found else f" ({why})"))
    with stack:
        state.region_info = region.info().to_dict()
        yield region


class LogRunner:
    """``log_runner(cfg=None, *, label=None, **overrides)``: run the log on the test's region.

    ``cfg`` defaults to the profile's workload (Order 2, per-scanner, two subscribers);
    keyword overrides replace fields (``log_runner(order=0, variant="shared-mutex")``). The
    result is recorded for ``--cxl-report``."""

    def __init__(self, state: CxlSession, nodeid: str, profile: Profile, region: Region) -> None:
        self.state, self.nodeid, self.profile, self.region = state, nodeid, profile, region
        self.results: list[LogResult] = []

    def config(self, **overrides: Any) -> LogConfig:
        from harness.log import workload_config as log_config

        base = log_config(self.profile, order=2, variant="per-scanner", quick=False)
        return replace(base, **overrides) if overrides else base

    def __call__(self, cfg: LogConfig | None = None, *, label: str | None = None, **overrides: Any) -> LogResult:
        from harness.runlog import run_log

        if cfg is None:
            cfg = self.config(**overrides)
        elif overrides:
            cfg = replace(cfg, **overrides)
        result = run_log(cfg, region=self.region)
        self.results.append(result)
        self.state.record(self.nodeid, result, self.profile.name, label)
        return result


@pytest.fixture
def log_runner(request: pytest.FixtureRequest, hw_profile: Profile, cxl_region: Region) -> LogRunner:
    """A callable running a :class:`harness.log.LogConfig` on ``cxl_region``; see
    :class:`LogRunner`."""
    return LogRunner(_state(request), request.node.nodeid, hw_profile, cxl_region)


class ReportRecorder:
    """What a test hands to the session's report (``--cxl-report``); without that option the
    calls are still accepted (and kept on ``.session``) so tests need no conditionals."""

    def __init__(self, state: CxlSession, nodeid: str) -> None:
        self.session, self.nodeid = state, nodeid

    def add_result(self, result: LogResult, *, label: str | None = None, profile: str | None = None) -> None:
        """A LogResult this test produced (its figures become a run, its checks count)."""
        self.session.record(self.nodeid, result, profile or DEFAULT_PROFILE, label)

    def add_check(self, check_id: str, name: str, ok: bool, detail: str = "", *,
                  counterexamples: list[dict[str, Any]] | None = None, group: str = "ordering") -> None:
        """A check of your own (group: ordering, flush-fence, faults or targets)."""
        from harness.report.summary import CHECK_GROUPS

        if group not in CHECK_GROUPS:
            raise ValueError(f"group {group!r} is not one of {', '.join(CHECK_GROUPS)}")
        self.session.checks.append(Check(check_id, name, bool(ok), detail, list(counterexamples or []),
                                         group=group))

    def add_target(self, name: str, measured: float | None, target: float, *,
                   comparison: str = ">=", kind: str = "ratio", unit: str = "",
                   samples: Sequence[float] | None = None, precision: float = 0.03) -> bool:
        """A throughput/latency target; returns whether it was MET. With ``samples`` it is
        judged on their 95% interval (MET / MISSED / INCONCLUSIVE, harness.stats.judge);
        a single ``measured`` value has no interval and is judged as it stands."""
        from harness.stats import Samples, Verdict, judge

        if comparison not in (">=", "<="):
            raise ValueError("comparison is '>=' or '<='")
        if kind not in ("ratio", "absolute"):
            raise ValueError("kind is 'ratio' or 'absolute'")
        side: Literal["min", "max"] = "min" if comparison == ">=" else "max"
        if samples:
            st: Samples | None = Samples.of(samples)
            j = judge(Samples.of(samples), float(target), side, precision=precision)
            verdict, reason = j.verdict, j.reason
        elif measured is None:
            st, verdict, reason = None, Verdict.MISSED, "not measured"
        else:
            met = measured >= target if side == "min" else measured <= target
            st, verdict, reason = (Samples.of([float(measured)]), Verdict.MET if met else Verdict.MISSED,
                                   "one value, no interval")
        t = TargetCheck(name, "", "ratio" if kind == "ratio" else "absolute", float(target), side,
                        "pytest", None, st, verdict, reason, unit)
        self.session.targets.append(t)
        return t.ok


@pytest.fixture
def cxl_report(request: pytest.FixtureRequest) -> ReportRecorder:
    """Hand results, checks and targets to the session's HTML report; see
    :class:`ReportRecorder`."""
    return ReportRecorder(_state(request), request.node.nodeid)


# ------------------------------------------------------------------------------------------
# The session's report


def _group_of(item: pytest.Item) -> str:
    if item.get_closest_marker("throughput") is not None:
        return "targets"
    if item.get_closest_marker("checker") is not None:
        return "flush-fence"
    return "ordering"


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


class _ReportPlugin:
    """Collects per-test outcomes and writes the report at the end of the session."""

    def __init__(self, state: CxlSession) -> None:
        self.state = state
        self.groups: dict[str, str] = {}
        self.written: tuple[Path, Path, bool] | None = None
        self.error: str | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.groups = {item.nodeid: _group_of(item) for item in items}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        state = self.state
        current = state.outcomes.get(report.nodeid)
        location = f"{report.location[0]}:{(report.location[1] or 0) + 1}"
        detail = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            lines = str(report.longrepr).strip().splitlines()
            detail = crash.message if crash is not None else (lines[-1] if lines else "failed")
            if crash is not None:  # where it failed, not where the test starts
                location = f"{_relative(crash.path, self.state.config.rootpath)}:{crash.lineno}"
        elif report.skipped and isinstance(report.longrepr, tuple):
            detail = str(report.longrepr[2])
        outcome = Outcome(report.nodeid, report.outcome, self.groups.get(report.nodeid, "ordering"),
                              detail, location, report.when, report.duration)
        if current is None or report.failed or (report.when == "call" and current.outcome != "failed"):
            if current is not None:
                outcome.duration_s += current.duration_s
            state.outcomes[report.nodeid] = outcome
        elif current is not None:
            current.duration_s += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        try:
            self.written = write_session_report(self.state, session.config)
        except Exception as exc:  # noqa: BLE001 - a report failure must not hide test results
            self.error = f"{type(exc).__name__}: {exc}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.error is not None:
            terminalreporter.write_line(f"cxl-harness: could not write the report: {self.error}", red=True)
        elif self.written is not None:
            run_dir, report, ok = self.written
            terminalreporter.write_line(
                f"cxl-harness report: {report} ({'PASS' if ok else 'FAIL'}; latest -> {run_dir.name})")


__all__ = [
    "DEFAULT_PROFILE",
    "DEVICE_BACKENDS",
    "MARKERS",
    "CxlSession",
    "LogRunner",
    "ReportRecorder",
    "device_probe",
    "session_summary",
    "write_session_report",
]
