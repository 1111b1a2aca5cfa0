"""Several hosts on one shared CXL region: placement (hosts file), execnet workers, merge."""

from __future__ import annotations

from harness.hosts.config import HostsFile, HostSpec, load_hosts, parse_hosts
from harness.hosts.coordinator import HostError, HostFailure, HostFigures, HostsRun, run_hosts

__all__ = ["HostError", "HostFailure", "HostFigures", "HostSpec", "HostsFile", "HostsRun", "load_hosts",
           "parse_hosts", "run_hosts"]
