"""Per-site mutation of the protocol's seam calls, found from the binary.

The checked build gives every call of a flush, fence, invalidate, token publication, commit
and ownership hand-off in the C sources a static *site* record (``CXL_SITE`` in cxl_seam.h),
listed in one linker section. This module reads that list back, derives a stable name for
each site -- ``function/operation#ordinal`` (the ordinal counts that operation within the
function, in source order), so the name survives moving a function to another file -- and
switches one site at a time off at run time:

* ``delete``      the operation is not done at all (every kind of site);
* ``fence_late``  a fence is done after the agent's next publication instead (fences);
* ``stale``       an invalidation is skipped, so the reader is served its cached copy.

Each mutant runs through the model runs (:data:`MODEL_CONFIGS`, the configurations that reach
every path of the protocol) until a trace rule or an invariant check fires: the mutant is
*killed*. A mutant that no check kills is *survived*, unless the operation is redundant:
then it is *equivalent* and listed in :data:`EQUIVALENT` with the argument, a performance
finding (a flush or fence the protocol does not need)."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.checked import CheckedRun, ModelConfig, agent_name, fault_names, run_checked, small_config
from harness.errors import ConfigError, HarnessError
from harness.faults import detections, fault_config
from harness.log import LogConfig
from harness.native import check as cchk

OPS = {1: "flush", 2: "flush_range", 3: "sfence", 4: "mfence", 5: "lfence", 6: "invalidate",
       7: "publish", 8: "commit", 9: "take_lines"}
MUTATIONS = {"delete": 1, "fence_late": 2, "stale": 3}
ROLE_BITS = {1: "publisher", 2: "scanner", 4: "sequencer", 8: "subscriber", 16: "other"}

# Files whose seam calls are not the log protocol: device characterisation and benchmarks
# (cxl_bench.c) and the region's own timing probes (cxl_region.c). Their sites are listed
# (``--all``) but not mutated: no model run executes them.
NON_PROTOCOL_FILES = frozenset({"cxl_bench.c", "cxl_region.c"})
# Crash detection (a dead scanner or subscriber: its beat stood still and its thread is gone)
# runs only on real threads: the deterministic model has no thread that can die alone, so no
# model run can execute these functions. Listed (``--all``), not mutated; they are exercised by
# the crash runs of the ASan/TSan stress driver and tests/test_crash_injection.py instead.
THREAD_ONLY_FUNCS = frozenset({"scan_beat", "sub_beat", "seq_watch", "seq_scanner_dead",
                               "seq_subscriber_dead", "dead_subscribers"})


def _mutations_of(op: str) -> tuple[str, ...]:
    if op in ("sfence", "mfence"):
        return ("delete", "fence_late")
    if op == "invalidate":
        return ("stale",)
    return ("delete",)


@dataclass(frozen=True)
class Site:
    """One seam call in the sources."""

    index: int        # position in the binary's site list (this build only)
    key: str          # stable name: function/operation#ordinal
    file: str
    line: int
    func: str
    op: str

    @property
    def location(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"

    @property
    def protocol(self) -> bool:
        return os.path.basename(self.file) not in NON_PROTOCOL_FILES and self.func not in THREAD_ONLY_FUNCS

    @property
    def mutations(self) -> tuple[str, ...]:
        return _mutations_of(self.op)


def _need_sites() -> None:
    if not cchk.has_sites():  # pragma: no cover - stale build only
        raise ConfigError("the checked build has no site list", "rebuild it: bash scripts/setup.sh")


def sites(protocol_only: bool = True) -> list[Site]:
    """Every seam call site of the checked build, read from the binary, in source order."""
    _need_sites()
    raw = [(s.index, s.file, s.line, s.func, OPS.get(s.op, f"op{s.op}")) for s in cchk.sites()]
    raw.sort(key=lambda r: (r[3], r[4], r[1], r[2]))
    ordinal: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for i, file, line, func, op in raw:
        ordinal[(func, op)] += 1
        out.append(Site(i, f"{func}/{op}#{ordinal[(func, op)]}", file, line, func, op))
    out.sort(key=lambda s: (s.file, s.line, s.key))
    return [s for s in out if s.protocol or not protocol_only]


def site_hits() -> dict[int, tuple[int, int]]:
    """Executions and role bits per site index since the last reset."""
    _need_sites()
    return {s.index: (s.hits, s.roles) for s in cchk.sites()}


def roles_of(bits: int) -> list[str]:
    return [name for bit, name in ROLE_BITS.items() if bits & bit]


class mutation:
    """Context manager: one site mutated while inside, every site restored on exit."""

    def __init__(self, site: Site, kind: str):
        if kind not in MUTATIONS:
            raise ConfigError(f"unknown mutation {kind!r}", f"use one of {', '.join(MUTATIONS)}")
        self.site, self.kind = site, kind

    def __enter__(self) -> mutation:
        _need_sites()
        cchk.clear_mutations()
        if not cchk.site_mutate(self.site.index, MUTATIONS[self.kind]):
            raise ConfigError(f"site {self.site.key} cannot be mutated", "rebuild the checked build")
        return self

    def __exit__(self, *exc: object) -> None:
        cchk.clear_mutations()


# ------------------------------------------------------------------------------------------
# The model runs: configurations that reach every path of the protocol


@dataclass(frozen=True)
class ModelRun:
    name: str
    overrides: dict[str, Any]

    def config(self, seed: int) -> LogConfig:
        return small_config(seed=seed, **self.overrides)


_WRAP = 2 * 100 * 300 * 4  # 800 batches over 2-slot rings: each ring wraps 200 times
MODEL_CONFIGS: tuple[ModelRun, ...] = (
    ModelRun("order2-ack1-cached-copy", {}),
    ModelRun("order2-ack2-nt-copy", {"ack": 2, "nt_copy": True}),
    ModelRun("order0-ack1", {"order": 0}),
    ModelRun("order0-ack2-nt-copy", {"order": 0, "ack": 2, "nt_copy": True}),
    ModelRun("order2-ack0", {"ack": 0}),
    ModelRun("order2-shared-mutex", {"variant": "shared-mutex"}),
    ModelRun("order2-2-publishers-per-broker", {"publishers_per_broker": 2}),
    ModelRun("order0-2-publishers-per-broker", {"order": 0, "publishers_per_broker": 2}),
    ModelRun("order2-no-subscriber", {"subscribers": 0}),
    ModelRun("order2-1-subscriber", {"subscribers": 1}),
    ModelRun("order2-wrapping-rings-full-goi", {"pbr_slots": 2, "goi_slots": 2, "total_bytes": _WRAP}),
    ModelRun("order0-wrapping-rings", {"order": 0, "pbr_slots": 2, "total_bytes": _WRAP}),
    # Slot timeouts are wall-clock: long enough that a live publisher is never declared lost
    # on a loaded machine (a preempted step can leave a slot claimed but not yet committed);
    # the crashed publisher's slot is declared lost after 50 ms.
    ModelRun("order2-leases", {"slot_timeout_ms": 1000.0}),
    ModelRun("order2-leases-2-publishers", {"slot_timeout_ms": 1000.0, "publishers_per_broker": 2,
                                            "pbr_slots": 2}),
    ModelRun("order2-crashed-publisher", {"slot_timeout_ms": 50.0, "crash_publisher": 0,
                                          "crash_after": 1}),
    # Order 0: the acker's frontier moves past the declared-lost slot, whose position (its
    # ring index) stays empty
    ModelRun("order0-crashed-publisher", {"order": 0, "slot_timeout_ms": 50.0, "crash_publisher": 0,
                                          "crash_after": 1}),
    ModelRun("order2-leases-large-batches", {"slot_timeout_ms": 1000.0, "batch_bytes": 300_000,
                                             "total_bytes": 4 * 300_000, "pbr_slots": 2}),
    ModelRun("order2-resumed-subscribers", {"resume_subscribers": True}),
    ModelRun("order2-ablations", {"fence_per_line": True, "extra_fence": True,
                                  "reserve_per_batch": True}),
    # Order 5: one client over both brokers (held and released in client order), then a
    # planted gap declared lost, and one fenced (the gap timeout short: gaps resolve at once)
    ModelRun("order5-spread-2", {"order": 5, "client_spread": 2}),
    ModelRun("order5-ack2", {"order": 5, "client_spread": 2, "ack": 2}),
    ModelRun("order5-wrapping-rings", {"order": 5, "client_spread": 2, "pbr_slots": 2,
                                       "total_bytes": _WRAP}),
    # one subscriber: the release rule's premature release (a frontier seen ahead of
    # committed_seq) is then the only release the publisher waits for, and shows at once
    ModelRun("order5-wrapping-rings-1-subscriber", {"order": 5, "client_spread": 2, "pbr_slots": 2,
                                                    "total_bytes": _WRAP, "subscribers": 1}),
    ModelRun("order5-crashed-publisher", {"order": 5, "client_spread": 2, "slot_timeout_ms": 50.0,
                                          "crash_publisher": 0, "crash_after": 1,
                                          "gap_timeout_ms": 0.01}),
    ModelRun("order5-gap-markers", {"order": 5, "client_spread": 2, "gap_client": 0, "gap_seq": 3,
                                    "gap_timeout_ms": 0.01}),
    ModelRun("order5-gap-fence", {"order": 5, "client_spread": 2, "gap_client": 0, "gap_seq": 3,
                                  "gap_timeout_ms": 0.01, "gap_policy": "fence"}),
)
SEEDS = (1, 2, 3, 4, 5, 6)  # 3 left reuse_floor's stale claim read unkilled (seed 6 kills it)
# Each configuration runs once per seed with whole role steps only, then once per seed with
# preemption: at a shared-memory access, now and then, another role runs a step right there.
P_PREEMPT = 0.02


def schedules(seeds: tuple[int, ...]) -> list[tuple[int, float]]:
    return [(s, 0.0) for s in seeds] + [(s, P_PREEMPT) for s in seeds]


def _model(base: ModelConfig, p_preempt: float) -> ModelConfig:
    return ModelConfig(base.enabled, base.p_early, base.p_evict, base.keep_trace,
                       base.trace_capacity, p_preempt)


# ------------------------------------------------------------------------------------------
# Equivalent mutants: the operation is redundant. Each entry is a performance finding.

EQUIVALENT: dict[str, str] = {
    "write_payload/sfence#1": (
        "the per-message fence of the extra_fence ablation (off by default): the header's fence "
        "closes the payload flushes anyway (rule 6), so this fence orders nothing the protocol "
        "relies on; it exists to measure what an unamortised fence costs"),
    "write_header/sfence#2": (
        "the per-line fence of the fence_per_line ablation (off by default): the fence after "
        "header line 1 closes both header flushes before the token (rule 6)"),
    "cxl_layout_init/sfence#1": (
        "formatting: the fence after zeroing the region. The next fence (after the control "
        "lines) closes the zeroing flushes too, and nothing is published or read in between: "
        "one fence per format could go (rule 6)"),
    "pub_claim/sfence#2": (
        "several publishers with leases: the fence between the lease's flush and the claim's "
        "compare-and-swap. On x86 a locked read-modify-write orders earlier CLWB/CLFLUSHOPT "
        "like a fence does (Intel SDM vol. 2, CLWB and CLFLUSHOPT: 'ordered with respect to "
        "locked read-modify-write instructions'), so the lease is out before the claim without "
        "it. Redundant on x86 only; other architectures need it"),
    "seq_commit/commit#1": (
        "the sequencer's epoch in its control line: nothing in the protocol, the harness or the "
        "checks reads it (it is for a person looking at the region); the line is flushed for "
        "committed_seq anyway, so dropping it saves a store, not a flush"),
    "seq_commit/commit#2": (
        "the sequencer's heartbeat: no reader anywhere (the sequencer's liveness is its lease); "
        "same line as committed_seq, so a store, not a flush"),
    "seq_commit/commit#3": (
        "the total ordered-message count in the control line: no reader (the per-broker "
        "ordered_msgs carry the ACK); same line as committed_seq"),
    "sub_publish_position/commit#2": (
        "a subscriber's delivered-batch count: no reader (progress is goi_pos and released); "
        "same line as goi_pos, flushed anyway"),
    "sub2_step/invalidate#2": (
        "a caught-up subscriber re-invalidates the control line before reading done and "
        "committed_seq. The same step already invalidated that line (sub_read_committed, and "
        "sub_release_lost when it ran), and both words come from one line, so the pair read is a "
        "consistent snapshot; a stale pair only delays the subscriber's exit by one step. One "
        "device read per idle subscriber step could go"),
    "seq_step/sfence#4": (
        "ACK 2: the fence after the durable frontier. What that frontier covers (GOI entries and "
        "payload) was fenced before it; the frontier line itself is flushed, and the "
        "sequencer's next fence (the next chunk's GOI-body fence, or the final one) closes that "
        "flush. A frontier that reaches the device one step later only delays ACK 2, and on a "
        "crash it rolls back to an older, still true value. One fence per ordered chunk at ACK 2 "
        "could go"),
    "scan_declare_lost/invalidate#1": (
        "diagnostic only: after declaring a slot lost, the scanner re-reads the token to tell a "
        "late commit of a live publisher (ENTRY_LATE) from a crash. A live publisher's batch "
        "declared lost fails the run either way (no-unexpected-loss), and the publisher's own "
        "check after its full fence (pub_check_given_up) counts the late commit too; a stale "
        "re-read only drops the 'alive' mark on the loss record. No model run can tell: a slot "
        "is declared lost there only for a crashed publisher, which never commits"),
    "sub_publish_position/commit#3": (
        "a subscriber's heartbeat: no reader; same line as goi_pos, flushed anyway"),
    "seq5_step/sfence#4": (
        "Order 5, ACK 2: the fence after the durable frontier, as seq_step/sfence#4: what the "
        "frontier covers was fenced before it, its line is flushed, and the sequencer's next "
        "fence closes that flush; a frontier one step late only delays ACK 2"),
}


# ------------------------------------------------------------------------------------------
# Running the mutants


@dataclass
class Baseline:
    """The fault-free model runs: clean, and which sites each configuration reaches."""

    runs: int
    failures: list[str]
    reached: dict[int, list[str]]        # site index -> configurations that execute it
    roles: dict[int, int]                # site index -> role bits
    seconds: float
    fault_only: dict[int, list[str]] = field(default_factory=dict)  # reached only under these faults

    @property
    def ok(self) -> bool:
        return not self.failures


def run_detections(run: CheckedRun) -> tuple[list[str], str, int]:
    """What fired (error rules, then failed checks), the first diagnostic, its event index."""
    by, diag = detections(run)
    first = min((f.first_event for f in run.errors), default=run.events)
    return by, diag, first


def baseline(configs: Iterable[ModelRun] = MODEL_CONFIGS, seeds: tuple[int, ...] = SEEDS,
             model: ModelConfig = ModelConfig()) -> Baseline:
    _need_sites()
    t0 = time.perf_counter()
    reached: dict[int, list[str]] = defaultdict(list)
    roles: dict[int, int] = defaultdict(int)
    failures: list[str] = []
    runs = 0
    cchk.clear_mutations()
    for mc in configs:
        cchk.site_reset()
        for seed, pre in schedules(seeds):
            run = run_checked(mc.config(seed), model=_model(model, pre))
            runs += 1
            if not run.clean:
                by, diag = detections(run)
                failures.append(f"{mc.name} seed {seed} preempt {pre}: {', '.join(by)}: {diag}")
        for idx, (hits, bits) in site_hits().items():
            if hits:
                reached[idx].append(mc.name)
                roles[idx] |= bits
    # Sites no fault-free run executes may belong to the code of a planted catalogue fault.
    fault_only: dict[int, list[str]] = defaultdict(list)
    for name in fault_names():
        cchk.site_reset()
        run_checked(fault_config(name, seeds[0]), fault=name, model=model)
        for idx, (hits, _) in site_hits().items():
            if hits and idx not in reached:
                fault_only[idx].append(name)
    cchk.site_reset()
    return Baseline(runs, failures, dict(reached), dict(roles), time.perf_counter() - t0,
                    dict(fault_only))


@dataclass
class MutantOutcome:
    site: str                 # the stable key
    location: str             # file:line (display only)
    op: str
    mutation: str
    roles: list[str]
    status: str               # killed | survived | equivalent | unreached | fault-only
    by: list[str] = field(default_factory=list)
    diagnostic: str = ""
    config: str = ""          # the model run that killed it
    seed: int = 0
    preempt: float = 0.0      # the killing run's preemption probability
    runs: int = 0             # model runs made until the kill (or in all)
    events_to_detection: int = 0
    seconds: float = 0.0
    reason: str = ""          # equivalent: why the operation is redundant

    @property
    def name(self) -> str:
        return f"{self.site}:{self.mutation}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_mutant(site: Site, kind: str, base: Baseline, seeds: tuple[int, ...] = SEEDS,
               configs: Iterable[ModelRun] = MODEL_CONFIGS,
               model: ModelConfig = ModelConfig()) -> MutantOutcome:
    roles = roles_of(base.roles.get(site.index, 0))
    out = MutantOutcome(site.key, site.location, site.op, kind, roles, "unreached")
    where = set(base.reached.get(site.index, ()))
    if not where:
        faults = base.fault_only.get(site.index)
        if faults:
            out.status = "fault-only"
            out.reason = f"runs only with a planted catalogue fault ({', '.join(faults)})"
        else:
            out.reason = "no model run executes this site"
        return out
    t0 = time.perf_counter()
    with mutation(site, kind):
        for mc in configs:
            if mc.name not in where:
                continue
            for seed, pre in schedules(seeds):
                out.runs += 1
                try:
                    run = run_checked(mc.config(seed), model=_model(model, pre))
                except HarnessError as exc:  # the roles refused the region they were given
                    by, diag, first = ["check:attach"], f"attach refused: {exc}", 0
                else:
                    by, diag, first = run_detections(run)
                if by:
                    out.status, out.by, out.diagnostic = "killed", by, diag
                    out.config, out.seed, out.events_to_detection = mc.name, seed, first
                    out.preempt = pre
                    out.seconds = time.perf_counter() - t0
                    return out
    out.seconds = time.perf_counter() - t0
    if site.key in EQUIVALENT:
        out.status, out.reason = "equivalent", EQUIVALENT[site.key]
    else:
        out.status = "survived"
    return out


@dataclass
class MutationReport:
    sites: int
    baseline: Baseline
    outcomes: list[MutantOutcome]
    seconds: float

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def score(self) -> float:
        """Killed over the non-equivalent mutants that a model run reaches."""
        live = [o for o in self.outcomes if o.status in ("killed", "survived")]
        return sum(o.status == "killed" for o in live) / len(live) if live else 1.0

    @property
    def ok(self) -> bool:
        return self.baseline.ok and not any(o.status in ("survived", "unreached") for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "sites": self.sites, "mutants": len(self.outcomes),
            "killed": self.count("killed"), "equivalent": self.count("equivalent"),
            "survived": self.count("survived"), "unreached": self.count("unreached"),
            "fault_only": self.count("fault-only"),
            "score": self.score, "seconds": self.seconds,
            "baseline": {"runs": self.baseline.runs, "failures": self.baseline.failures,
                         "seconds": self.baseline.seconds,
                         "configs": [m.name for m in MODEL_CONFIGS]},
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def select(all_sites: list[Site], only: Iterable[str] | None) -> list[Site]:
    """The sites named by ``only`` (keys, or file:line as shown), all of them without it."""
    if not only:
        return all_sites
    by_key = {s.key: s for s in all_sites}
    by_loc: dict[str, list[Site]] = defaultdict(list)
    for s in all_sites:
        by_loc[s.location].append(s)
    chosen: list[Site] = []
    for name in only:
        hit = [by_key[name]] if name in by_key else by_loc.get(name, [])
        if not hit:
            raise ConfigError(f"unknown site {name!r}",
                              "list the sites with 'cxl-harness mutate --list' (a key such as "
                              "write_header/flush#1, or file:line)")
        chosen += [s for s in hit if s not in chosen]
    return chosen


def counterexample(site: Site, outcome: MutantOutcome, budget: int = 600) -> Any:
    """The killing run of ``outcome``, reduced to its shortest schedule (harness.explore)."""
    from harness.explore import shrink

    if outcome.status != "killed":
        raise ConfigError(f"{outcome.name} was not killed: there is no violating run to reduce",
                          "ask for a counterexample of a killed mutant")
    mc = next(m for m in MODEL_CONFIGS if m.name == outcome.config)
    with mutation(site, outcome.mutation):
        return shrink(mc.config(outcome.seed), outcome.by[0],
                      model=_model(ModelConfig(), outcome.preempt), budget=budget)


def run_mutation(only: Iterable[str] | None = None, seeds: tuple[int, ...] = SEEDS,
                 progress: Callable[[MutantOutcome], None] | None = None) -> MutationReport:
    t0 = time.perf_counter()
    all_sites = sites()
    chosen = select(all_sites, only)
    base = baseline(seeds=seeds)
    outcomes = []
    for s in chosen:
        for kind in s.mutations:
            o = run_mutant(s, kind, base, seeds)
            outcomes.append(o)
            if progress:
                progress(o)
    return MutationReport(len(all_sites), base, outcomes, time.perf_counter() - t0)


__all__ = ["counterexample", "EQUIVALENT", "MODEL_CONFIGS", "Baseline", "ModelRun", "MutantOutcome", "MutationReport",
           "Site", "agent_name", "baseline", "mutation", "run_mutant", "run_mutation", "select",
           "site_hits", "sites"]
