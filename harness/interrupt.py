"""Long work off the main thread, so that Ctrl-C reaches Python at once.

A C call holds the main thread until it returns; Python runs a signal handler only after it.
:func:`in_worker` runs such work on a worker thread while the main thread waits in short,
interruptible steps. When the command line is stopped (SIGINT, SIGTERM: see
``harness.cli.stop_on_signals``) it sets the stop flag (:func:`request_stop`); long loops call
:func:`check_stop` between their C calls and end at the next one, and the worker is joined
before the memory it uses is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from harness.native.bench import set_stop

T = TypeVar("T")
_STOP = threading.Event()


class StopRequested(Exception):
    """Raised in a worker by :func:`check_stop` once a stop was requested."""


def request_stop() -> None:
    _STOP.set()
    set_stop(True)  # a benchmark loop in C ends within 4096 iterations


def stop_requested() -> bool:
    return _STOP.is_set()


def check_stop() -> None:
    """End the work in progress (between two C calls) when a stop was requested."""
    if _STOP.is_set():
        raise StopRequested("stopped")


def in_worker(fn: Callable[[], T], name: str = "cxl-work") -> T:
    """``fn()`` on a worker thread; its result, or its exception, here. Called off the main
    thread, it just calls ``fn``. Any exception here (a signal's) first stops the work and
    waits for the worker."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    _STOP.clear()  # a new piece of work: an earlier stop (already handled) does not carry over
    set_stop(False)
    out: list[T] = []
    err: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the waiting thread
            err.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, name=name)
    worker.start()
    try:
        while not done.wait(0.1):
            pass
    except BaseException:
        request_stop()
        done.wait()
        raise
    worker.join()
    if err:
        raise err[0]
    return out[0]
