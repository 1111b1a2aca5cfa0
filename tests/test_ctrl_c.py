"""Ctrl-C (SIGINT) and SIGTERM during ``publish`` and ``run``: the run stops cleanly (roles
asked to stop, threads joined, memory unmapped) and the command exits 128+signal with one
line -- never a crash (it used to end in SIGSEGV), never ignored until the run ends."""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from procutil import kill_all, role_processes, start_cli, stderr_lines, wait_for_roles, wait_gone

from harness.log import LogConfig, LogHandle, format_region, layout_size
from harness.region import Region

LONG_PUBLISH = ["publish", "--total-bytes", "1TiB", "--batch-bytes", "64KiB", "--brokers", "2"]
STOPPED = "the run was stopped and its memory released"


def _wait_for(pred: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _interrupt(proc: object, sig: int, tmp: Path, command: str) -> float:
    offset = (tmp / "stderr.txt").stat().st_size  # what the run wrote before the signal
    t0 = time.monotonic()
    proc.send_signal(sig)  # type: ignore[attr-defined]
    rc = proc.wait(30)  # type: ignore[attr-defined]
    took = time.monotonic() - t0
    assert rc == 128 + sig, (rc, stderr_lines(tmp))
    lines = stderr_lines(tmp, offset)
    assert lines == [f"cxl-harness {command}: interrupted by {signal.Signals(sig).name}: {STOPPED}"], lines
    assert "Traceback" not in (tmp / "stderr.txt").read_text(errors="replace")
    return took


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_publish_threads_stops_at_once(tmp_path: Path, sig: int) -> None:
    proc = start_cli(LONG_PUBLISH, tmp_path)
    try:
        # the progress bar shows after 2 s inside the run: the roles are running in C by then
        _wait_for(lambda: b"ordering" in (tmp_path / "stderr.txt").read_bytes(), 60, "the run to be under way")
        took = _interrupt(proc, sig, tmp_path, "publish")
    finally:
        kill_all(proc, [])
    assert took < 5.0, f"took {took:.1f}s to stop"


def test_publish_processes_ctrl_c_to_the_process_group(tmp_path: Path) -> None:
    """As a terminal sends it: SIGINT to the whole foreground group."""
    proc = start_cli(LONG_PUBLISH + ["--processes"], tmp_path, start_new_session=True)
    run = None
    try:
        run = wait_for_roles(proc, 3)
        time.sleep(0.3)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(30)
        took = time.monotonic() - t0
        left = wait_gone(run.roles, 3.0)
    finally:
        kill_all(proc, run.roles if run else [])
    assert rc == 130, stderr_lines(tmp_path)
    assert took < 5.0
    assert left == [] and role_processes(proc.pid) == []
    assert stderr_lines(tmp_path) == [f"cxl-harness publish: interrupted by SIGINT: {STOPPED}"]
    assert not Path(run.region.removesuffix(" (deleted)")).exists()


@pytest.mark.parametrize("phase", ["log runs:", "same-run ratio benchmarks", "fault catalogue"])
def test_run_interrupted_in_each_phase(tmp_path: Path, phase: str) -> None:
    out = tmp_path / "reports"
    proc = start_cli(["run", "--quick", "--out", str(out)], tmp_path)
    try:
        _wait_for(lambda: phase.encode() in (tmp_path / "stdout.txt").read_bytes(), 400, phase)
        time.sleep(0.1)
        took = _interrupt(proc, signal.SIGINT, tmp_path, "run")
    finally:
        kill_all(proc, [])
    assert took < 10.0
    assert not (out / "latest").exists()  # no report claims a run that did not finish


MODEL_RUN = ["publish", "--profile", "emulated-noncoherent", "--total-bytes", "64GiB", "--batch-bytes", "4KiB",
             "--msg-size", "256", "--yes"]  # minutes in one deterministic C call


def test_model_run_stops_at_once(tmp_path: Path) -> None:
    """A deterministic model run used to hold the main thread in one long C call, so Ctrl-C
    waited for its end; now the call runs on a worker and the stop flag ends it."""
    proc = start_cli(MODEL_RUN, tmp_path)
    try:
        time.sleep(4.0)  # imports, region, then well inside the C call (it prints nothing)
        assert proc.poll() is None, stderr_lines(tmp_path)
        took = _interrupt(proc, signal.SIGINT, tmp_path, "publish")
    finally:
        kill_all(proc, [])
    assert took < 5.0, f"took {took:.1f}s to stop"


LONG_BENCH = """
import os, signal, sys, threading, time
from harness.cli import stop_on_signals
from harness.interrupt import in_worker
from harness.native import load
lib = load().lib
call = lambda: lib.cxl_bench_fence_calls(10 ** 12)  # hours of fences in one C call
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t0 = time.monotonic()
try:
    with stop_on_signals():
        in_worker(call) if sys.argv[1] == "worker" else call()
except KeyboardInterrupt as exc:
    print(type(exc).__name__, f"{time.monotonic() - t0:.2f}")
"""


def test_a_long_benchmark_call_on_a_worker_stops_at_once() -> None:
    """What characterisation does: its C micro-benchmarks run on a worker (in_worker) and
    check a stop flag, so Ctrl-C ends even one call of hours within a moment."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", LONG_BENCH, "worker"], capture_output=True, text=True, timeout=60)
    name, took = r.stdout.split()
    assert name == "Interrupted" and float(took) < 4.0, (r.stdout, r.stderr)


def test_characterisation_measures_on_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.characterize as ch
    from harness.profiles import load_profile

    seen: list[bool] = []

    def measure(*a: object, **k: object) -> list[object]:
        seen.append(threading.current_thread() is threading.main_thread())
        return []

    monkeypatch.setattr(ch, "_measure_all", measure)
    ch.characterize(load_profile("ci"), quick=True)
    assert seen == [False]


def test_log_handle_stops_and_joins_on_an_exception_while_waiting() -> None:
    """In-process: KeyboardInterrupt in the waiting thread stops the C run and joins it before
    propagating, so closing the handle and unmapping the region afterwards is safe."""
    cfg = LogConfig(brokers=2, subscribers=1, msg_size=1024, batch_bytes=64 << 10, total_bytes=1 << 40,
                    pbr_slots=64)
    size = (layout_size(cfg) + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    with Region.emulated(size) as region:
        format_region(region, cfg)
        h = LogHandle(region, cfg)
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                h.run()
        finally:
            timer.cancel()
        took = time.monotonic() - t0
        assert not any(t.name == "cxl-log-run" and t.is_alive() for t in threading.enumerate())
        published = h.stats()["batches_published"]
        h.close()
    assert 0 < published < cfg.total_batches
    assert took < 10.0


def test_second_ctrl_c_during_the_stop_is_ignored(tmp_path: Path) -> None:
    """An impatient second Ctrl-C must not cut the clean-up short (that is how a half-stopped
    run used to free memory under running roles)."""
    proc = start_cli(LONG_PUBLISH, tmp_path)
    try:
        _wait_for(lambda: b"ordering" in (tmp_path / "stderr.txt").read_bytes(), 60, "the run to be under way")
        offset = (tmp_path / "stderr.txt").stat().st_size
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    finally:
        kill_all(proc, [])
    assert rc == 130, stderr_lines(tmp_path)
    assert stderr_lines(tmp_path, offset) == [f"cxl-harness publish: interrupted by SIGINT: {STOPPED}"]
