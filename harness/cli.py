"""The ``cxl-harness`` command line. Errors are one clear line and a non-zero exit.

Exit status: what the command returns (0 passed, 1 failed), 2 for bad input or a run that
could not be made, 128+N when stopped by signal N (130 for Ctrl-C, 143 for SIGTERM) after the
run was stopped cleanly, 141 when the reader of the output went away (``| head``), and 70 for
an internal error (one line; ``CXL_HARNESS_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from harness.errors import HarnessError, Interrupted
from harness.interrupt import StopRequested

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.commands.run",
    "harness.commands.detect",
    "harness.commands.profiles",
    "harness.commands.publish",
    "harness.commands.faults",
    "harness.commands.mutate",
    "harness.commands.check_trace",
    "harness.commands.check_history",
    "harness.commands.characterize",
    "harness.commands.bench",
    "harness.commands.report",
)

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141
STOP_GRACE_S = 10.0  # how long a stop may take before the workers are left to the OS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxl-harness",
        description="Validate a CXL-memory shared log on a real device or emulated memory.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except BrokenPipeError:  # --help into a closed pipe
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    command: str = args.command
    try:
        with stop_on_signals():
            code: int = args.func(args)
            sys.stdout.flush()
    except HarnessError as exc:
        return _say(command, f"error: {exc}", EXIT_BAD_INPUT)
    except Interrupted as exc:
        return _say(command, f"interrupted by {exc.signame}: the run was stopped and its memory "
                             "released", 128 + exc.signum)
    except KeyboardInterrupt:
        return _say(command, "interrupted: the run was stopped and its memory released",
                    128 + signal.SIGINT)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a file or device the user named could not be read or written
        what = f" {exc.filename}" if exc.filename else " a file given"
        return _say(command, f"error: cannot read or write{what}: {exc.strerror or exc} (fix: check the "
                             "paths given and their permissions)", EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: one line, never a traceback, unless asked for
        if os.environ.get("CXL_HARNESS_TRACEBACK", "") not in ("", "0"):
            raise
        return _say(command, f"internal error: {type(exc).__name__}: {exc} (fix: this is a bug in the "
                             "harness; rerun with CXL_HARNESS_TRACEBACK=1 and report the traceback)",
                    EXIT_INTERNAL)
    return code


def _say(command: str, text: str, code: int) -> int:
    try:
        print(f"cxl-harness {command}: {text}", file=sys.stderr)
    except (BrokenPipeError, ValueError):
        pass
    return code


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a StringIO (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run cleanly: every running log is asked to stop, worker
    threads are joined while the memory they use is still mapped, and only then is
    :class:`Interrupted` raised, so the clean-up that follows unmaps nothing in use.

    Later signals during that clean-up are ignored (it is bounded); a third one exits at once.
    After a signal, SIGINT and SIGTERM stay ignored when this returns (the caller is exiting).
    Outside the main thread nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) >= 3:
            os.write(2, b"cxl-harness: interrupted again: exiting without clean-up\n")
            os._exit(128 + signum)
        if len(seen) > 1:
            return
        stop_workers(STOP_GRACE_S)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except StopRequested:
        # the stop flag the handler set ended a worker's loop, and its StopRequested reached
        # this thread before the handler's own Interrupted could: the same interruption
        if seen:
            raise Interrupted(seen[0]) from None
        raise
    finally:
        for s, h in previous.items():
            # once stopped by a signal the process is on its way out: a late second Ctrl-C
            # must not turn exit 130 into a death by SIGINT
            signal.signal(s, signal.SIG_IGN if seen else h)


def stop_workers(grace_s: float) -> None:
    """Ask every running log (threads and role processes) to stop and wait for the threads."""
    live = sys.modules.get("harness.log.live")
    if live is not None:
        live.request_stop_all()
    work = sys.modules.get("harness.interrupt")
    if work is not None:  # loops of C calls on a worker (characterisation) end at the next one
        work.request_stop()
    deadline = time.monotonic() + grace_s
    me = threading.current_thread()
    for t in threading.enumerate():
        # a thread still inside start() (the signal came while its starter waited there) is
        # not alive yet and cannot be joined: its starter stops it and waits for it
        if t is me or t.daemon or not t.is_alive():
            continue
        t.join(max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
