"""One host's worker: maps the shared region as this host names it and runs its roles.

Started by the coordinator through execnet (see :mod:`harness.hosts.remote`); everything it
says is one dict per message. Requests: ``open`` (map, and format or attach-check),
``run`` (run this host's roles with :meth:`harness.log.LogHandle.run`, reporting progress
every ``progress_s``), ``clock`` (this host's monotonic clock, for the offset estimate),
``close`` (unmap, remove a region file this worker created). A closed channel or an
``abort`` while running ends the process at once, after removing a file it created: the
coordinator is gone or has given up, and no role may outlive it.
"""

from __future__ import annotations

import io
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import harness
from harness.errors import HarnessError

ABORT_EXIT = 3
# Tests only: "NAME=NS,..." shifts host NAME's clock by NS, as if it were another machine.
SKEW_ENV = "CXL_HARNESS_SIMULATED_CLOCK_SKEW"
TIME_FIELDS = {"publish": ("publish_ns",), "order": ("commit_ns",), "commit": ("ns",), "ack": ("ns",),
               "loss": ("ns",)}  # and "ns" of every deliver{k}
STATS_TIME_FIELDS = ("first_publish_ns", "last_publish_ns", "last_ack_ns", "end_ns")


def simulated_skew(name: str) -> int:
    for item in os.environ.get(SKEW_ENV, "").split(","):
        host, _, ns = item.partition("=")
        if host == name and ns.lstrip("-").isdigit():
            return int(ns)
    return 0


def shift_times(recs: dict[str, Any], stats: dict[str, Any], delta: int) -> None:
    """Add ``delta`` ns to every timestamp of a host's records and statistics (in place)."""
    if not delta:
        return
    for kind, arr in recs.items():
        fields = TIME_FIELDS.get(kind, ("ns",) if kind.startswith("deliver") else ())
        for f in fields:
            if len(arr) and arr.dtype.names and f in arr.dtype.names:
                col = arr[f].astype(np.int64) + np.int64(delta)
                arr[f] = np.maximum(col, 0).astype(arr[f].dtype)
    for f in STATS_TIME_FIELDS:
        if stats.get(f):
            stats[f] = max(0, int(stats[f]) + delta)


CHANNELS_SUFFIX = ".channels"  # the device model's shared channel file, beside the region file


def channels_path(region_file: Path) -> Path:
    return region_file.with_name(region_file.name + CHANNELS_SUFFIX)


class _State:
    def __init__(self) -> None:
        self.region: Any = None
        self.created: Path | None = None
        self.channels: Path | None = None  # the channel file this host made
        self.channels_fd = -1
        self.cfg: Any = None

    def cleanup(self) -> None:
        if self.region is not None:
            self.region.close()
            self.region = None
        if self.channels_fd >= 0:
            os.close(self.channels_fd)
            self.channels_fd = -1
        for made in (self.created, self.channels):
            if made is not None:
                try:
                    made.unlink()
                except FileNotFoundError:
                    pass
        self.created = self.channels = None


def _share_channels(state: _State, path: Path, formatting: bool) -> None:
    """Every host's device model writes through one bandwidth cap and sees one utilisation,
    as the hosts of a pooled device do: the formatting host (opened first) makes the channel
    file beside the region file, the others attach it."""
    from harness.errors import DeviceError

    if state.region is None or state.region.device_model is None:
        return
    cpath = channels_path(path)
    if formatting:
        # truncated: a file left by a killed run is re-initialised (this host formats anyway)
        state.channels_fd = os.open(cpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        state.channels = cpath
    else:
        try:
            state.channels_fd = os.open(cpath, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DeviceError(f"the device model's channel file {cpath} is missing",
                              "the formatting host makes it: open that host first, with the same "
                              "profile") from None
    state.region.share_channels(state.channels_fd, create=formatting)


def identity(name: str) -> dict[str, Any]:
    from harness.machine import cpu_description
    from harness.native import flush_instruction

    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    return {"name": name, "hostname": socket.gethostname(), "cpu": cpu_description(),
            "kernel": f"{platform.system()} {platform.release()}", "flush_instruction": flush_instruction(),
            "python": sys.executable, "pid": os.getpid(), "boot_id": boot_id,
            "package_version": harness.__version__}


def serve(channel: Any, hello: dict[str, Any]) -> None:
    state = _State()
    skew = simulated_skew(str(hello.get("host", "")))
    channel.send({"ok": True, "identity": identity(str(hello.get("host", "?")))})
    try:
        while True:
            try:
                msg = channel.receive()
            except EOFError:
                break
            op = msg.get("op")
            try:
                if op == "open":
                    channel.send({"ok": True, **_open(state, msg)})
                elif op == "run":
                    _run(state, channel, msg, skew)
                elif op == "clock":
                    channel.send({"ok": True, "ns": time.monotonic_ns() + skew})
                elif op == "close":
                    state.cleanup()
                    channel.send({"ok": True})
                    break
                elif op == "abort":
                    break
                else:
                    channel.send({"error": f"unknown request {op!r}", "fix": "use the same package version"})
            except HarnessError as exc:
                channel.send({"error": exc.problem, "fix": exc.fix or ""})
            except Exception as exc:  # noqa: BLE001 - reported by host, never a silent death
                channel.send({"error": f"{type(exc).__name__}: {exc}", "fix": "see the message"})
    finally:
        state.cleanup()


def _open(state: _State, msg: dict[str, Any]) -> dict[str, Any]:
    from harness.errors import DeviceError
    from harness.log import LogConfig, attach_check, format_region
    from harness.profiles import load_profile
    from harness.region import HUGE_2M, Region, round_up
    from harness.site import Site, device_model_for

    cfg = LogConfig(**msg["config"])
    state.cfg = cfg
    device, size = str(msg["device"]), int(msg["size"])
    # the profile's device model travels with the region this host maps (none on devdax)
    model = device_model_for(load_profile(str(msg["profile"])), "file") if msg.get("profile") else None
    if device.startswith("/dev/dax"):
        dax = Site(load_profile("ci"), device=device).dax_device(device)  # this host's sysfs, once
        align = dax.align if dax is not None and dax.align else HUGE_2M
        state.region = Region.devdax(device, round_up(size, align), align,
                                     allow_destructive=bool(msg.get("allow_destructive")),
                                     lock=bool(msg.get("format")), dax=dax)
    else:
        path = Path(device)
        if msg.get("create"):
            state.region = Region.file(path, size, create=True, lock=True, device_model=model)
            state.created = path
        else:
            if msg.get("format") and not msg.get("allow_destructive"):
                raise DeviceError(f"{path} exists; formatting it overwrites its contents",
                                  "pass --allow-destructive, or set create: true for a new file")
            state.region = Region.file(path, size, create=False, lock=bool(msg.get("format")),
                                       device_model=model)
        _share_channels(state, path, bool(msg.get("format")))
    if msg.get("format"):
        format_region(state.region, cfg)
    else:
        attach_check(state.region, cfg)
    return {"region": state.region.info().to_dict()}


def _run(state: _State, channel: Any, msg: dict[str, Any], skew: int = 0) -> None:
    from harness.log import LogHandle

    if state.region is None:
        raise HarnessError("run before open", "open the region first")
    cfg = state.cfg
    h = LogHandle(state.region, cfg)
    rc: list[int] = []
    failure: list[BaseException] = []

    def go() -> None:
        try:
            rc.append(h.run(int(msg["roles"]), int(msg["pub_brokers"]), int(msg["sub_mask"])))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)

    t = threading.Thread(target=go, name="roles", daemon=True)
    period = float(msg.get("progress_s", 0.5))
    t0 = time.monotonic()
    t.start()
    channel.send({"event": "started"})
    while t.is_alive():
        try:
            req = channel.receive(timeout=period)
        except channel.TimeoutError:
            channel.send({"event": "progress", "t": time.monotonic() - t0,
                          "progress": h.progress()})
            continue
        except EOFError:
            req = {"op": "abort"}
        if req.get("op") == "abort":
            state.cleanup()
            os._exit(ABORT_EXIT)  # the roles run in C: only ending the process stops them
    t.join()
    if failure:
        h.close()
        raise failure[0]
    try:
        stats = h.stats()
        recs = h.records() if cfg.recording else {}
    finally:
        h.close()
    shift_times(recs, stats, skew)
    channel.send({"event": "done", "rc": rc[0], "stats": stats,
                  "records": {k: _pack(v) for k, v in recs.items()}})


def _pack(arr: np.ndarray[Any, Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def unpack(data: bytes) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any] = np.load(io.BytesIO(data), allow_pickle=False)
    return out
