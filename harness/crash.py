"""Crash injection from the command line: ``--crash ROLE[:INDEX]@WHEN``.

ROLE is publisher, scanner or subscriber; INDEX (default 0) is the publisher index, the broker
of the scanner or the subscriber index; WHEN is a share of what that role does in the run
(``50%``) or a count (``10000``: batches the publisher completes, ring slots the scanner
scans, batches the subscriber delivers) before it dies in the middle of the next one.

In ``--processes`` mode a publisher or subscriber runs in a process of its own and SIGKILLs
it; in thread mode its thread stops. A scanner always stops its thread: the scanners share
their process with the sequencer (their epoch buffers are that process's memory). A dead role
is found by its beat standing still for ``--slot-timeout`` and its thread being gone; what it
leaves undone is reported by identity (see docs/architecture.md, "Crash injection").
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.log import LogConfig, LogResult
    from harness.results import Check

ROLES = ("publisher", "scanner", "subscriber")
# A crashed publisher's broker never finishes: the watchdog ends the run. With role processes it
# must also outlast their start (a publisher's process that waits for a scanner's process still
# starting shows no progress either): seconds, not the half second threads need.
PROCESS_WATCHDOG_S = 5.0
EXAMPLE = "publisher:1@50%"


@dataclass(frozen=True)
class CrashSpec:
    """A parsed ``--crash`` value; ``when`` is a percentage when ``percent``, else a count."""

    role: str
    index: int
    when: float
    percent: bool

    def __str__(self) -> str:
        when = f"{self.when:g}%" if self.percent else str(int(self.when))
        return f"{self.role}:{self.index}@{when}"


def parse_crash(text: str) -> CrashSpec:
    """argparse ``type=`` for ``--crash``: the syntax and the role name (ranges that depend on
    the run are checked by :func:`apply_crash`)."""
    fix = f"use ROLE[:INDEX]@WHEN, e.g. {EXAMPLE} or scanner@10000 (ROLE: {', '.join(ROLES)})"
    head, at, when_text = text.strip().partition("@")
    if not at or not head or not when_text:
        raise argparse.ArgumentTypeError(f"{text!r} has no @WHEN (fix: {fix})")
    role, colon, index_text = head.partition(":")
    role = role.strip().lower()
    if role == "sequencer":
        raise argparse.ArgumentTypeError(
            "'sequencer' cannot be crashed: nothing in this core takes over from it (the scanners' "
            f"epoch buffers live in its process) (fix: crash one of {', '.join(ROLES)})")
    if role not in ROLES:
        close = difflib.get_close_matches(role, ROLES + ("sequencer",), n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise argparse.ArgumentTypeError(f"{role!r}: unknown role{hint} (fix: {fix})")
    index = 0
    if colon:
        try:
            index = int(index_text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"index {index_text!r} is not an integer (fix: {fix})") from None
        if index < 0:
            raise argparse.ArgumentTypeError(f"index {index} is negative (fix: {fix})")
    w = when_text.strip()
    percent = w.endswith("%")
    try:
        when = float(w[:-1]) if percent else float(int(w, 10))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"WHEN {w!r} is neither a percentage nor a count (fix: {fix})") from None
    if percent and not 0 < when < 100:
        raise argparse.ArgumentTypeError(f"WHEN {w} is out of range (fix: use a share above 0% and "
                                         "below 100%, e.g. 50%)")
    if when < 0:
        raise argparse.ArgumentTypeError(f"WHEN {w} is negative (fix: {fix})")
    return CrashSpec(role, index, when, percent)


def apply_crash(cfg: LogConfig, spec: CrashSpec, *, slot_timeout_given: bool,
                model: bool = False, hosts: bool = False) -> LogConfig:
    """``cfg`` with the crash of ``spec``; every impossible combination is a ConfigError
    naming the value and the fix."""
    opt = f"--crash {spec}"
    if model:
        raise ConfigError(f"{opt}: the non-coherent model runs every role on one thread, so no role "
                          "can die alone", "drop --crash, or use a profile without the model")
    if hosts:
        raise ConfigError(f"{opt}: crash injection runs on this host only", "drop --hosts or --crash")
    if not slot_timeout_given:
        raise ConfigError(f"{opt} needs --slot-timeout MS: without it a dead role is never declared "
                          "dead and its work never resolved", f"add --slot-timeout 50 to {opt}")
    if spec.role in ("scanner", "subscriber") and cfg.order != 2:
        raise ConfigError(f"{opt}: a dead {spec.role} is found and worked around by the sequencer, "
                          f"and --order {cfg.order} has none", "use --order 2, or crash a publisher")
    count = {"publisher": cfg.brokers * cfg.publishers_per_broker, "scanner": cfg.brokers,
             "subscriber": cfg.subscribers}[spec.role]
    if count == 0:
        raise ConfigError(f"{opt}: the run has no subscriber", "add --subscribers 1 (or more)")
    if spec.index >= count:
        noun = {"publisher": "publisher", "scanner": "broker", "subscriber": "subscriber"}[spec.role]
        raise ConfigError(f"{opt}: {noun} index {spec.index} is out of range: the run has {count} "
                          f"{noun}{'s' if count != 1 else ''}", f"use an index 0..{count - 1}")
    kill = cfg.processes and spec.role != "scanner"
    i = spec.index
    probe = dataclasses.replace(cfg, crash_publisher=i if spec.role == "publisher" else -1,
                                crash_scanner=i if spec.role == "scanner" else -1,
                                crash_subscriber=i if spec.role == "subscriber" else -1,
                                crash_after=0, crash_kill=kill)
    limit, unit = probe.crash_after_limit, probe.crash_after_unit
    if spec.percent:
        after = int(limit * spec.when / 100)
    else:
        after = int(spec.when)
        if after >= limit:
            raise ConfigError(f"{opt}: WHEN {after} is out of range: the {spec.role} has {limit} "
                              f"{unit} in this run", f"use a count 0..{limit - 1}, or a share like 50%")
    return dataclasses.replace(probe, crash_after=after)


def crash_lines(result: LogResult) -> list[str]:
    """The crash's outcome in words for the terminal: what was injected, when it was found,
    what was declared lost (by identity) and the verdict. Empty when nothing was crashed."""
    cfg: dict[str, Any] = result.config
    checks = {c.id: c for c in result.checks}
    if "crash-detected" not in checks and "crash-losses-named" not in checks:
        return []
    out = []
    det = checks.get("crash-detected")
    if det is not None:
        out.append(f"  crash: {det.detail} -- {'detected' if det.ok else 'NOT DETECTED'}")
    named = checks.get("crash-losses-named")
    if named is not None:
        out.append(f"  crash: {named.detail}")
    prefix = checks.get("crashed-subscriber-prefix")
    if prefix is not None:
        out.append(f"  crash: {prefix.detail}")
    unexpected = checks.get("no-unexpected-loss")
    verdict = "expected outcome" if result.ok else "FAIL (see the failed checks)"
    if unexpected is not None and not unexpected.ok:
        verdict = "FAIL: a batch outside the crash was declared lost"
    out.append(f"  crash verdict: {verdict} (--slot-timeout {cfg.get('slot_timeout_ms', 0):g} ms)")
    return out


# ------------------------------------------------------------------------------------------
# The crash scenarios of ``cxl-harness run``


@dataclass
class CrashOutcome:
    """One injected crash, as the main job reports it: what was declared lost (by identity),
    how long the dead role took to be found, and the verdict of the run's checks."""

    role: str
    spec: str
    mode: str                      # "threads" or "processes" (SIGKILL)
    detected: bool
    detect_ms: float | None
    declared_lost: int
    lost: list[dict[str, Any]]     # the first declared-lost batches, by identity
    undelivered: int               # a crashed subscriber: committed batches it never got
    ok: bool                       # every check of the run passed (the crash is the expected outcome)
    failed: list[str]
    elapsed_s: float

    @property
    def detail(self) -> str:
        took = f"{self.detect_ms:.1f} ms" if self.detect_ms is not None else "unknown time"
        found = f"detected dead after {took}" if self.detected else "NOT detected"
        what = (f"{self.undelivered} committed batch(es) never delivered to it, nothing declared lost"
                if self.role == "subscriber" else f"{self.declared_lost} batch(es) declared lost")
        first = ", ".join(f"broker {e['broker']} slot {e['pbr_index']}" for e in self.lost[:4])
        if first:
            what += f" (first: {first}{', ...' if self.declared_lost > 4 else ''})"
        verdict = "expected outcome, every other check passed" if self.ok else \
            f"FAIL: {', '.join(self.failed[:4])}"
        return f"--crash {self.spec} ({self.mode}): {found}; {what}; {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "detail": self.detail}


def scenario_config(role: str, *, processes: bool) -> LogConfig:
    """A small run (2 brokers, 2 subscribers, 1 MiB) crashing ``role`` half-way."""
    from harness.log import LogConfig

    base = LogConfig(order=2, brokers=2, subscribers=2, msg_size=256, batch_bytes=4096,
                     total_bytes=1 << 20, ack=1, epoch_us=100, pbr_slots=16, goi_slots=1024,
                     slot_timeout_ms=20.0, watchdog_s=PROCESS_WATCHDOG_S if processes else 0.5,
                     record=True, processes=processes)
    spec = parse_crash(f"{role}:1@50%")
    return apply_crash(base, spec, slot_timeout_given=True)


def run_scenario(role: str, *, processes: bool) -> CrashOutcome:
    import time

    from harness.runlog import run_log

    cfg = scenario_config(role, processes=processes)
    t0 = time.monotonic()
    result = run_log(cfg)
    elapsed = time.monotonic() - t0
    c = result.counters
    crash_ns, detect_ns = c.get("crash_ns", 0), c.get("crash_detect_ns", 0)
    checks = {x.id: x for x in result.checks}
    named = checks.get("crash-losses-named")
    det = checks.get("crash-detected")
    prefix = checks.get("crashed-subscriber-prefix")
    undelivered = _undelivered(prefix.detail) if prefix is not None else 0
    return CrashOutcome(
        role=role, spec=f"{role}:1@50%", mode="processes" if processes else "threads",
        detected=bool(det and det.ok),
        detect_ms=(detect_ns - crash_ns) / 1e6 if crash_ns and detect_ns >= crash_ns else None,
        declared_lost=int(result.batches_lost), lost=list(named.counterexamples[:20]) if named else [],
        undelivered=undelivered, ok=result.ok, failed=[x.id for x in result.failed()], elapsed_s=elapsed)


def _undelivered(detail: str) -> int:
    """The count in crashed-subscriber-prefix's detail ("..., N committed batch(es) never ...")."""
    import re

    m = re.search(r"(\d+) committed batch\(es\) never delivered", detail)
    return int(m.group(1)) if m else 0


def run_scenarios(quick: bool) -> list[CrashOutcome]:
    """``--quick``: a publisher crash (threads, about a second). Full: a publisher and a
    subscriber SIGKILLed in their own processes, and a scanner stopped mid-epoch."""
    if quick:
        return [run_scenario("publisher", processes=False)]
    return [run_scenario("publisher", processes=True), run_scenario("scanner", processes=False),
            run_scenario("subscriber", processes=True)]


def crash_checks(outcomes: list[CrashOutcome]) -> list[Check]:
    """One summary check per scenario: passes when the dead role was detected, exactly the
    crash's batches were declared lost (named) and every other check of the run passed."""
    from harness.results import Check

    return [Check(f"crash.{o.role}", f"crash injection: {o.role} killed mid-run, the others go on",
                  o.ok and o.detected, o.detail, o.lost[:20], group="crash") for o in outcomes]
