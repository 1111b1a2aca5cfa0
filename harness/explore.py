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

from harness.checked import PROCESS_RULES, CheckedRun, ModelConfig, agent_name, run_checked
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
    "push_after_seal": "the scanner pushed into a buffer the sequencer had sealed",
}


def role_agents(cfg: LogConfig) -> list[int]:
    """The deterministic runner's role list, as agent ids, in its order (cxl_runner.c)."""
    npubs = cfg.brokers * cfg.publishers_per_broker
    out = list(range(npubs)) + [64 + b for b in range(cfg.brokers)]
    if cfg.order >= 2:  # Order 2 and Order 5 have a sequencer
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
    return out + _broken(run, cx.target)


_CTL_OPS = ("ctl-load", "ctl-store", "ctl-rmw", "drain")
QUIESCENT = (1 << 64) - 1  # a scanner's `active` outside any epoch (cxl_log_int.h)


def _control_words(trace: list[dict[str, Any]]) -> dict[int, str]:
    """Each control word of the trace by the expression an access names in the source
    (``cxl_ctl_store(&S->active, e)`` -> ``S->active``); a role's own word (``S->...``) by the
    access of that role, with its name, wherever another agent touched it first."""
    import re
    from pathlib import Path

    texts: dict[str, list[str]] = {}

    def expr(location: str) -> str | None:
        path, _, ln = location.rpartition(":")
        if path not in texts:
            texts[path] = []
            for cand in (Path(path), Path(__file__).resolve().parent.parent / path):
                if cand.is_file():
                    texts[path] = cand.read_text(errors="replace").splitlines()
                    break
        lines = texts[path]
        if not ln.isdigit() or not 0 < int(ln) <= len(lines):
            return None
        m = re.search(r"cxl_ctl_\w+\(&([\w>.\[\]-]+)", lines[int(ln) - 1])
        return m.group(1) if m else None

    names: dict[int, str] = {}
    own: set[int] = set()
    for e in trace:
        if e["op"] not in _CTL_OPS or e["op"] == "drain" or e["off"] in own:
            continue
        word = expr(e["location"])
        if word and word.startswith("S->"):
            names[e["off"]] = f"{word} of {agent_name(e['agent'])}"
            own.add(e["off"])
        elif e["off"] not in names:
            names[e["off"]] = word or f"control word {e['off']}"
    return names


def _broken(run: CheckedRun, target: str, start: int | None = None) -> list[str]:
    """What the run's trace shows about the rule or check ``target`` that broke (``start``: the
    event of the counterexample's first deviation, where the story of the seal begins)."""
    out: list[str] = []
    rule = target.removeprefix("rule:")
    hit = next((f for f in run.errors if f.rule == rule), None) if target.startswith("rule:") else None
    if hit is not None and rule in PROCESS_RULES:
        # a rule about the seal: the control atomics up to it tell the story
        events = [e for e in run.trace if e["op"] in _CTL_OPS and e["i"] < hit.first_event]
        names = _control_words(run.trace)
        tso = any(e["op"] == "drain" for e in run.trace)
        stores = {e["i"] for e in run.trace if e["op"] == "ctl-store"}
        shown: list[dict[str, Any] | None] = list(events[-16:] if start is None
                                                  else [e for e in events if e["i"] >= start])
        if len(shown) > 16:
            shown = shown[:8] + [None] + shown[-8:]
        out.append("  the seal's control atomics" + (" from the first deviation on:" if start is not None
                                                     else " before it:"))
        drains = {(e["agent"], e["off"], e["i"]) for e in run.trace if e["op"] == "drain"}
        for e in shown:
            if e is None:
                out.append("    ...")
                continue
            value = "QUIESCENT" if e["value"] == QUIESCENT else e["value"]
            word = names.get(e["off"], f"control word {e['off']}")
            if e["op"] == "drain":
                if (e["agent"], e["off"], e["i"] - 1) not in drains and e["i"] - 1 not in stores:
                    out.append(f"    event {e['i']}: {agent_name(e['agent'])}'s buffered store {word} = "
                               f"{value} reaches memory")
                continue
            verb = {"ctl-load": "reads", "ctl-store": "stores", "ctl-rmw": "adds to"}[e["op"]]
            late = e["op"] == "ctl-store" and (e["agent"], e["off"], e["i"] + 1) not in drains
            out.append(f"    event {e['i']}: {agent_name(e['agent'])} {verb} {word}"
                       f" (value {value}) at {_short(e['location'])}"
                       + (": it waits in the store buffer (x86-TSO)" if late and tso else ""))
        out.append(f"  broken: {hit.rule} at {_short(hit.location)} ({hit.agent}): {hit.doc}")
    elif hit is not None:
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
            if f"check:{c.id}" == target:
                ex = f"; e.g. {c.counterexamples[0]}" if c.counterexamples else ""
                out.append(f"  broken: {c.id} ({c.name}): {c.detail}{ex}")
        for f in run.errors[:3]:
            out.append(f"  also seen: {f.describe()}")
    return out


__all__ = ["SCOPES", "Counterexample", "Exploration", "Scope", "explore", "role_agents", "search_story",
           "shrink", "story"]


# ------------------------------------------------------------------------------------------
# Bounded systematic exploration: every single preemption of a schedule


@dataclass(frozen=True)
class Scope:
    name: str
    overrides: dict[str, Any]

    def config(self, seed: int) -> LogConfig:
        from harness.checked import small_config

        return small_config(seed=seed, **self.overrides)


# the base scope's run: 2 brokers x 2-slot rings x 3 batches x 1 subscriber (most scopes vary it)
_BASE: dict[str, Any] = {"brokers": 2, "pbr_slots": 2, "goi_slots": 4, "subscribers": 1, "total_bytes": 2 * 3 * 300}
_ORDER5: dict[str, Any] = {**_BASE, "order": 5, "client_spread": 2}  # one client on both brokers

SCOPES: tuple[Scope, ...] = (
    Scope("2 brokers x 2-slot rings x 3 batches x 1 subscriber", _BASE),
    Scope("1 broker x 2 publishers x 2 slots x 1 subscriber",
          {"brokers": 1, "publishers_per_broker": 2, "pbr_slots": 2, "goi_slots": 4, "subscribers": 1,
           "total_bytes": 2 * 2 * 300}),
    Scope("order 0: 2 brokers x 2-slot rings x 3 batches x 1 subscriber",
          {"order": 0, "brokers": 2, "pbr_slots": 2, "subscribers": 1, "total_bytes": 2 * 3 * 300}),
    # one client spread over both brokers: its batches are held and released in client order
    Scope("order 5: 2 brokers x 2-slot rings x 3 batches x 1 subscriber, one client on both",
          {"order": 5, "client_spread": 2, "brokers": 2, "pbr_slots": 2, "goi_slots": 4, "subscribers": 1,
           "total_bytes": 2 * 3 * 300}),
    # the client skips sequence number 3: the gap times out (time passes when every role waits)
    # and is resolved by declared-lost markers
    Scope("order 5 gap: the same, sequence number 3 never sent",
          {"order": 5, "client_spread": 2, "brokers": 2, "pbr_slots": 2, "goi_slots": 4, "subscribers": 1,
           "total_bytes": 2 * 3 * 300, "gap_client": 0, "gap_seq": 3, "gap_timeout_ms": 0.01}),
    # publisher 0 dies in the middle of its second batch: its slot is claimed, leased, never
    # committed; the scanner declares it lost once time passes (every role spins on the dead
    # slot). The rings do not wrap: a dead writer's unflushed lines on a reused slot are a
    # finding of their own (docs/validation.md 5.1), not something the scope should hide.
    # (the live publisher's lease beats once per batch here, not once per 256 KiB)
    Scope("crash: 1 broker x 2 publishers x 4 slots x 1 subscriber, publisher 0 dies",
          {"brokers": 1, "publishers_per_broker": 2, "pbr_slots": 4, "goi_slots": 4, "subscribers": 1,
           "total_bytes": 2 * 2 * 300, "crash_publisher": 0, "crash_after": 1, "slot_timeout_ms": 1.0,
           "beat_bytes": 256}),
    Scope("crash: 2 brokers x 4-slot rings x 3 batches x 1 subscriber, publisher 0 dies",
          {"brokers": 2, "pbr_slots": 4, "goi_slots": 4, "subscribers": 1, "total_bytes": 2 * 3 * 300,
           "crash_publisher": 0, "crash_after": 1, "slot_timeout_ms": 1.0}),
    # ACK 2 under Order 5: the durable frontier and the client lines' fence bookkeeping
    Scope("order 5 ack 2: 2 brokers x 2-slot rings x 3 batches x 1 subscriber, one client on both",
          {**_ORDER5, "ack": 2}),
    # the gap is fenced instead of marked: the client learns the new session from its line
    # and goes on from sequence number 0; what it sent after the gap in the old one is late
    Scope("order 5 gap fenced: sequence number 3 never sent, the gap ends the client's session",
          {**_ORDER5, "gap_client": 0, "gap_seq": 3, "gap_timeout_ms": 0.01, "gap_policy": "fence"}),
    # the ablations' extra fences (a fence per message, per header line; a reservation per
    # batch): their sites are reached only with these flags
    Scope("ablations: 2 brokers x 2-slot rings x 3 batches x 1 subscriber, every extra fence on",
          {**_BASE, "fence_per_line": True, "extra_fence": True, "reserve_per_batch": True}),
    # ACK 2 at Order 2 and Order 0: the durable frontiers and their fences
    Scope("ack 2: 2 brokers x 2-slot rings x 3 batches x 1 subscriber", {**_BASE, "ack": 2}),
    Scope("order 0 ack 2: 2 brokers x 2-slot rings x 3 batches x 1 subscriber",
          {"order": 0, "ack": 2, "brokers": 2, "pbr_slots": 2, "subscribers": 1, "total_bytes": 2 * 3 * 300}),
    # a restarted subscriber continues from the position it published (sub_resume)
    Scope("resumed subscriber: 2 brokers x 2-slot rings x 3 batches x 1 subscriber",
          {**_BASE, "resume_subscribers": True}),
    # Order 5 at its smallest wrapping size: the subscriber's release rule against the
    # sequencer's commit-then-frontiers fence is two deviations deep, and this scope's whole
    # bound-2 space is searched in minutes (the two-broker one's is not)
    Scope("order 5 small: 1 broker x 2-slot ring x 3 batches x 1 subscriber",
          {**_ORDER5, "brokers": 1, "client_spread": 1, "total_bytes": 3 * 300}),
)


class _Verdict:
    """A clean exploration found no violation; its JSON form says so beside its figures."""

    violations: list[str]

    @property
    def clean(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        d["clean"] = self.clean
        return d


@dataclass
class Exploration(_Verdict):
    scope: str
    schedules: int              # base schedules (seeds) explored
    executions: int             # runs made: base runs + one per (point, role, steps)
    distinct_states: int        # distinct outcomes: global order and every subscriber's deliveries
    depth: int                  # most preemption points in one base run
    violations: list[str]
    seconds: float


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


# ------------------------------------------------------------------------------------------
# Systematic search: a depth-first search over every choice of every choice point


@dataclass
class Search(_Verdict):
    """What a systematic search explored (see :func:`search`)."""

    scope: str
    executions: int             # runs made (each replays a prefix of choices, then defaults)
    points: int                 # choice points met past the replayed prefixes (states explored)
    distinct_states: int        # distinct state hashes among them
    revisits: int               # points cut because their state was explored already
    sleep_cut: int              # executions cut because the default choice was asleep
    max_depth: int              # most choice points in one execution
    bound: int | None           # deviations allowed (None: unbounded)
    complete: bool              # the whole bounded space was searched (no budget cut)
    violations: list[str]
    seconds: float
    reduction: str = "state hashing + sleep sets"
    witness: list[int] | None = None  # the first violating execution's replayed choices
    witness_by: list[str] | None = None  # what that execution broke (Violation.by)


@dataclass(frozen=True)
class Violation:
    """What one execution broke: the rules and checks that fired (or ``search:stall``,
    ``search:point-bound``) and what they said."""

    by: tuple[str, ...]
    diagnostic: str

    def __str__(self) -> str:
        return f"{', '.join(self.by)}: {self.diagnostic}" if self.by[0].startswith(("rule:", "check:")) \
            else self.diagnostic


@dataclass
class _Node:
    opts: list[tuple[int, int]]
    chosen: int
    cost: int
    explored: dict[int, tuple[int, int, int, int] | None]
    sleep: dict[int, tuple[int, int, int, int]]


def _fp(p: Any) -> tuple[int, int, int, int]:
    """A choice's footprint: (agent, shares process memory, read bloom, write bloom)."""
    rd = int(p["rd"][0]) | int(p["rd"][1]) << 64 | int(p["rd"][2]) << 128 | int(p["rd"][3]) << 192
    wr = int(p["wr"][0]) | int(p["wr"][1]) << 64 | int(p["wr"][2]) << 128 | int(p["wr"][3]) << 192
    return int(p["agent"]), int(p["flags"]) & 1, rd, wr


def _independent(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Two choices commute: different agents, not both of the roles that share process memory
    (scanners, sequencer), and no cache line or control word that one writes and the other
    touches (invalidations, flushes and fences count as writes of their lines)."""
    if a[0] == b[0] or (a[1] and b[1]):
        return False
    return not (a[3] & (b[2] | b[3]) or b[3] & a[2])


Executor = Callable[[tuple[int, ...]], tuple[Any, Any, "Violation | None"]]


def search(execute: Executor, name: str = "", bound: int | None = 1, hashing: bool = True,
           sleep_sets: bool = True, max_executions: int | None = None, max_seconds: float | None = None,
           stop_at_first: bool = False) -> Search:
    """Stateless depth-first search over the choice points of ``execute`` (which runs one
    execution replaying a prefix of option codes and returns its points, options and a
    violation or None). Every option of every point is tried, except: options whose deviations
    (preemptions, delays, drains, model choices) would exceed ``bound``; with ``hashing``, a point
    whose state was already explored with at least as much budget left and a sleep set no larger;
    with ``sleep_sets``, options asleep (an equivalent order of independent choices was explored)."""
    t0 = time.perf_counter()
    stack: list[_Node] = []
    prefix: tuple[int, ...] = ()
    visited: dict[int, tuple[float, frozenset[int]]] = {}
    executions = points = revisits = sleep_cut = depth = 0
    violations: list[str] = []
    witness: list[int] | None = None
    witness_by: list[str] | None = None
    complete = True
    inf = float("inf")
    while True:
        if (max_executions is not None and executions >= max_executions) or \
                (max_seconds is not None and time.perf_counter() - t0 > max_seconds):
            complete = False
            break
        pts, opts, bad = execute(prefix)
        executions += 1
        depth = max(depth, len(pts))
        if bad:
            violations.append(f"execution {executions} ({len(prefix)} choices replayed): {bad}")
            if witness is None:
                witness, witness_by = list(prefix), list(bad.by)
            if stop_at_first:
                complete = False
                break
        start = len(prefix)
        if start:
            stack[start - 1].explored[stack[start - 1].chosen] = _fp(pts[start - 1])
        for k in range(start, len(pts)):
            p = pts[k]
            if k:
                prev = stack[k - 1]
                if prev.chosen in prev.sleep:
                    sleep_cut += 1
                    break
                pf = prev.explored[prev.chosen]
                assert pf is not None
                cost = prev.cost + next(c for code, c in prev.opts if code == prev.chosen)
                sl: dict[int, tuple[int, int, int, int]] = {}
                if sleep_sets:
                    for code, f in list(prev.sleep.items()) + list(prev.explored.items()):
                        if code != prev.chosen and f is not None and _independent(f, pf):
                            sl[code] = f
            else:
                cost, sl = 0, {}
            points += 1
            h = int(p["hash"])
            left = inf if bound is None else bound - cost
            if hashing:
                seen = visited.get(h)
                if seen is not None and seen[0] >= left and seen[1] <= sl.keys():
                    revisits += 1
                    break
                visited[h] = (left, frozenset(sl))
            lo, n = int(p["opt_lo"]), int(p["nopts"])
            o = [(int(opts[i]["code"]), int(opts[i]["cost"])) for i in range(lo, lo + n)]
            stack.append(_Node(o, int(p["chosen"]), cost, {int(p["chosen"]): _fp(p)}, sl))
        del stack[len(pts):]
        # backtrack: the deepest point with an option not yet tried, not asleep, within the bound
        while stack:
            node = stack[-1]
            alt = next((code for code, c in node.opts if code not in node.explored and code not in node.sleep
                        and (bound is None or node.cost + c <= bound)), None)
            if alt is not None:
                node.chosen = alt
                node.explored[alt] = None
                prefix = tuple(x.chosen for x in stack)
                break
            stack.pop()
        else:
            break
    return Search(name, executions, points, len(visited) if hashing else points, revisits, sleep_cut, depth,
                  bound, complete, violations, time.perf_counter() - t0,
                  " + ".join(x for x, on in (("state hashing", hashing), ("sleep sets", sleep_sets)) if on)
                  or "none", witness, witness_by)


def timed(cfg: LogConfig) -> bool:
    """Whether a timeout decides something in ``cfg``: Order 5's gaps, slot timeouts (a crashed
    publisher's slot). The search then offers time passing as a choice."""
    return cfg.order == 5 or cfg.slot_timeout_ms > 0


def log_executor(cfg: LogConfig, fault: str | None = None, tso: bool = False, model_choices: bool = True,
                 free_switch: bool = False, free_drain: bool = False) -> Executor:
    """Executions of the log in ``cfg`` on the checked build, every rule and invariant checked
    (harness.faults.detections), for :func:`search`."""
    from harness.checked import ExploreSpec

    model = ModelConfig(True, 0.0, 0.0, False, 0, 0.0)  # the model's choices are enumerated instead

    def execute(prefix: tuple[int, ...]) -> tuple[Any, Any, Violation | None]:
        spec = ExploreSpec(prefix, tso, model_choices, free_switch, free_drain, ticks=timed(cfg))
        try:
            run = run_checked(cfg, fault=fault, model=model, explore=spec)
        except HarnessError as exc:
            if "not deterministic" in str(exc):
                raise
            return np.zeros(0), np.zeros(0), Violation(("check:attach",), str(exc))
        by, diag = detections(run)
        bad = None
        if by:
            bad = Violation(tuple(by), diag)
        elif run.xoutcome == 2:
            bad = Violation(("search:point-bound",), "the point bound was hit")
        elif run.xoutcome == 1 and cfg.crash_publisher < 0:
            # with a crashed publisher its broker cannot finish by design: the checks judge
            # the run (every other broker complete, the dead slot declared lost)
            bad = Violation(("search:stall",), "no role could go on (a stall)")
        return run.xpoints, run.xopts, bad

    return execute


def search_scope(scope: Scope, fault: str | None = None, seed: int = 1, tso: bool = True, bound: int | None = 1,
                 **kw: Any) -> Search:
    """:func:`search` over one scope (the roles of ``scope.config(seed)``)."""
    model_choices = kw.pop("model_choices", True)
    free_switch = kw.pop("free_switch", False)
    free_drain = kw.pop("free_drain", False)
    ex = log_executor(scope.config(seed), fault, tso, model_choices, free_switch, free_drain)
    return search(ex, scope.name, bound=bound, **kw)


_XO_WORDS = {
    2: "{who}'s oldest buffered control store reaches memory (x86-TSO drain)",
    3: "{who}'s first flushed line is written back before its fence (early write-back)",
    4: "{who}'s first dirty, unflushed line is evicted (written back without a flush)",
    5: "{who}'s stale cached copy is dropped: its read sees memory",
    6: "time passes (the frozen clock jumps past every timeout) while the others could still go on",
}


def search_story(cfg: LogConfig, witness: list[int], fault: str | None = None, tso: bool = True,
                 model_choices: bool = True) -> list[str]:
    """A violating execution of :func:`search` (its replayed choices, ``Search.witness``) as a
    story: every deviation from the default policy -- which agent was interrupted before which
    access, who ran instead, which store buffer drained, which line the model wrote back or
    refetched -- and what broke. The search tries executions in order of their deviations, so
    the first witness has at most ``bound`` of them: nothing needs reducing."""
    from harness.checked import ExploreSpec

    model = ModelConfig(True, 0.0, 0.0, True, TRACE_CAPACITY, 0.0)
    run = run_checked(cfg, fault=fault, model=model,
                      explore=ExploreSpec(tuple(witness), tso, model_choices, ticks=timed(cfg)))
    by, _ = detections(run)
    agents = role_agents(cfg)

    def who(i: int) -> str:
        return agent_name(agents[i]) if 0 <= i < len(agents) else f"coroutine {i}"

    trace = run.trace
    pts = run.xpoints[:len(witness)]
    devs = [p for p in pts if int(p["chosen"]) != int(p["dflt"])]
    out = [f"{len(devs)} deviation(s) from the default schedule (of {len(run.xpoints)} choice points) "
           f"show {by[0] if by else 'nothing'}:"]
    for p in devs:
        code, frm, at = int(p["chosen"]), int(p["from"]), int(p["evt"])
        kind, i = code >> 8, code & 0xFF
        what = (f"{who(i)} runs instead" if kind == 1 else _XO_WORDS.get(kind, f"option {code}").format(who=who(i)))
        if int(p["boundary"]) or frm >= len(agents):
            out.append(f"  after event {at}, at a step's end: {what}")
            continue
        nxt = next((e for e in trace[at:] if e["agent"] == agents[frm]), None)
        doing = f"is about to {nxt['op']} at {_short(nxt['location'])}" if nxt else "is interrupted"
        out.append(f"  at event {at}: {who(frm)} {doing}: {what}")
    out.append("  every other choice point takes the default (the running agent goes on; at a step's end "
               "the next role in turn)")
    start = int(devs[0]["evt"]) if devs else None
    return out + (_broken(run, by[0], start) if by else ["  no rule or check fired on the replay"])


def toy_executor(agents: int, steps: int, shared: bool) -> Executor:
    """The explorer's toy program (harness.checked.toy_run) as an :data:`Executor`."""
    from harness.checked import ExploreSpec, toy_run

    def execute(prefix: tuple[int, ...]) -> tuple[Any, Any, Violation | None]:
        pts, opts, _ = toy_run(agents, steps, shared, ExploreSpec(prefix, model_choices=False))
        return pts, opts, None

    return execute


__all__ += ["Search", "Violation", "log_executor", "search", "search_scope", "toy_executor"]
