"""The runs in progress in this process: logs and role processes, so that a signal can stop
them all (the command line's SIGINT/SIGTERM handler calls request_stop_all)."""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Protocol


class _Stoppable(Protocol):
    def request_stop(self) -> None: ...


# guards the registries of running logs and role processes (re-entrant: a signal handler in
# the main thread may take it while that thread holds it)
LIVE_LOCK = threading.RLock()
LIVE_HANDLES: set[_Stoppable] = set()
LIVE_PROCESSES: set[_Stoppable] = set()


def request_stop_all() -> None:
    """Ask every run in progress to stop: logs running in this process, and role processes
    (SIGTERM). Returns at once."""
    with LIVE_LOCK:
        everything = list(LIVE_HANDLES) + list(LIVE_PROCESSES)
    for run in everything:
        with suppress(ProcessLookupError):
            run.request_stop()
