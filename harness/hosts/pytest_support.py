"""The pytest plugin's multi-host part: ``--cxl-hosts FILE`` and the ``cxl_hosts`` fixture.

``cxl_hosts(cfg=None, *, label=None, **overrides)`` runs a :class:`harness.log.LogConfig`
with its roles placed on the hosts of ``--cxl-hosts`` (brokers and subscribers from the
file) and returns the :class:`harness.hosts.HostsRun`; the merged result is recorded for
``--cxl-report`` like ``log_runner``'s, and the report gains the Hosts section. Without
``--cxl-hosts`` a test using the fixture is skipped, saying so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.hosts.coordinator import HostsRun

from harness.plugin_session import HOSTS_KEY


def add_pytest_option(group: Any) -> None:
    group.addoption("--cxl-hosts", default=None, metavar="FILE",
                    help="hosts file (YAML, docs/multi-host.md): the cxl_hosts fixture places the roles "
                         "on these hosts, sharing one CXL region")


class HostsRunner:
    def __init__(self, request: pytest.FixtureRequest, path: str) -> None:
        from harness.hosts.config import load_hosts

        self.request = request
        self.hosts = load_hosts(path)
        self.runs: list[HostsRun] = []

    def __call__(self, cfg: Any = None, *, label: str | None = None, **overrides: Any) -> HostsRun:
        from harness.hosts.coordinator import run_hosts
        from harness.log import LogConfig
        from harness.plugin_session import profile_names, state_of

        config = self.request.config
        profile = self.hosts.profile or profile_names(config)[0]
        cfg = cfg if cfg is not None else LogConfig()
        cfg = replace(cfg, **overrides) if overrides else cfg
        state = state_of(self.request)
        run = run_hosts(self.hosts, cfg, profile=profile, allow_destructive=state.allow_destructive)
        self.runs.append(run)
        config.stash.setdefault(HOSTS_KEY, []).append(run)
        if run.result is not None:
            state.record(self.request.node.nodeid, run.result, profile,
                         label or f"hosts/order{run.result.order}/{run.result.variant}")
        return run


@pytest.fixture
def cxl_hosts(request: pytest.FixtureRequest) -> HostsRunner:
    """Runs the log with its roles placed on the ``--cxl-hosts`` hosts; see the module."""
    path = request.config.getoption("--cxl-hosts")
    if not path:
        pytest.skip("no --cxl-hosts FILE given (a hosts file, see docs/multi-host.md)")
    return HostsRunner(request, str(path))
