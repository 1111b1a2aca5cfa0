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

ROLES = ("publisher", "scanner", "subscriber")
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
    field = {"publisher": "crash_publisher", "scanner": "crash_scanner",
             "subscriber": "crash_subscriber"}[spec.role]
    kill = cfg.processes and spec.role != "scanner"
    probe = dataclasses.replace(cfg, **{field: spec.index}, crash_after=0, crash_kill=kill)
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
