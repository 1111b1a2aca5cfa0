"""Runs of the log on the checked build: the flush/fence trace rules watch every access, and
the non-coherent model serves memory through per-agent software caches, so a missing flush,
fence or invalidation produces real wrong results, reproducibly for a given seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import ConfigError, CoreError, HarnessError
from harness.log import LogConfig, LogHandle, LogResult, format_region, layout_size
from harness.invariants import CheckContext
from harness.runlog import build_result
from harness.native import RoleKind, Severity, agent_kind, load
from harness.native import check as cchk
from harness.native import explore as native_explore
from harness.region import DeviceModel, Region

ERROR, WARNING = Severity.ERROR, Severity.WARNING
AGENT_FORMATTER = 120  # the agent that formats the region in a checked run (no role uses it)
# rules about the seal's process memory (cxl_ctl.h), not about a cache line of the region
PROCESS_RULES = frozenset({"push_after_seal"})


@dataclass(frozen=True)
class ModelConfig:
    """The non-coherent model and its seeded adversaries."""

    enabled: bool = True
    p_early: float = 0.05   # per access: a flushed line becomes visible before its fence
    p_evict: float = 0.02   # per access: a dirty, unflushed line is written back anyway
    keep_trace: bool = False
    trace_capacity: int = 0
    # per shared-memory access: another role runs a whole step right there, splitting the
    # current role's step (0: roles only ever alternate between whole steps)
    p_preempt: float = 0.0


@dataclass(frozen=True)
class ExploreSpec:
    """One execution of a systematic exploration (harness.explore.search): every role runs as a
    coroutine, and at every shared-memory access and control atomic the explorer chooses what
    happens next. ``prefix`` replays the first choices (option codes); after them the default
    policy runs. ``tso``: the control atomics' stores wait in per-agent store buffers (x86-TSO);
    ``model_choices``: the non-coherent model's choices (early write-back, eviction, a stale
    copy refetched) are options too; ``free_switch``/``free_drain``: a switch at a step's end / a
    store-buffer drain is no deviation (it costs nothing against the bound). Time passes when
    every agent waits (the frozen clock jumps past every timeout); with ``ticks`` that jump is
    also an option (a deviation) at every step's end while some agent waits, so a timeout can
    fire while others could still go on (they were slow)."""

    prefix: tuple[int, ...] = ()
    tso: bool = False
    model_choices: bool = True
    free_switch: bool = False
    free_drain: bool = False
    max_points: int = 200_000
    ticks: bool = False

    @property
    def flags(self) -> int:
        return ((1 * self.tso) | (2 * self.model_choices) | (4 * self.free_switch) | (8 * self.free_drain)
                | (16 * self.ticks))


XO_KINDS = {1: "run", 2: "drain", 3: "early", 4: "evict", 5: "refresh"}


@dataclass
class Finding:
    """One trace-rule violation, aggregated by rule and source location."""

    rule: str
    severity: str
    agent: str
    other_agent: str | None
    line_offset: int
    count: int
    location: str
    first_event: int
    doc: str

    def describe(self) -> str:
        if self.rule in PROCESS_RULES:  # about process memory (the seal), not a line of the region
            return f"{self.rule} at {self.location}: {self.agent}; {self.count} time(s): {self.doc}"
        other = f" (line last written by {self.other_agent})" if self.other_agent else ""
        return (f"{self.rule} at {self.location}: {self.agent}, cache line at offset "
                f"0x{self.line_offset:x}{other}; {self.count} time(s): {self.doc}")


@dataclass
class CheckedRun:
    result: LogResult
    findings: list[Finding]
    events: int
    model: dict[str, int] = field(default_factory=dict)
    schedule: list[int] = field(default_factory=list)  # the runner's role picks, in order
    points: int = 0            # preemption points (shared-memory accesses inside role steps)
    trace: list[dict[str, Any]] = field(default_factory=list)  # with ModelConfig.keep_trace
    # an explored run (ExploreSpec): its choice points and their options, and how it ended
    # (0 ran to its end, 1 no role could go on, 2 the point bound was hit)
    xpoints: Any = None
    xopts: Any = None
    xoutcome: int = 0
    early_ticks: int = 0       # clock jumps the exploration chose while a role could go on

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def clean(self) -> bool:
        return not self.errors and self.result.ok

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result.to_dict(), "findings": [asdict(f) for f in self.findings],
                "events": self.events, "model": self.model}


def agent_name(agent: int) -> str:
    """A model agent id in words (the core says which role kind and index it is)."""
    if agent == AGENT_FORMATTER:
        return "region formatter"
    found = agent_kind(agent) if agent >= 0 else None
    if found is None:
        return "unknown agent" if agent < 0 else f"agent {agent}"
    kind, index = found
    if kind is RoleKind.SCANNER:
        return f"scanner of broker {index}"
    return "sequencer" if kind is RoleKind.SEQUENCER else f"{kind.name.lower()} {index}"


def fault_names() -> list[str]:
    return cchk.fault_names()


def fault_doc(name: str) -> str:
    return cchk.fault_doc(fault_id(name))


def fault_id(name: str | None) -> int:
    if name in (None, "", "none"):
        return 0
    names = fault_names()
    if name not in names:
        raise ConfigError(f"unknown fault {name!r}", f"choose one of: {', '.join(names)}")
    return names.index(name) + 1


def rule_names() -> list[str]:
    return cchk.rule_names()


def rule_doc(rule: str) -> str:
    """What trace rule ``rule`` checks (one sentence, from the checked build)."""
    return cchk.rule_doc(rule_names().index(rule) + 1)


def small_config(order: int = 2, variant: str = "per-scanner", seed: int = 1, **kw: Any) -> LogConfig:
    """A run small enough for the model yet long enough for several ring laps."""
    base: dict[str, Any] = dict(order=order, variant=variant, brokers=2, subscribers=2, msg_size=100,
                                batch_bytes=300, total_bytes=2 * 100 * 300, pbr_slots=8, goi_slots=16,
                                ack=1, seed=seed, record=True, watchdog_s=5.0, nt_copy=False)
    base.update(kw)
    return LogConfig(**base)


def run_checked(cfg: LogConfig, fault: str | None = None, model: ModelConfig = ModelConfig(),
                check_history: bool = True, persistence: bool = True,
                schedule: list[int] | None = None, after_schedule: str = "seeded",
                preempt_at: tuple[int, int, int] | None = None,
                device_model: DeviceModel | None = None,
                explore: ExploreSpec | None = None) -> CheckedRun:
    """One deterministic (single-thread, seeded scheduler) run on the checked build.

    With ``persistence`` (the default) the end-of-run check follows: every store the run made
    must have been flushed and fenced by the time every role finished (rule
    ``unpersisted_at_end``), and a record body stored after its token is reported even when no
    later fence came. ``schedule`` replays the runner's first role picks (the rest follow the
    seed, or with ``after_schedule`` "stop" the run ends there, with "round-robin" the roles
    take turns); the run's own picks come back in :attr:`CheckedRun.schedule`.
    ``preempt_at`` = (point, role, steps) plans one preemption instead of random ones: at the
    point-th shared-memory access inside a step, role index ``role`` runs ``steps`` steps.

    ``explore``: run it as one execution of a systematic exploration (:class:`ExploreSpec`);
    the run's choice points come back in :attr:`CheckedRun.xpoints`.

    ``device_model``: what the region's operations cost (a profile's, from
    :func:`harness.runner.device_model_for`), attached when the region is opened, as on the
    normal build; the result's ``region.device_model`` reports what it did. None: the host's
    own costs (the fault catalogue's runs, the ``emulated-noncoherent`` profile)."""
    modes = {"seeded": 0, "stop": 1, "round-robin": 2}
    if after_schedule not in modes:
        raise ConfigError(f"unknown after_schedule {after_schedule!r}", f"use one of {', '.join(modes)}")
    native = load(True)
    size = (layout_size(cfg, native) + 4095) // 4096 * 4096
    with Region.emulated(size, checked=True, device_model=device_model) as region:
        chk = cchk.CheckConfig(model=model.enabled, keep_trace=model.keep_trace,
                               trace_capacity=model.trace_capacity, seed=cfg.seed,
                               p_early=model.p_early, p_evict=model.p_evict, p_preempt=model.p_preempt)
        cchk.set_schedule(list(schedule or []))
        cchk.set_schedule_mode(modes[after_schedule])
        if preempt_at:
            cchk.plan_preempt(*preempt_at)
        else:
            cchk.plan_preempt()
        if explore is not None:
            native_explore.explore_set(native, True, explore.flags, explore.prefix, explore.max_points)
        try:
            cchk.begin(region.base, region.size, chk)
        except CoreError:
            raise ConfigError("the checker could not allocate its state", "use a smaller configuration") from None
        try:
            # the region is formatted under the checker too, by its own agent, which then hands
            # every line it made durable over to the roles
            cchk.set_agent(AGENT_FORMATTER)
            try:
                format_region(region, cfg)
            finally:
                cchk.set_agent(0)
            cchk.handoff()
            h = LogHandle(region, cfg, fault=fault_id(fault), deterministic=True)
            try:
                rc = h.run()
                if persistence:
                    cchk.finish()
                stats, recs = h.stats(), h.records()
            finally:
                h.close()
            findings = _findings()
            if persistence and cfg.crash_publisher >= 0:
                # a publisher crashed on purpose: what it left unflushed is lost by design
                crashed = agent_name(cfg.crash_publisher)
                findings = [f for f in findings
                            if not (f.rule == "unpersisted_at_end" and f.agent == crashed)]
            counts = cchk.model_counts()
            sched = cchk.schedule()
            trace = _trace() if model.keep_trace else []
            xpoints = xopts = None
            xoutcome = 0
            if explore is not None:
                xpoints, xopts, xoutcome = native_explore.explore_points(native)
        finally:
            cchk.end()
            cchk.set_schedule([])
            cchk.set_schedule_mode(0)
            cchk.plan_preempt()
            native_explore.explore_set(native, False)
        if xoutcome == 3:
            raise HarnessError(f"replaying {len(explore.prefix) if explore else 0} choices did not "
                               "reach the same choice points: the run is not deterministic",
                               "report it: every source of nondeterminism must go through the checker")
        # time the exploration made pass while some role could still go on (a deviation: the
        # others were slow past every timeout): a gap timeout may then fire on a live client,
        # which the checks take as the gap's cause
        early = native_explore.early_ticks(native, xpoints) if xpoints is not None else 0
        result = build_result(cfg, stats, recs, region.info(), rc, check_history,
                              context=CheckContext(early_ticks=early))
    return CheckedRun(result, findings, counts.events,
                      {"early_writebacks": counts.early_writebacks, "evictions": counts.evictions,
                       "stale_reads": counts.stale_reads, "preemptions": counts.preemptions},
                      schedule=sched, trace=trace, points=counts.preempt_points, xpoints=xpoints,
                      xopts=xopts, xoutcome=xoutcome, early_ticks=early)


def ctl_sites() -> list[dict[str, Any]]:
    """The control sites of the checked build (cxl_ctl.h): every control atomic of the seal."""
    return native_explore.ctl_sites(load(True))


def ctl_weaken(site_id: int | None, order: int = -1) -> None:
    """Replace the memory order of control site ``site_id`` (None: every site back to its own)."""
    native = load(True)
    if not native_explore.ctl_weaken(native, site_id, order):
        raise ConfigError(f"no control site {site_id} (or order {order})",
                          f"pick one of 0..{native_explore.ctl_site_count(native) - 1} and an order -1..5")


def toy_run(agents: int, steps: int, shared: bool, spec: ExploreSpec) -> tuple[Any, Any, int]:
    """One execution of the explorer's toy program (cxl_chk_toy_run): ``agents`` agents, each
    ``steps`` steps of one control store, to its own word or (``shared``) to one word."""
    native = load(True)
    with Region.emulated(4096, checked=True) as region:
        native_explore.explore_set(native, True, spec.flags, spec.prefix, spec.max_points)
        try:
            if native_explore.toy_run(native, region.base, region.size, agents, steps, shared) < 0:
                raise ConfigError(f"the toy program refused {agents} agent(s) x {steps} step(s)",
                                  "use 1..16 agents and at least one step")
            return native_explore.explore_points(native)
        finally:
            native_explore.explore_set(native, False)


OP_NAMES = {1: "store", 2: "nt-store", 3: "load", 4: "flush", 5: "fence", 6: "invalidate",
            7: "publish", 8: "consume", 9: "commit", 10: "rmw",
            11: "ctl-load", 12: "ctl-store", 13: "ctl-rmw", 14: "drain"}


def _trace() -> list[dict[str, Any]]:
    """The event trace the checker kept (ModelConfig.keep_trace), one dict per event."""
    return [{"i": i, "agent": e.agent, "op": OP_NAMES.get(e.op, str(e.op)), "off": e.off,
             "size": e.size, "value": e.value,
             "location": (e.file if e.file is not None else "?") + (f":{e.line_no}" if e.line_no else "")}
            for i, e in enumerate(cchk.trace())]


def _findings(log_agents: bool = True) -> list[Finding]:
    """The checker's findings of the run that just ended, errors first, most frequent first."""
    out = []
    name = agent_name if log_agents else (lambda a: f"agent {a}")
    for f in cchk.findings():
        loc = (f.file if f.file is not None else "?") + (f":{f.line_no}" if f.line_no else "")
        out.append(Finding(
            rule=f.rule, severity="error" if f.severity == ERROR else "warning",
            agent=name(f.agent), other_agent=name(f.other_agent) if f.other_agent >= 0 else None,
            line_offset=f.line_off, count=f.count, location=loc, first_event=f.first_event,
            doc=f.doc))
    out.sort(key=lambda x: (x.severity != "error", -x.count))
    return out
