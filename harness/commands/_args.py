"""Argument types, shared option groups and up-front checks of the sub-commands.

Every bad value becomes one usage line (``cxl-harness CMD: error: ...``, exit 2) before any
work starts: numbers are range-checked where argparse reads them, names are checked against
the known ones with a close-match suggestion, and output paths are proved writable first.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from harness.errors import ConfigError, HarnessError
from harness.profiles import DEFAULT_PROFILE

UINT64_MAX = (1 << 64) - 1
MAX_RING_SLOTS = 1 << 31  # the largest power of two a uint32 slot count holds


def int_range(lo: int, hi: int | None = None, example: int | None = None) -> Callable[[str], int]:
    """argparse ``type=``: an integer in [lo, hi]; anything else is a usage error naming it."""
    span = f"{lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def parse(text: str) -> int:
        fix = f"use {span}" + (f", e.g. {example}" if example is not None else "")
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (fix: {fix})") from None
        if value < lo or (hi is not None and value > hi):
            shown = text.strip() if len(text.strip()) <= 30 else text.strip()[:27] + "..."
            raise argparse.ArgumentTypeError(f"{shown} is out of range (fix: {fix})")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float, hi: float, example: float | None = None) -> Callable[[str], float]:
    """argparse ``type=``: a finite number in [lo, hi]; anything else is a usage error naming it."""
    def num(x: float) -> str:
        return str(int(x)) if x == int(x) else repr(x)

    span = f"{num(lo)}..{num(hi)}"

    def parse(text: str) -> float:
        fix = f"use {span}" + (f", e.g. {num(example)}" if example is not None else "")
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (fix: {fix})") from None
        if not math.isfinite(value) or value < lo or value > hi:
            shown = text.strip() if len(text.strip()) <= 30 else text.strip()[:27] + "..."
            raise argparse.ArgumentTypeError(f"{shown} is out of range (fix: {fix})")
        return value

    parse.__name__ = "number"
    return parse


def ring_slots(text: str) -> int:
    """argparse ``type=`` for ``--ring-slots``: a power of two the C slot count can hold."""
    value = int_range(2, MAX_RING_SLOTS, 256)(text)
    if value & (value - 1):
        below = 1 << (value.bit_length() - 1)
        raise argparse.ArgumentTypeError(
            f"{value} is not a power of two (fix: use {below} or {below * 2})")
    return value


def device_name(text: str) -> str:
    """argparse ``type=`` for ``--device``: never empty (an empty name used to mean 'none')."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is empty (fix: pass /dev/daxX.Y, node:N or a file path, or leave out --device)")
    return text


def profile_options() -> argparse.ArgumentParser:
    """``--profile`` as a parent parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="hardware profile (default: %(default)s)")
    return p


def device_options() -> argparse.ArgumentParser:
    """``--device`` and ``--allow-destructive`` as a parent parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--device", type=device_name, metavar="PATH",
                   help="device or file to use instead of the profile's memory "
                        "(/dev/daxX.Y, node:N, a path)")
    p.add_argument("--allow-destructive", action="store_true",
                   help="consent to overwrite the device's contents")
    return p


def json_flag() -> argparse.ArgumentParser:
    """``--json`` (print JSON instead of text) as a parent parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


# ------------------------------------------------------------------------------------------
# Names


def check_names(option: str, given: Iterable[str], known: Sequence[str], what: str,
                listing: str | None = None) -> None:
    """Refuse an unknown name, suggesting the close matches (difflib); the fix lists the known
    names, or names the command that lists them (``listing``) when they are many."""
    for name in given:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        fix = (f"see the {len(known)} {what} names with: {listing}" if listing
               else "choose one of: " + ", ".join(known))
        raise ConfigError(f"{option} {name!r}: unknown {what}{hint}", fix)


# ------------------------------------------------------------------------------------------
# Output paths, checked before the run (a result must never be lost at the end)


def check_output_file(path: str, option: str) -> None:
    """``path`` can be written: an existing writable file (a link the user names is followed),
    or a new name in a writable directory, proved by making and removing a directory beside
    it. Nothing is changed or left behind."""
    p = Path(os.path.realpath(path))  # where it will be written (a link is followed)
    fix = f"give {option} a file in a directory you can write"
    if p.is_dir():
        raise ConfigError(f"{option} {path}: is a directory", f"give a file name, for example {p / 'result.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist", fix)
    if p.exists():
        try:
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)  # opened, not written: left as it is
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot write it: {exc.strerror}", fix) from None
        os.close(fd)
        return
    _probe(parent, option, path, fix)


def check_output_dir(path: str | os.PathLike[str], option: str) -> None:
    """A directory that exists and is writable, or can be created under its nearest existing
    ancestor; nothing is created by the check."""
    p = Path(path)
    fix = f"give {option} a directory you can write"
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p}: exists and is not a directory", fix)
    probe_in = p
    while not probe_in.is_dir():
        if probe_in.exists() or probe_in.parent == probe_in:
            raise ConfigError(f"{option} {p}: {probe_in} is not a directory", fix)
        probe_in = probe_in.parent
    _probe(probe_in, option, str(p), fix)


def _probe(directory: Path, option: str, shown: str, fix: str) -> None:
    try:
        tmp = tempfile.mkdtemp(prefix=".cxl-harness-probe-", dir=directory)
    except OSError as exc:
        raise ConfigError(f"{option} {shown}: cannot create anything in {directory}: "
                          f"{exc.strerror or exc}", fix) from None
    os.rmdir(tmp)


# ------------------------------------------------------------------------------------------
# Long runs


LONG_RUN_S = 3600.0
FAST_PAYLOAD_BPS = 16 << 30   # faster than any memory this harness has run on
FAST_BATCHES_PER_S = 20e6     # likewise for the per-batch cost


def estimated_seconds(total_bytes: int, total_batches: int) -> float:
    """A lower bound of a run's duration: the payload and the batches at the fastest rates."""
    return max(total_bytes / FAST_PAYLOAD_BPS, total_batches / FAST_BATCHES_PER_S)


def confirm_long_run(command: str, seconds: float, yes: bool, what: str) -> None:
    """A run estimated at an hour or more goes ahead only with ``--yes`` or, on a terminal,
    an answer of y; without a terminal it is refused."""
    if seconds < LONG_RUN_S or yes:
        return
    est = _duration(seconds)
    line = f"{what} would take at least {est} (estimated at the fastest rates seen)"
    fix = "pass --yes to run it anyway, or ask for less (e.g. --total-bytes 256MiB)"
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ConfigError(line, fix)
    print(f"cxl-harness {command}: {line}.", file=sys.stderr)
    try:
        answer = input("Run it anyway? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise HarnessError("not started: the estimate was not confirmed", "pass --yes to run it anyway")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds > 1e9:
        return "longer than 30 years"
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:,.1f} hours"
    return f"{hours / 24:,.0f} days"
