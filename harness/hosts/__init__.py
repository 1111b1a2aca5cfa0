"""Several hosts on one shared CXL region: placement (hosts file), execnet workers, merge.

Names are imported on first use, so the pytest plugin can offer ``--cxl-hosts`` without
loading execnet or numpy in suites that never use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.hosts.config import HostsFile, HostSpec, load_hosts, parse_hosts
    from harness.hosts.coordinator import HostError, HostFailure, HostFigures, HostsRun, run_hosts

_WHERE = {"HostsFile": "config", "HostSpec": "config", "load_hosts": "config", "parse_hosts": "config",
          "HostError": "coordinator", "HostFailure": "coordinator", "HostFigures": "coordinator",
          "HostsRun": "coordinator", "run_hosts": "coordinator"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"harness.hosts.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'harness.hosts' has no attribute {name!r}")
