"""A hosts placement on the non-coherent model, with every finding attributed to its host.

The model (checked build, :func:`harness.checked.run_checked`) runs in one process with a
seeded scheduler, and every role is its own agent with its own software cache: a line one
role wrote is visible to another only after the writer flushed and fenced it and the reader
invalidated it. That is finer than one agent per host, so every missing flush, fence or
invalidation between roles on different hosts is caught; here each finding (and each failed
check's counterexample) is named with the host the hosts file places its role on.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from harness.hosts.config import HostsFile
from harness.log import LogConfig, LogResult
from harness.profiles import DeviceModel


@dataclass
class HostFinding:
    rule: str
    location: str  # source file:line of the access
    agent: str
    host: str | None
    other_agent: str | None
    other_host: str | None
    count: int
    detail: str


@dataclass
class ModelHostsRun:
    result: LogResult
    findings: list[HostFinding] = field(default_factory=list)
    events: int = 0

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "result": self.result.to_dict(), "findings": [asdict(f) for f in self.findings],
                "events": self.events}


def role_hosts(hosts: HostsFile, cfg: LogConfig) -> dict[str, str]:
    """Agent name (as :func:`harness.checked.agent_name` writes it) -> host name."""
    out: dict[str, str] = {}
    seq = next(h.name for h in hosts.hosts if h.sequencer)
    for h in hosts.hosts:
        for b in h.publishers:
            for j in range(cfg.publishers_per_broker):
                out[f"publisher {b * cfg.publishers_per_broker + j}"] = h.name
        for k in h.subscribers:
            out[f"subscriber {k}"] = h.name
    for b in range(hosts.brokers):
        out[f"scanner of broker {b}"] = seq
    out["sequencer"] = seq
    return out


def host_of(agent: str | None, where: dict[str, str]) -> str | None:
    if agent is None:
        return None
    return where.get(agent) or where.get(re.sub(r"\s*\(.*\)$", "", agent))


def run_model_on_hosts(hosts: HostsFile, cfg: LogConfig, fault: str | None = None,
                       device_model: DeviceModel | None = None) -> ModelHostsRun:
    """The placement's configuration on the model (small enough for it), findings by host;
    the region carries ``device_model`` (the profile's, e.g. emulated-cxl-pooled)."""
    from harness.checked import run_checked
    from harness.hosts.coordinator import _attribute_example

    cfg = replace(hosts.apply(cfg), processes=False)
    run = run_checked(cfg, fault, device_model=device_model)
    where = role_hosts(hosts, cfg)
    findings = [HostFinding(f.rule, f.location, f.agent, host_of(f.agent, where), f.other_agent,
                            host_of(f.other_agent, where), f.count, f.describe()) for f in run.errors]
    pubs = {b: h.name for h in hosts.hosts for b in h.publishers}
    subs = {k: h.name for h in hosts.hosts for k in h.subscribers}
    seq = where["sequencer"]
    for check in run.result.failed():
        for ex in check.counterexamples:
            _attribute_example(ex, pubs, subs, seq)
    return ModelHostsRun(run.result, findings, run.events)
