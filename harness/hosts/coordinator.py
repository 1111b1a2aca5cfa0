"""The coordinator of a multi-host run: one execnet worker per host over one shared region.

Sequence: start every worker (execnet gateway + :mod:`harness.hosts.remote`), which checks that
its host has the same cxl-harness version; ``open`` on the formatting host (format), then on
the others (attach and check the geometry); ``run`` in start order (sequencer and scanners,
then subscribers, then publishers), each host's start acknowledged before the next; progress
streamed while the roles run; every host's statistics and records merged into one result
(:func:`harness.log.merge_stats`, :func:`merge_records`, :func:`build_result`, so the same
checks as a one-host run) plus per-host figures; ``close``; gateways ended.

Every wait has a timeout; a host whose channel closes, whose worker dies, or that sends
nothing for ``silence_s`` is reported by name (:class:`HostFailure`). A host that dies while
only publishers ran on it, on a configuration with a slot timeout, leaves the others running:
its claimed slots are resolved as lost and the other brokers keep ordering; the run then fails
its completion checks and names the host. Any other death stops the run. Every remote role is
ended on the way out, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import execnet
import numpy as np

import harness
from harness.errors import HarnessError
from harness.hosts.config import HostsFile, HostSpec
from harness.hosts.worker import channels_path, shift_times, unpack
from harness.log import Latency, LogConfig, LogResult, merge_records, merge_stats, region_size
from harness.invariants import CheckContext
from harness.runlog import build_result
from harness.region import RegionInfo

_CLOSED = "__channel_closed__"


class HostError(HarnessError):
    """A host could not be reached, refused the run, or failed during it."""

    def __init__(self, host: str, problem: str, fix: str | None = None) -> None:
        self.host = host
        super().__init__(f"host {host}: {problem}", fix)


@dataclass
class HostFailure:
    host: str
    phase: str  # connect | open | run | close
    message: str
    detected_s: float  # coordinator's monotonic time when it noticed (time.monotonic())


@dataclass
class HostFigures:
    """What one host did: identity, roles, its own figures (on its own clock)."""

    name: str
    gateway: str
    device: str
    roles: str
    identity: dict[str, Any]
    region: dict[str, Any] = field(default_factory=dict)
    rc: int | None = None
    messages_published: int = 0
    payload_bytes: int = 0
    elapsed_s: float = 0.0
    throughput_mib_s: float = 0.0
    latency_ns: dict[str, float] = field(default_factory=dict)
    messages_delivered: int = 0
    batches_ordered: int = 0
    batches_lost: int = 0
    start_s: float = 0.0  # worker start and version check
    # this host's CLOCK_MONOTONIC minus the coordinator's, +/- half the best round trip;
    # applied to its records only when it is another machine (other boot id)
    clock_offset_ns: int = 0
    clock_uncertainty_ns: int = 0
    clock_aligned: bool = False
    failed: str | None = None


@dataclass
class HostsRun:
    """The merged result of a multi-host run, and what each host did."""

    result: LogResult | None
    hosts: list[HostFigures]
    failures: list[HostFailure]
    start_s: float  # all workers started and checked
    open_s: float
    run_s: float
    teardown_s: float

    @property
    def ok(self) -> bool:
        return not self.failures and self.result is not None and self.result.ok

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "result": self.result.to_dict() if self.result else None,
                "hosts": [asdict(h) for h in self.hosts], "failures": [asdict(f) for f in self.failures],
                "timings_s": {"start": self.start_s, "open": self.open_s, "run": self.run_s,
                              "teardown": self.teardown_s}}


class Coordinator:
    """Drives one multi-host run; use :func:`run_hosts`."""

    def __init__(self, hosts: HostsFile, cfg: LogConfig, *, profile: str | None = None,
                 allow_destructive: bool = False, progress: Callable[[str], None] | None = None,
                 version: str | None = None) -> None:
        self.hosts = hosts
        self.cfg = hosts.apply(cfg)
        self.profile = profile if profile is not None else hosts.profile
        self.allow_destructive = allow_destructive or hosts.allow_destructive
        self.say = progress or (lambda _text: None)
        self.version = version or harness.__version__
        self.group = execnet.Group()
        self.channels: dict[str, Any] = {}
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.pending: dict[str, deque[Any]] = {h.name: deque() for h in hosts.hosts}
        self.closed: set[str] = set()
        self.figures: dict[str, HostFigures] = {}
        self.failures: list[HostFailure] = []
        self.on_started: Callable[[HostFigures], None] | None = None  # tests: a hook after start
        self.created_region = False  # the formatting host created the region file

    # -- messages ---------------------------------------------------------------------------
    def _attach(self, name: str, channel: Any) -> None:
        self.channels[name] = channel
        channel.setcallback(lambda msg: self.inbox.put((name, msg)), endmarker=_CLOSED)

    def _pull(self, timeout: float) -> bool:
        try:
            name, msg = self.inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        if msg == _CLOSED:
            self.closed.add(name)
        else:
            self.pending[name].append(msg)
        return True

    def _reply(self, name: str, timeout: float, phase: str) -> dict[str, Any]:
        """The next message from ``name``; a HostError if it closes or says nothing in time."""
        end = time.monotonic() + timeout
        while not self.pending[name]:
            if name in self.closed:
                raise self._lost(name, phase)
            if not self._pull(end - time.monotonic()) and time.monotonic() >= end:
                raise HostError(name, f"sent nothing for {timeout:.0f}s during {phase}",
                                "check the host is up and not overloaded; raise timeouts in the hosts file")
        msg: dict[str, Any] = self.pending[name].popleft()
        if "error" in msg:
            raise HostError(name, str(msg["error"]), str(msg.get("fix") or "") or None)
        return msg

    def _lost(self, name: str, phase: str) -> HostError:
        err = self.channels[name]._getremoteerror() if name in self.channels else None
        why = str(err).strip().splitlines()[-1] if err else "its worker exited or the connection dropped"
        return HostError(name, f"disconnected during {phase}: {why}",
                         "see that host's logs; the run was stopped and every other host's roles ended")

    def _send(self, name: str, msg: dict[str, Any], phase: str) -> None:
        try:
            self.channels[name].send(msg)
        except (OSError, EOFError, ValueError) as exc:
            raise HostError(name, f"cannot send the {phase} request: {exc}", "check the host is reachable") from None

    # -- phases -----------------------------------------------------------------------------
    def start(self) -> None:
        here = __import__("harness.hosts.remote", fromlist=["main"])
        for h in self.hosts.hosts:
            t0 = time.monotonic()
            try:
                gw = self.group.makegateway(h.execnet_spec())
            except Exception as exc:  # noqa: BLE001 - execnet raises many kinds; named by host
                raise HostError(h.name, f"cannot start a worker through {h.gateway}: {_one_line(exc)}",
                                "check the gateway (ssh keys, host name) and the python: path") from None
            try:
                self._attach(h.name, gw.remote_exec(here))
            except (OSError, EOFError) as exc:
                raise HostError(h.name, f"its worker did not start through {h.gateway} ({h.execnet_spec()}): "
                                f"{_one_line(exc)}",
                                "check that the python: path exists on that host and the login works") from None
            self._send(h.name, {"version": self.version, "host": h.name}, "connect")
            hello = self._reply(h.name, self.hosts.connect_s, "connect")
            self.figures[h.name] = HostFigures(h.name, h.gateway, h.device, h.describe_roles(),
                                               hello["identity"], start_s=time.monotonic() - t0)
            self._clock(h.name)
            self.say(f"host {h.name}: {hello['identity']['hostname']} pid {hello['identity']['pid']}, "
                     f"cxl-harness {hello['identity']['package_version']}, {h.describe_roles()}")

    def _clock(self, name: str, pings: int = 7) -> None:
        """Estimate the host's clock offset from the round trip with the smallest delay."""
        best: tuple[int, int] | None = None
        for _ in range(pings):
            t0 = time.monotonic_ns()
            self._send(name, {"op": "clock"}, "clock")
            remote = int(self._reply(name, self.hosts.connect_s, "clock")["ns"])
            t1 = time.monotonic_ns()
            if best is None or t1 - t0 < best[1]:
                best = (remote - (t0 + t1) // 2, t1 - t0)
        assert best is not None
        f = self.figures[name]
        f.clock_offset_ns, f.clock_uncertainty_ns = best[0], best[1] // 2
        f.clock_aligned = f.identity.get("boot_id") != _boot_id()

    def open(self) -> None:
        size = region_size(self.cfg)
        fmt = self.hosts.format_host
        order = [fmt] + [h for h in self.hosts.hosts if h is not fmt]
        for h in order:
            self._send(h.name, {"op": "open", "config": asdict(self.cfg), "device": h.device, "size": size,
                                "format": h.format, "create": h.create, "profile": self.profile,
                                "allow_destructive": self.allow_destructive}, "open")
            reply = self._reply(h.name, self.hosts.connect_s, "open")
            self.figures[h.name].region = reply["region"]
            if h is fmt and h.create:
                self.created_region = True

    def run(self) -> dict[str, dict[str, Any]]:
        started = sorted(self.hosts.hosts, key=lambda h: h.start_rank)
        for h in started:
            self._send(h.name, {"op": "run", "roles": h.roles, "pub_brokers": h.pub_brokers,
                                "sub_mask": h.sub_mask, "progress_s": 0.5}, "run")
            if self._reply(h.name, self.hosts.connect_s, "run start").get("event") != "started":
                raise HostError(h.name, "did not confirm the start of its roles", "use the same package version")
            self.say(f"host {h.name}: started {h.describe_roles()}")
            if self.on_started is not None:
                self.on_started(self.figures[h.name])
        return self._collect()

    def _collect(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        names = [h.name for h in self.hosts.hosts]
        run_s = self.hosts.run_s or self.cfg.watchdog_s + 120.0
        deadline = time.monotonic() + run_s
        heard = {n: time.monotonic() for n in names}
        last_say = time.monotonic()
        while len(done) + len({f.host for f in self.failures}) < len(names):
            now = time.monotonic()
            if now > deadline:
                raise HostError(",".join(n for n in names if n not in done), f"not finished after {run_s:.0f}s",
                                "raise timeouts.run_s, or see the watchdog settings")
            self._pull(min(0.25, deadline - now))
            for n in names:
                if n in done or any(f.host == n for f in self.failures):
                    continue
                while self.pending[n]:
                    msg = self.pending[n].popleft()
                    heard[n] = time.monotonic()
                    if "error" in msg:
                        self._fail(n, "run", str(msg["error"]))
                    elif msg.get("event") == "done":
                        done[n] = msg
                    elif msg.get("event") == "progress" and time.monotonic() - last_say > 2.0:
                        last_say = time.monotonic()
                        self.say(f"host {n}: {msg['progress']:,} messages ordered after {msg['t']:.1f}s")
                if n not in done and n in self.closed and not self.pending[n]:
                    self._fail(n, "run", str(self._lost(n, "run").problem))
                elif n not in done and time.monotonic() - heard[n] > self.hosts.silence_s:
                    self._fail(n, "run", f"sent nothing for {self.hosts.silence_s:.0f}s while running")
        return done

    def _fail(self, name: str, phase: str, message: str) -> None:
        failure = HostFailure(name, phase, message.removeprefix(f"host {name}: "), time.monotonic())
        self.failures.append(failure)
        self.figures[name].failed = failure.message
        self.say(f"host {name}: FAILED during {phase}: {failure.message}")
        spec = self.hosts.host(name)
        survivable = (self.cfg.slot_timeout_ms > 0 and not spec.sequencer and not spec.subscribers)
        if not survivable:
            raise HostError(name, failure.message if phase in failure.message else
                            f"failed during {phase}: {failure.message}",
                            "see that host; every other host's roles were ended")
        self.say(f"host {name} ran only publishers: its claimed slots resolve as lost after "
                 f"{self.cfg.slot_timeout_ms:g} ms, the other hosts keep ordering")

    def close(self) -> None:
        """Close every worker politely, then end every gateway (kills what did not close)."""
        for name, ch in self.channels.items():
            if name in self.closed:
                continue
            try:
                ch.send({"op": "close"})
            except (OSError, EOFError, ValueError):
                continue
        end = time.monotonic() + 10.0
        for name in self.channels:
            while name not in self.closed and time.monotonic() < end:
                self._pull(end - time.monotonic())
        self.abort()

    def abort(self) -> None:
        for name, ch in self.channels.items():
            if name not in self.closed:
                try:
                    ch.send({"op": "abort"})
                except (OSError, EOFError, ValueError):
                    pass
        self.group.terminate(timeout=5.0)
        self._remove_orphaned_region()

    def _remove_orphaned_region(self) -> None:
        """A region file created by a worker that died before it could remove it: when that
        host is this machine (popen), the coordinator removes it."""
        fmt = self.hosts.format_host
        if fmt.gateway != "popen" or fmt.device.startswith("/dev/dax"):
            return
        # the device model's channel file, which the formatting host makes beside the region
        left = [channels_path(Path(fmt.device))] + ([Path(fmt.device)] if self.created_region else [])
        for path in left:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # -- results ----------------------------------------------------------------------------
    def merge(self, done: dict[str, dict[str, Any]]) -> LogResult:
        parts_stats: list[dict[str, Any]] = []
        parts_recs: list[dict[str, Any] | None] = []
        for h in self.hosts.hosts:
            msg = done.get(h.name)
            if msg is None:
                continue
            host_stats: dict[str, Any] = msg["stats"]
            host_recs = {k: unpack(v) for k, v in msg["records"].items()}
            f = self.figures[h.name]
            if f.clock_aligned:  # another machine: its timestamps onto the coordinator's clock
                shift_times(host_recs, host_stats, -f.clock_offset_ns)
            parts_stats.append(host_stats)
            parts_recs.append(host_recs)
            self._figures(h, int(msg["rc"]), host_stats)
        stats = merge_stats(parts_stats)
        # aligned clocks are known only to within each host's half round trip: two events of
        # two such hosts are ordered only when further apart than both uncertainties together
        u = sorted((f.clock_uncertainty_ns for f in self.figures.values() if f.clock_aligned), reverse=True)
        context = CheckContext(clock_uncertainty_ns=int(sum(u[:2])))
        stats["placement"] = {**stats.get("placement", {}), "scheduling": "hosts",
                              "hosts": {n: f.roles for n, f in self.figures.items()}}
        if self.failures:
            stats["stalled"] = 1
        recs = merge_records(parts_recs) if self.cfg.recording else None
        for h in self.hosts.hosts:
            if recs is not None and h.name in done and h.publishers:
                self.figures[h.name].latency_ns = host_commit_latency(recs, h.publishers)
        rc = max((int(m["rc"]) for m in done.values()), default=1)
        fmt = self.figures[self.hosts.format_host.name].region
        result = build_result(self.cfg, stats, recs, RegionInfo(**fmt), rc, True, processes=len(done),
                              context=context)
        self._attribute(result)
        if recs is not None and any(f.clock_aligned for f in self.figures.values()):
            # the core's histogram subtracts a publisher's clock from the sequencer's: on
            # separate machines, the latency comes from the aligned records instead
            lat = host_commit_latency(recs, tuple(range(self.cfg.brokers)))
            result = replace(result, latency=Latency(lat["p50"], lat["p99"], lat["p999"], int(lat["samples"])))
        return result

    def _attribute(self, result: LogResult) -> None:
        """Name the host behind each counterexample: the publishers' host of its broker,
        the host of its subscriber."""
        pubs = {b: h.name for h in self.hosts.hosts for b in h.publishers}
        subs = {k: h.name for h in self.hosts.hosts for k in h.subscribers}
        seq = next(h.name for h in self.hosts.hosts if h.sequencer)
        for check in result.failed():
            for ex in check.counterexamples:
                _attribute_example(ex, pubs, subs, seq)

    def _figures(self, h: HostSpec, rc: int, stats: dict[str, Any]) -> None:
        f = self.figures[h.name]
        f.rc = rc
        f.messages_published = int(stats["messages_published"])
        f.payload_bytes = int(stats["bytes_published"])
        start = int(stats["first_publish_ns"])
        end = int(stats["last_ack_ns"] if self.cfg.ack else stats["last_publish_ns"]) or int(stats["last_publish_ns"])
        f.elapsed_s = (end - start) / 1e9 if start and end > start else 0.0
        f.throughput_mib_s = f.payload_bytes / f.elapsed_s / 2**20 if f.elapsed_s else 0.0
        f.messages_delivered = sum(int(stats["sub_messages"][k]) for k in h.subscribers)
        f.batches_ordered = int(stats["batches_ordered"])
        f.batches_lost = int(stats["batches_lost"])


def run_hosts(hosts: HostsFile, cfg: LogConfig, *, profile: str | None = None, allow_destructive: bool = False,
              progress: Callable[[str], None] | None = None, version: str | None = None,
              on_started: Callable[[HostFigures], None] | None = None) -> HostsRun:
    """Run ``cfg`` with its roles placed on ``hosts``; see the module docstring.

    Raises :class:`HostError` (naming the host) when a host cannot be started or opened, or
    when a host fails in a way the run cannot survive; every worker is ended first."""
    co = Coordinator(hosts, cfg, profile=profile, allow_destructive=allow_destructive, progress=progress,
                     version=version)
    co.on_started = on_started
    t0 = time.monotonic()
    t_start = t_open = t_run = t0
    try:
        co.start()
        t_start = time.monotonic()
        co.open()
        t_open = time.monotonic()
        done = co.run()
        t_run = time.monotonic()
        result = co.merge(done)
    except BaseException:
        co.abort()  # Ctrl-C and every error: no remote role outlives the coordinator
        raise
    t_close = time.monotonic()
    try:
        co.close()
    except BaseException:
        co.abort()
        raise
    return HostsRun(result, list(co.figures.values()), co.failures, start_s=t_start - t0, open_s=t_open - t_start,
                    run_s=t_run - t_open, teardown_s=time.monotonic() - t_close)


def host_commit_latency(recs: dict[str, Any], brokers: tuple[int, ...]) -> dict[str, float]:
    """Commit latency of the batches of ``brokers`` (ordering time minus publish time, per
    batch, from the records), as the one-host histogram measures it for every batch."""
    pub, order = recs["publish"], recs["order"]

    def key(a: Any) -> Any:
        return ((a["broker"].astype(np.uint64) << np.uint64(48)) | (a["client"].astype(np.uint64) << np.uint64(32))
                | a["client_batch_seq"].astype(np.uint64))

    pub = pub[np.isin(pub["broker"], brokers)]
    order = order[np.isin(order["broker"], brokers)]
    pk, ok = key(pub), key(order)
    idx = np.argsort(pk)
    pos = np.searchsorted(pk[idx], ok)
    pos = np.minimum(pos, max(0, len(pk) - 1))
    hit = (pk[idx][pos] == ok) if len(pk) else np.zeros(len(ok), dtype=bool)
    lat = order["commit_ns"][hit].astype(np.int64) - pub["publish_ns"][idx][pos][hit].astype(np.int64)
    lat = lat[lat > 0]
    if not len(lat):
        return {"p50": 0.0, "p99": 0.0, "p999": 0.0, "samples": 0}
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
    return {"p50": float(p50), "p99": float(p99), "p999": float(p999), "samples": int(len(lat))}


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


def _attribute_example(ex: Any, pubs: dict[int, str], subs: dict[int, str], seq: str) -> None:
    """Add ``host`` to each observation (sequencer, subscriber K) and ``publisher_host`` to
    each batch (by its broker), at any depth of a counterexample."""
    if isinstance(ex, list):
        for v in ex:
            _attribute_example(v, pubs, subs, seq)
        return
    if not isinstance(ex, dict):
        return
    broker, sub, observer = ex.get("broker"), ex.get("subscriber"), ex.get("observer")
    if isinstance(broker, int) and broker in pubs:
        ex.setdefault("publisher_host", pubs[broker])
    if isinstance(sub, int) and sub in subs:
        ex.setdefault("subscriber_host", subs[sub])
    if observer == "sequencer":
        ex.setdefault("host", seq)
    elif isinstance(observer, str) and observer.startswith("subscriber "):
        k = observer.removeprefix("subscriber ")
        if k.isdigit() and int(k) in subs:
            ex.setdefault("host", subs[int(k)])
    for v in list(ex.values()):
        _attribute_example(v, pubs, subs, seq)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
