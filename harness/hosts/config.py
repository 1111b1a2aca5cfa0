"""The hosts file: which hosts map the shared region, how to reach them, which roles each runs.

YAML validated against ``schema.json`` beside this module, then the cross-host rules: every
broker's publishers on exactly one host, exactly one host with the sequencer (and the scanners
with it), subscriber indices dense and unique, exactly one formatting host.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.errors import ConfigError
from harness.log import MAX_BROKERS, MAX_SUBSCRIBERS, ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig

DEFAULT_CONNECT_S = 60.0
DEFAULT_SILENCE_S = 15.0


@dataclass(frozen=True)
class HostSpec:
    """One host of a hosts file."""

    name: str
    gateway: str  # "popen" or "ssh=..."
    device: str
    publishers: tuple[int, ...] = ()
    sequencer: bool = False
    subscribers: tuple[int, ...] = ()
    python: str | None = None
    ssh_config: str | None = None
    chdir: str | None = None
    create: bool = False
    format: bool = False

    @property
    def roles(self) -> int:
        return ((ROLE_PUBLISHERS if self.publishers else 0) | (ROLE_SCANNERS if self.sequencer else 0)
                | (ROLE_SUBSCRIBERS if self.subscribers else 0))

    @property
    def pub_brokers(self) -> int:
        return sum(1 << b for b in self.publishers)

    @property
    def sub_mask(self) -> int:
        return sum(1 << k for k in self.subscribers)

    @property
    def start_rank(self) -> int:
        """Start order: sequencer/scanners first, then subscribers, then publishers."""
        return 0 if self.sequencer else 1 if self.subscribers else 2

    def describe_roles(self) -> str:
        parts = []
        if self.sequencer:
            parts.append("sequencer + scanners")
        if self.subscribers:
            parts.append("subscribers " + ", ".join(map(str, self.subscribers)))
        if self.publishers:
            parts.append("publishers of brokers " + ", ".join(map(str, self.publishers)))
        return "; ".join(parts)

    def execnet_spec(self) -> str:
        """The execnet gateway spec for this host."""
        python = self.python or (sys.executable if self.gateway == "popen" else "python3")
        spec = f"{self.gateway}//python={python}"
        if self.ssh_config:
            spec += f"//ssh_config={self.ssh_config}"
        if self.chdir:
            spec += f"//chdir={self.chdir}"
        return spec + f"//id={self.name}"


@dataclass(frozen=True)
class HostsFile:
    hosts: tuple[HostSpec, ...]
    profile: str | None = None
    allow_destructive: bool = False
    connect_s: float = DEFAULT_CONNECT_S
    silence_s: float = DEFAULT_SILENCE_S
    run_s: float | None = None
    source: str = "hosts file"
    brokers: int = field(init=False)
    subscribers: int = field(init=False)

    def __post_init__(self) -> None:
        pubs = sorted(b for h in self.hosts for b in h.publishers)
        subs = sorted(k for h in self.hosts for k in h.subscribers)
        object.__setattr__(self, "brokers", len(pubs))
        object.__setattr__(self, "subscribers", len(subs))

    @property
    def format_host(self) -> HostSpec:
        return next(h for h in self.hosts if h.format)

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"no host named {name!r} in {self.source}",
                          f"use one of: {', '.join(h.name for h in self.hosts)}")

    def apply(self, cfg: LogConfig) -> LogConfig:
        """``cfg`` with the brokers and subscribers the placement defines, shared-file mode."""
        return replace(cfg, brokers=self.brokers, subscribers=self.subscribers, processes=True)


def schema() -> dict[str, Any]:
    text = resources.files("harness.hosts").joinpath("schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_hosts(path: str | Path) -> HostsFile:
    """Read and validate a hosts file; every problem is named with its key path."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read hosts file {p}: {exc.strerror}",
                          "pass an existing YAML file (see docs/multi-host.md)") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {str(exc).splitlines()[0]}", "fix the YAML syntax") from None
    return parse_hosts(doc, str(p))


def parse_hosts(doc: Any, source: str = "hosts file") -> HostsFile:
    from harness.profiles import _format

    validator = jsonschema.Draft202012Validator(schema())
    problems = [line for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
                for line in _format(err)]
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems[:5]), "see docs/multi-host.md for the hosts file format")
    hosts = [_host(h) for h in doc["hosts"]]
    problems = _semantic(hosts)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems), "see docs/multi-host.md for the hosts file format")
    timeouts = doc.get("timeouts", {})
    return HostsFile(hosts=tuple(hosts), profile=doc.get("profile"),
                     allow_destructive=bool(doc.get("allow_destructive", False)),
                     connect_s=float(timeouts.get("connect_s", DEFAULT_CONNECT_S)),
                     silence_s=float(timeouts.get("silence_s", DEFAULT_SILENCE_S)),
                     run_s=float(timeouts["run_s"]) if "run_s" in timeouts else None, source=source)


def _host(h: dict[str, Any]) -> HostSpec:
    roles = h["roles"]
    subs = roles.get("subscribers", ())
    return HostSpec(
        name=h["name"], gateway=h["gateway"], device=h["device"],
        publishers=tuple(sorted(roles.get("publishers", ()))),
        sequencer=bool(roles.get("sequencer", False)) or roles.get("scanners") == "all",
        subscribers=tuple(sorted(subs)) if isinstance(subs, list) else (-int(subs),) if subs else (),
        python=h.get("python"), ssh_config=h.get("ssh_config"), chdir=h.get("chdir"),
        create=bool(h.get("create", False)), format=bool(h.get("format", False)))


def _semantic(hosts: list[HostSpec]) -> list[str]:
    problems: list[str] = []
    names = [h.name for h in hosts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"host names must be unique: {', '.join(dup)} repeated")
    # Subscribers given as a count (stored as one negative number) get the next free indices.
    taken = {k for h in hosts for k in h.subscribers if k >= 0}
    nxt = 0
    for i, h in enumerate(hosts):
        if h.subscribers and h.subscribers[0] < 0:
            want, got = -h.subscribers[0], list[int]()
            while len(got) < want:
                if nxt not in taken:
                    got.append(nxt)
                nxt += 1
            hosts[i] = h = replace(h, subscribers=tuple(got))
    owner: dict[int, str] = {}
    for h in hosts:
        if not h.roles:
            problems.append(f"host {h.name}: no roles (give publishers, sequencer or subscribers)")
        for b in h.publishers:
            if b in owner:
                problems.append(f"broker {b}'s publishers are placed on both {owner[b]} and {h.name}")
            owner[b] = h.name
    brokers = sorted(owner)
    if not brokers:
        problems.append("no host runs publishers (give roles.publishers: [0, ...] to some host)")
    elif brokers != list(range(len(brokers))) or len(brokers) > MAX_BROKERS:
        problems.append(f"publishers cover brokers {brokers}; they must be 0..N-1 with N <= {MAX_BROKERS}")
    subs: dict[int, str] = {}
    for h in hosts:
        for k in h.subscribers:
            if k in subs:
                problems.append(f"subscriber {k} is placed on both {subs[k]} and {h.name}")
            subs[k] = h.name
    if sorted(subs) != list(range(len(subs))) or len(subs) > MAX_SUBSCRIBERS:
        problems.append(f"subscribers {sorted(subs)} must be 0..K-1 with K <= {MAX_SUBSCRIBERS}")
    seq = [h.name for h in hosts if h.sequencer]
    if len(seq) != 1:
        problems.append(f"exactly one host runs the sequencer (and the scanners with it); "
                        f"{'none does' if not seq else 'several do: ' + ', '.join(seq)}")
    fmt = [h.name for h in hosts if h.format]
    if len(fmt) > 1:
        problems.append(f"exactly one host formats the region; several do: {', '.join(fmt)}")
    elif not fmt and len(seq) == 1:
        i = names.index(seq[0])
        hosts[i] = replace(hosts[i], format=True)
    for h in hosts:
        if h.create and not h.format:
            problems.append(f"host {h.name}: create: true is for the formatting host only")
        if h.create and h.device.startswith("/dev/dax"):
            problems.append(f"host {h.name}: create: true is for a region file, not {h.device}")
        if h.device.startswith("node:"):
            problems.append(f"host {h.name}: {h.device} is private memory of one process; "
                            "name a /dev/daxN.M device or a shared file")
        if h.ssh_config is not None and not h.gateway.startswith("ssh="):
            problems.append(f"host {h.name}: ssh_config is only used with an ssh= gateway")
    return problems
