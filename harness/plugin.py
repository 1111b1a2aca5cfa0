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

import datetime as _dt
import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from harness.hosts.pytest_support import add_pytest_option as add_hosts_pytest_option
from harness.hosts.pytest_support import cxl_hosts  # noqa: F401 - the fixture, registered with the plugin

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
DEVICE_BACKENDS = ("devdax", "numa")
DEFAULT_PROFILE = "ci"
_STATE = pytest.StashKey["CxlSession"]()


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


def _profile_names(config: pytest.Config) -> list[str]:
    values: list[str] = config.getoption("--hw-profile") or [DEFAULT_PROFILE]
    names: list[str] = []
    for value in values:
        if value == "all":
            from harness.profiles import list_profiles

            names.extend(list_profiles())
        else:
            names.extend(v for v in value.split(",") if v)
    return list(dict.fromkeys(names))


def _slow_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-slow")) or os.environ.get("CXL_SLOW", "") not in ("", "0")


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
# Session state: discovery, and what the tests ran (for the report)


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
        self.checks: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
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


def _state(request: pytest.FixtureRequest) -> CxlSession:
    return request.config.stash[_STATE]


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
        self.session.checks.append({"id": check_id, "name": name, "group": group, "ok": bool(ok),
                                    "detail": detail, "counterexamples": list(counterexamples or [])})

    def add_target(self, name: str, measured: float | None, target: float, *,
                   comparison: str = ">=", kind: str = "ratio", unit: str = "",
                   samples: Sequence[float] | None = None, precision: float = 0.03) -> bool:
        """A throughput/latency target; returns whether it was MET. With ``samples`` it is
        judged on their 95% interval (MET / MISSED / INCONCLUSIVE, harness.stats.judge);
        a single ``measured`` value has no interval and is judged as it stands."""
        from harness.stats import Samples, Verdict, judge

        if comparison not in (">=", "<="):
            raise ValueError("comparison is '>=' or '<='")
        side: Literal["min", "max"] = "min" if comparison == ">=" else "max"
        item: dict[str, Any] = {"name": name, "kind": kind, "bound": float(target),
                                "comparison": comparison, "unit": unit}
        if samples:
            st = Samples.of(samples)
            j = judge(st, float(target), side, precision=precision)
            item.update(verdict=j.verdict.value, reason=j.reason, measured=st.median,
                        interval=list(st.interval), n=st.n, samples=list(st.values))
        elif measured is None:
            item.update(verdict=Verdict.MISSED.value, reason="not measured", measured=None,
                        interval=None, n=0)
        else:
            met = measured >= target if side == "min" else measured <= target
            item.update(verdict=(Verdict.MET if met else Verdict.MISSED).value,
                        reason="one value, no interval", measured=float(measured),
                        interval=None, n=1)
        item["ok"] = item["verdict"] == Verdict.MET.value
        self.session.targets.append(item)
        return bool(item["ok"])


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
    from harness.hosts.pytest_support import add_hosts_section
    from harness.profiles import load_profile
    from harness.report.summary import SCHEMA_ID

    tests = [o for o in state.outcomes.values() if o.outcome != "skipped"]
    skipped = [o for o in state.outcomes.values() if o.outcome == "skipped"]
    checks: list[dict[str, Any]] = []
    for o in tests:
        examples = [] if o.outcome == "passed" else [
            {"test": o.nodeid, "phase": o.phase, "location": o.location, "message": o.detail}]
        checks.append({"id": f"test:{o.nodeid}", "name": o.nodeid, "group": o.group,
                       "ok": o.outcome == "passed",
                       "detail": (f"passed in {o.duration_s:.2f} s" if o.outcome == "passed"
                                  else f"{o.outcome} in {o.phase}: {o.detail}"),
                       "counterexamples": examples})
    checks.extend(ordering_checks([(r.label, r.nodeid, r.result) for r in state.runs]))
    seen = {c["id"] for c in checks}
    for c in state.checks:
        ident, n = c["id"], 2
        while ident in seen:
            ident, n = f"{c['id']}#{n}", n + 1
        seen.add(ident)
        checks.append({**c, "id": ident})

    names = state.profiles_used or _profile_names(config)
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
        "checks": checks,
        "runs": [run_entry(r.label, r.result) for r in state.runs],
        "targets": list(state.targets),
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


__all__ = [
    "MARKERS",
    "CxlSession",
    "LogRunner",
    "ReportRecorder",
    "device_probe",
    "session_summary",
    "write_session_report",
]
