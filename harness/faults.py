"""The fault catalogue: plant exactly one defect, run the log on the model, and show that a
check or trace rule names it. A catalogue run passes only when the fault-free run is clean
and every planted fault is caught."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.checked import CheckedRun, ModelConfig, fault_doc, fault_names, run_checked, small_config
from harness.log import LogConfig

# Faults of the subscriber side or of Order 2's sequencer need subscribers/Order 2; all use the
# default small configuration. The quick subset covers each role and each kind of defect.
QUICK = ("pub_no_payload_flush", "pub_no_hdr_fence", "pub_token_before_body", "pub_ready_flag",
         "scan_no_invalidate_token", "scan_skip_empty", "seq_unsealed_read", "seq_commit_unflushed",
         "seq_ack_before_order", "sub_no_invalidate_payload")


# Order 5's faults run at Order 5 with one client spread over both brokers (its batches held
# and released in client order); those about gaps plant one, or resolve gaps at once (1 ns).
ORDER5 = dict(order=5, client_spread=2)
FAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "seq5_hold_release_unordered": ORDER5,
    "seq5_late_reordered": {**ORDER5, "gap_timeout_ms": 1e-6},
    "seq5_gap_no_marker": {**ORDER5, "gap_client": 0, "gap_seq": 3, "gap_timeout_ms": 0.01},
    "seq5_marker_unflushed": {**ORDER5, "gap_client": 0, "gap_seq": 3, "gap_timeout_ms": 0.01},
}


def fault_config(name: str, seed: int) -> LogConfig:
    """The configuration in which fault ``name`` is planted: the small one, at Order 5 for
    Order 5's faults."""
    return small_config(seed=seed, **FAULT_CONFIGS.get(name, {}))


@dataclass
class FaultOutcome:
    name: str
    description: str
    caught: bool
    by: list[str]              # the rules and checks that fired, most specific first
    diagnostic: str            # the first of them, in words
    seeds: list[int]
    model_effect: str          # what went wrong in the run itself (wrong results, stall, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CatalogueResult:
    clean_runs: int
    clean_failures: list[str]
    outcomes: list[FaultOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.clean_failures and all(o.caught for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "clean_runs": self.clean_runs, "clean_failures": self.clean_failures,
                "faults": [o.to_dict() for o in self.outcomes]}


def detections(run: CheckedRun) -> tuple[list[str], str]:
    """What fired in a run: error-level trace rules, then failed invariant checks."""
    by: list[str] = []
    diag = ""
    for f in run.errors:
        tag = f"rule:{f.rule}"
        if tag not in by:
            by.append(tag)
            diag = diag or f.describe()
    for c in run.result.failed():
        tag = f"check:{c.id}"
        if tag not in by:
            by.append(tag)
            ex = f" e.g. {c.counterexamples[0]}" if c.counterexamples else ""
            diag = diag or f"{c.id} ({c.name}): {c.detail}{ex}"
    return by, diag


def _effect(run: CheckedRun) -> str:
    failed = [c.id for c in run.result.failed()]
    return ("run results wrong: " + ", ".join(failed)) if failed else "results right this time (rules only)"


def run_fault(name: str, seeds: tuple[int, ...] = (1, 2, 3), model: ModelConfig = ModelConfig()) -> FaultOutcome:
    """Plant ``name`` and run until something catches it (at most one run per seed)."""
    by: list[str] = []
    diag, effect = "", ""
    tried: list[int] = []
    for seed in seeds:
        tried.append(seed)
        run = run_checked(fault_config(name, seed), fault=name, model=model)
        fired, d = detections(run)
        effect = effect or _effect(run)
        for tag in fired:
            if tag not in by:
                by.append(tag)
        diag = diag or d
        if by:
            break
    return FaultOutcome(name, fault_doc(name), bool(by), by, diag or "nothing fired", tried, effect)


CLEAN_VARIANTS: tuple[tuple[str, int, bool, dict[str, Any]], ...] = (
    ("per-scanner", 2, False, {}), ("shared-mutex", 2, True, {}), ("per-scanner", 0, False, {}),
    ("per-scanner", 2, True, {}),
    # Order 5: a client spread over both brokers; then a planted gap resolved by markers, and
    # one resolved by fencing the session
    ("per-scanner", 5, False, {"client_spread": 2}),
    ("per-scanner", 5, False, {"client_spread": 2, "gap_client": 0, "gap_seq": 3, "gap_timeout_ms": 0.01}),
    ("per-scanner", 5, False, {"client_spread": 2, "gap_client": 0, "gap_seq": 3, "gap_timeout_ms": 0.01,
                               "gap_policy": "fence"}))


def run_clean(runs: int, first_seed: int = 1000, model: ModelConfig = ModelConfig()) -> tuple[list[str], int]:
    """Fault-free runs over seeds, both variants and both order levels. Returns the failures
    (one line each) and the total number of messages that went through."""
    failures: list[str] = []
    messages = 0
    for i in range(runs):
        variant, order, nt, extra = CLEAN_VARIANTS[i % len(CLEAN_VARIANTS)]
        seed = first_seed + i
        run = run_checked(small_config(order=order, variant=variant, seed=seed, nt_copy=nt, **extra),
                          model=model)
        messages += run.result.messages_published
        if not run.clean:
            by, diag = detections(run)
            failures.append(f"seed {seed} order {order} {variant}: {', '.join(by)}: {diag}")
    return failures, messages


def run_catalogue(only: list[str] | None = None, seeds: tuple[int, ...] = (1, 2, 3),
                  clean_runs: int = 3, quick: bool = False) -> CatalogueResult:
    names = list(only) if only else (list(QUICK) if quick else fault_names())
    for n in names:
        fault_doc(n)  # raises ConfigError naming the choices for an unknown fault
    failures, _ = run_clean(clean_runs) if clean_runs else ([], 0)
    return CatalogueResult(clean_runs, failures, [run_fault(n, seeds) for n in names])
