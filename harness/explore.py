"""Shortest counterexamples: reduce a violating seeded run to the fewest role steps that still
show the violation, and tell it as a story a lab engineer can read.

A checked run's schedule is the list of the deterministic runner's role picks. The reduction
replays candidate schedules (:func:`harness.checked.run_checked` with ``schedule=``):

* for a trace-rule violation the run *stops* where the replayed schedule ends, so a candidate
  shows the violation only if it happens within its own steps;
* for an invariant check (seen only once the run is over) the roles take turns after the
  replayed steps (round-robin), a fair ending that by itself does not break anything.

First the shortest violating prefix is found (bisection over its length), then delta
debugging (ddmin) removes steps from it while the violation stays. The model's adversaries
and preemptions stay seeded, so a candidate is reproducible; the result is 1-minimal for the
predicate as run (no single remaining step can go), not a global minimum."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.checked import CheckedRun, ModelConfig, agent_name, run_checked
from harness.errors import ConfigError, HarnessError
from harness.faults import detections
from harness.log import LogConfig

TRACE_CAPACITY = 1 << 20
# What each rule's counterexample lacks, in words.
MISSING = {
    "unflushed_before_publish": "the line above was stored and never flushed before this publication",
    "unfenced_before_publish": "the line above was flushed but no fence closed the flush before this publication",
    "nt_unfenced_before_publish": "the streamed line above was not fenced before this publication",
    "body_after_token": "the record's body was written after its token",
    "read_without_invalidate": "the reader did not invalidate the line since the write above: it may read a stale copy",
    "two_writers_one_line": "a second agent writes a line another agent still has unflushed",
    "record_read_without_token": "the record is read without first reading its token",
    "publish_not_flushed": "the token/frontier stored above was not flushed before this fence",
    "unpersisted_at_end": "the store above was never flushed and fenced",
}


def role_agents(cfg: LogConfig) -> list[int]:
    """The deterministic runner's role list, as agent ids, in its order (cxl_runner.c)."""
    npubs = cfg.brokers * cfg.publishers_per_broker
    out = list(range(npubs)) + [64 + b for b in range(cfg.brokers)]
    if cfg.order == 2:
        out.append(96)
    return out + [100 + k for k in range(cfg.subscribers)]


@dataclass
class Counterexample:
    target: str                 # the rule or check that must fire (rule:x / check:y)
    original_steps: int
    steps: list[int]            # the reduced schedule: role index per step
    agents: list[str]           # the same, as agent names
    runs: int                   # replays made by the reduction
    seconds: float
    after: str = "stop"         # how the run ends after the steps: stop | round-robin | seeded
    story: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["length"] = self.length
        return d


class _Oracle:
    def __init__(self, cfg: LogConfig, target: str, fault: str | None, model: ModelConfig,
                 budget: int):
        self.cfg, self.target, self.fault, self.model = cfg, target, fault, model
        self.budget, self.runs = budget, 0
        rule_target = target.startswith("rule:") and target != "rule:unpersisted_at_end"
        self.after = "stop" if rule_target else "round-robin"
        self.persistence = not rule_target
        self.cache: dict[tuple[int, ...], bool] = {}

    def run(self, steps: list[int], keep_trace: bool = False) -> CheckedRun:
        m = self.model
        if keep_trace:
            m = ModelConfig(m.enabled, m.p_early, m.p_evict, True, TRACE_CAPACITY, m.p_preempt)
        self.runs += 1
        return run_checked(self.cfg, fault=self.fault, model=m, schedule=steps or [0],
                           after_schedule=self.after, persistence=self.persistence,
                           check_history=self.target.startswith("check:"))

    def __call__(self, steps: list[int]) -> bool:
        key = tuple(steps)
        if key in self.cache:
            return self.cache[key]
        if self.runs >= self.budget:
            return False
        try:
            by, _ = detections(self.run(steps))
        except HarnessError:
            by = []
        ok = self.target in by
        self.cache[key] = ok
        return ok


def _ddmin(steps: list[int], test: Callable[[list[int]], bool]) -> list[int]:
    """Zeller's ddmin: remove chunks of steps while the test still holds."""
    n = 2
    while len(steps) >= 2:
        chunk = max(1, len(steps) // n)
        reduced = False
        for start in range(0, len(steps), chunk):
            cand = steps[:start] + steps[start + chunk:]
            if cand and test(cand):
                steps, n, reduced = cand, max(n - 1, 2), True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(steps), n * 2)
    return steps


def shrink(cfg: LogConfig, target: str, fault: str | None = None, model: ModelConfig = ModelConfig(),
           budget: int = 600) -> Counterexample:
    """Reduce the seeded run of ``cfg`` (with ``fault`` planted, or under a site mutation the
    caller holds) to a short schedule on which ``target`` still fires."""
    t0 = time.perf_counter()
    oracle = _Oracle(cfg, target, fault, model, budget)
    full = run_checked(cfg, fault=fault, model=model)
    oracle.runs += 1
    by, _ = detections(full)
    if target not in by:
        raise ConfigError(f"the run does not show {target} (it shows {', '.join(by) or 'nothing'})",
                          "pick a target the run shows")
    steps = list(full.schedule)
    if not oracle(steps):  # the violation needs the run's own ending: keep it whole
        oracle.after = "seeded"
        oracle.cache.clear()
    lo, hi = 1, len(steps)  # shortest violating prefix (the predicate grows with the prefix)
    while lo < hi:
        mid = (lo + hi) // 2
        if oracle(steps[:mid]):
            hi = mid
        else:
            lo = mid + 1
    steps = steps[:hi]
    steps = _ddmin(steps, oracle)
    final = oracle.run(steps, keep_trace=True)
    agents = role_agents(cfg)
    names = [agent_name(agents[i % len(agents)]) for i in steps]
    cx = Counterexample(target, len(full.schedule), steps, names, oracle.runs,
                        time.perf_counter() - t0, oracle.after)
    cx.story = story(final, cx, cfg)
    return cx


def _short(loc: str) -> str:
    return loc.rsplit("/", 1)[-1]


def story(run: CheckedRun, cx: Counterexample, cfg: LogConfig) -> list[str]:
    """The counterexample in words: the steps, what happened on the offending line, and which
    rule or invariant broke."""
    out = [f"{cx.length} step(s) (reduced from {cx.original_steps}) show {cx.target}:"]
    for i, name in enumerate(cx.agents, 1):
        out.append(f"  step {i}: {name} runs one step")
    if cx.after == "round-robin":
        out.append("  then every role takes its turn, round-robin, until the run ends")
    elif cx.after == "seeded":
        out.append("  then the run goes on as seeded")
    rule = cx.target.removeprefix("rule:")
    hit = next((f for f in run.errors if f.rule == rule), None) if cx.target.startswith("rule:") else None
    if hit is not None:
        line = hit.line_offset // 64
        events = [e for e in run.trace if e["size"] and e["i"] < hit.first_event - 1
                  and e["off"] // 64 <= line <= (e["off"] + e["size"] - 1) // 64]
        out.append(f"  on the cache line at offset 0x{hit.line_offset:x}:")
        for e in events[-12:]:
            verb = {"store": "stores", "nt-store": "streams", "load": "reads", "flush": "flushes",
                    "invalidate": "invalidates", "publish": "publishes its token", "consume": "reads the token",
                    "commit": "commits", "rmw": "updates atomically"}.get(e["op"], e["op"])
            out.append(f"    event {e['i']}: {agent_name(e['agent'])} {verb} "
                       f"({e['size']} B at +0x{e['off'] % 64:x}) at {_short(e['location'])}")
        trig = [e for e in run.trace if e["i"] == hit.first_event - 1]
        if trig:
            e = trig[0]
            out.append(f"    then, event {e['i']}: {agent_name(e['agent'])} {e['op']} at "
                       f"{_short(e['location'])}: {MISSING.get(hit.rule, 'the rule fires')}")
        who = f"; the line was last written by {hit.other_agent}" if hit.other_agent else ""
        out.append(f"  broken: {hit.rule} at {_short(hit.location)} ({hit.agent}{who}): {hit.doc}")
    else:
        for c in run.result.failed():
            if f"check:{c.id}" == cx.target:
                ex = f"; e.g. {c.counterexamples[0]}" if c.counterexamples else ""
                out.append(f"  broken: {c.id} ({c.name}): {c.detail}{ex}")
        for f in run.errors[:3]:
            out.append(f"  also seen: {f.describe()}")
    return out


__all__ = ["SCOPES", "Counterexample", "Exploration", "Scope", "explore", "role_agents", "shrink", "story"]


# ------------------------------------------------------------------------------------------
# Bounded systematic exploration: every single preemption of a schedule


@dataclass(frozen=True)
class Scope:
    name: str
    overrides: dict[str, Any]

    def config(self, seed: int) -> LogConfig:
        from harness.checked import small_config

        return small_config(seed=seed, **self.overrides)


SCOPES: tuple[Scope, ...] = (
    Scope("2 brokers x 2-slot rings x 3 batches x 1 subscriber",
          {"brokers": 2, "pbr_slots": 2, "goi_slots": 4, "subscribers": 1, "total_bytes": 2 * 3 * 300}),
    Scope("1 broker x 2 publishers x 2 slots x 1 subscriber",
          {"brokers": 1, "publishers_per_broker": 2, "pbr_slots": 2, "goi_slots": 4, "subscribers": 1,
           "total_bytes": 2 * 2 * 300}),
    Scope("order 0: 2 brokers x 2-slot rings x 3 batches x 1 subscriber",
          {"order": 0, "brokers": 2, "pbr_slots": 2, "subscribers": 1, "total_bytes": 2 * 3 * 300}),
)


@dataclass
class Exploration:
    scope: str
    schedules: int              # base schedules (seeds) explored
    executions: int             # runs made: base runs + one per (point, role, steps)
    distinct_states: int        # distinct outcomes: global order and every subscriber's deliveries
    depth: int                  # most preemption points in one base run
    violations: list[str]
    seconds: float

    @property
    def clean(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clean"] = self.clean
        return d


def outcome(run: CheckedRun) -> str:
    """What a run decided, without its timing: the global order (position, broker, ring slot,
    client, client batch) and each subscriber's delivery sequence."""
    h = hashlib.blake2b(digest_size=16)
    recs = run.result.records or {}
    for name in sorted(recs):
        a = recs[name]
        if name == "order":
            cols = ["seq", "broker", "pbr_index", "client", "client_batch_seq"]
        elif name.startswith("deliver"):
            cols = ["pos", "broker", "pbr_index"]
        else:
            continue
        if a is not None and len(a):
            h.update(name.encode())
            for c in cols:
                h.update(np.ascontiguousarray(a[c]).tobytes())
    h.update(repr(sorted((k, v) for k, v in run.result.counters.items() if not k.endswith("_ns"))).encode())
    return h.hexdigest()


def explore(scope: Scope, fault: str | None = None, seeds: tuple[int, ...] = (1, 2),
            steps: tuple[int, ...] = (1, 3), stop_at_first: bool = False,
            model: ModelConfig = ModelConfig(), budget: int | None = None) -> Exploration:
    """Every run that differs from a seeded base schedule by one preemption: at each shared-
    memory access inside a role step (each preemption point), each other role runs 1 (or 3)
    steps right there. Preemption bound 1; the model's adversaries stay seeded. ``budget``
    caps the executions (the result then covers only part of the scope)."""
    t0 = time.perf_counter()
    digests: set[str] = set()
    violations: list[str] = []
    runs = depth = 0
    whole = ModelConfig(model.enabled, model.p_early, model.p_evict, False, 0, 0.0)

    def check(run: CheckedRun, what: str) -> bool:
        digests.add(outcome(run))
        by, diag = detections(run)
        if by:
            violations.append(f"{what}: {', '.join(by)}: {diag}")
        return bool(by)

    def attempt(cfg: LogConfig, what: str, at: tuple[int, int, int] | None = None) -> CheckedRun | None:
        try:
            return run_checked(cfg, fault=fault, model=whole, preempt_at=at)
        except HarnessError as exc:  # the roles refused the region: a violation too
            violations.append(f"{what}: check:attach: {exc}")
            return None

    for seed in seeds:
        cfg = scope.config(seed)
        base = attempt(cfg, f"seed {seed}, whole steps")
        runs += 1
        if base is None:
            if stop_at_first:
                break
            continue
        depth = max(depth, base.points)
        if check(base, f"seed {seed}, whole steps") and stop_at_first:
            break
        nroles = len(role_agents(cfg))
        for at in range(base.points):
            for role in range(nroles):
                for k in steps:
                    if budget is not None and runs >= budget:
                        return Exploration(scope.name, len(seeds), runs, len(digests), depth,
                                           violations, time.perf_counter() - t0)
                    name = agent_name(role_agents(cfg)[role])
                    what = f"seed {seed}, {name} runs {k} step(s) at access {at}"
                    run = attempt(cfg, what, (at, role, k))
                    runs += 1
                    if run is None or run.model.get("preemptions", 0) == 0:
                        if run is None and stop_at_first:
                            return Exploration(scope.name, len(seeds), runs, len(digests), depth,
                                               violations, time.perf_counter() - t0)
                        continue
                    if check(run, what) and stop_at_first:
                        return Exploration(scope.name, len(seeds), runs, len(digests), depth, violations,
                                           time.perf_counter() - t0)
    return Exploration(scope.name, len(seeds), runs, len(digests), depth, violations, time.perf_counter() - t0)
