"""Role processes: the coordinator's side of the protocol. Each role group runs as
``python -m harness.log.role_process`` on a shared region file; its results come back through
a private, unlinked file; the first one that dies stops the others."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import RegionError, RoleProcessError
from harness.log.config import ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, LogConfig, config_json
from harness.log.live import LIVE_LOCK, LIVE_PROCESSES
from harness.region import DeviceModel, Region

@contextmanager
def shm_region(size: int, device_model: DeviceModel | None = None) -> Iterator[Region]:
    """A shareable region file made for one run, in a private directory (mkdtemp, 0700) on
    /dev/shm, and unlinked at once: the mapping (and the file descriptor that role processes
    inherit) keep the memory, so nothing is left under /dev/shm however the run ends, even
    when the coordinator is killed with SIGKILL."""
    tmpdir = tempfile.mkdtemp(prefix="cxl-harness-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = Path(tmpdir) / "region"
    try:
        region = Region.file(path, size, create=True, lock=True, device_model=device_model)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)
        os.rmdir(tmpdir)
    try:
        yield region
    finally:
        region.close()


@dataclass(frozen=True)
class RoleGroup:
    """Roles for one process: a CXL_ROLE_* mask, and which brokers' publishers / subscribers."""

    roles: int
    pub_brokers: int = 0xFFFFFFFF
    sub_mask: int = 0xFFFFFFFF

    @property
    def label(self) -> str:
        names = [n for bit, n in ((ROLE_PUBLISHERS, "publishers"), (ROLE_SCANNERS, "scanners"),
                                  (ROLE_SUBSCRIBERS, "subscribers")) if self.roles & bit]
        text = "+".join(names) or f"roles {self.roles}"
        if self.roles & ROLE_PUBLISHERS and self.pub_brokers != 0xFFFFFFFF:
            text += f" of brokers {_bits(self.pub_brokers)}"
        if self.roles & ROLE_SUBSCRIBERS and self.sub_mask != 0xFFFFFFFF:
            text += f" {_bits(self.sub_mask)}"
        return text


def _bits(mask: int) -> str:
    return ",".join(str(i) for i in range(32) if mask >> i & 1)


@dataclass
class RoleResult:
    rc: int
    stats: dict[str, Any]
    records: dict[str, Any]
    device_model: dict[str, Any] | None = None  # what the process's region model did (info())


class RoleProcess:
    """A role group running as ``python -m harness.log.role_process`` on a shared region file.

    The child attaches through an inherited descriptor of the region (``path`` is opened here,
    once), writes its results into a file that this side created with O_CREAT|O_EXCL|O_NOFOLLOW
    in a private directory (mkdtemp, 0700) and unlinked before the child started, and dies with
    the thread that started it (PR_SET_PDEATHSIG), so no role process outlives its coordinator.
    Each child has its own process group: a Ctrl-C at the terminal reaches the coordinator
    only, which then stops the children."""

    def __init__(self, path: str, size: int, cfg: LogConfig, group: RoleGroup, workdir: str | None = None,
                 device_model: DeviceModel | None = None, channels_fd: int = -1):
        import subprocess
        import sys

        from harness.region import device_model_to_json


        self.group = group
        self.out_fd = _private_result_file(workdir)
        self.err = tempfile.TemporaryFile(prefix="cxl-harness-role-", dir=workdir)
        region_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.log.role_process", "--parent-pid", str(os.getpid()),
                 "--region", f"/proc/self/fd/{region_fd}", "--region-fd", str(region_fd),
                 "--size", str(size), "--config", config_json(cfg), "--roles", str(group.roles),
                 "--pub-brokers", str(group.pub_brokers), "--sub-mask", str(group.sub_mask),
                 "--out-fd", str(self.out_fd),
                 *(("--device-model", device_model_to_json(device_model)) if device_model else ()),
                 *(("--device-channels-fd", str(channels_fd)) if device_model and channels_fd >= 0 else ())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err,
                pass_fds=(region_fd, self.out_fd, *((channels_fd,) if device_model and channels_fd >= 0 else ())),
                process_group=0)
        except BaseException:
            os.close(self.out_fd)
            self.err.close()
            raise
        finally:
            os.close(region_fd)
        self.died_ns = 0  # when supervise saw it die (time.monotonic_ns, the C core's clock)
        with LIVE_LOCK:
            LIVE_PROCESSES.add(self)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def request_stop(self) -> None:
        """Ask this role process to stop (SIGTERM); returns at once."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def kill(self) -> None:
        """SIGKILL and reap (a crash, as far as the other roles can tell)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._forget()

    def stop(self, grace_s: float = 2.0) -> None:
        """Ask to stop (SIGTERM), then SIGKILL after ``grace_s``; reaped either way."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self._forget()

    def _forget(self) -> None:
        with LIVE_LOCK:
            LIVE_PROCESSES.discard(self)

    def describe_exit(self) -> str:
        """How it ended, in words: killed by which signal, or the status and its last line."""
        code = self.proc.returncode
        who = f"role process {self.group.label} (pid {self.pid})"
        if code is None:
            return f"{who} is still running"
        if code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            return f"{who} was killed by {sig}"
        return f"{who} exited with status {code}: {self.last_error_line()}"

    def last_error_line(self) -> str:
        self.err.seek(0)
        lines = self.err.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def wait_result(self, timeout: float) -> RoleResult:
        import subprocess

        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RoleProcessError(f"role process {self.group.label} (pid {self.pid}) did not finish "
                                   f"in {timeout:.0f}s", "see the watchdog settings; the run was stopped") from None
        self._forget()
        if self.proc.returncode != 0:
            raise RoleProcessError(self.describe_exit(), "see the message; the run was stopped")
        return self.result()

    def result(self) -> RoleResult:
        """The results the (finished) child wrote."""
        import json

        with os.fdopen(os.dup(self.out_fd), "rb") as f:
            f.seek(0)
            with np.load(f) as z:
                meta = json.loads(bytes(z["__stats__"]).decode())
                recs = {k: z[k] for k in z.files if k != "__stats__"}
        self.close()
        return RoleResult(int(meta["rc"]), meta["stats"], recs, meta.get("device_model"))

    def close(self) -> None:
        if self.out_fd >= 0:
            os.close(self.out_fd)
            self.out_fd = -1
        self.err.close()


def _private_result_file(workdir: str | None) -> int:
    """A read-write descriptor of a new, already unlinked file made in a private directory."""
    d = tempfile.mkdtemp(prefix="cxl-harness-roles-", dir=workdir)
    try:
        return open_private(Path(d) / "roles.npz", unlink=True)
    finally:
        os.rmdir(d)


def open_private(path: Path, unlink: bool = False) -> int:
    """Create ``path`` for this process only: O_EXCL (never an existing file) and O_NOFOLLOW
    (never through a symbolic link), mode 0600. ``unlink`` removes the name at once."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise RegionError(f"{path} already exists (a file or a planted link)",
                          "results are never written through an existing name; remove it") from None
    if unlink:
        os.unlink(path)
    return fd


def start_role_processes(path: str, size: int, cfg: LogConfig, groups: list[RoleGroup],
                         workdir: str | None = None,
                         device_model: DeviceModel | None = None,
                         channels_fd: int = -1) -> list[RoleProcess]:
    """Start one process per group on the region file ``path``; ``workdir`` is where their
    private result directories are made (default: the system's temporary directory). Each
    maps the region with ``device_model`` (that of the region they share, normally
    ``region.device_model``; None: the region has none) and, given ``channels_fd`` (the
    coordinator's ``Region.share_channels()``), shares that model's channels with it, so that
    the device's bandwidth cap and utilisation are the same for every process."""
    procs: list[RoleProcess] = []
    try:
        for g in groups:
            procs.append(RoleProcess(path, size, cfg, g, workdir, device_model, channels_fd))
    except BaseException:
        stop_role_processes(procs)
        raise
    return procs


def stop_role_processes(procs: list[RoleProcess], grace_s: float = 2.0) -> None:
    """Stop every process of ``procs`` at once (SIGTERM to all, then SIGKILL) and reap them."""
    for p in procs:
        if p.proc.poll() is None:
            p.proc.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.stop(max(0.0, deadline - time.monotonic()))
        p.close()


def supervise(procs: list[RoleProcess], timeout: float, poll_s: float = 0.01,
              expect_killed: RoleProcess | None = None) -> list[RoleResult]:
    """Wait for every role process. The first one that dies or fails stops all the others at
    once and raises RoleProcessError naming it (role, PID, signal or status); so does a run
    past ``timeout``, and so does any exception here (Ctrl-C): no child is left running.
    ``expect_killed`` is the one process an injected crash SIGKILLs: its death is the expected
    outcome (the time it was seen is kept in ``died_ns``), and it has no result."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            codes = [p.proc.poll() for p in procs]
            if expect_killed is not None and expect_killed in procs:
                i = procs.index(expect_killed)
                if codes[i] == -signal.SIGKILL:
                    expect_killed.died_ns = time.monotonic_ns()
                    expect_killed.proc.wait()
                    expect_killed._forget()
                    expect_killed.close()
                    procs = procs[:i] + procs[i + 1:]
                    codes = codes[:i] + codes[i + 1:]
                elif codes[i] == 0:
                    raise RoleProcessError(f"{expect_killed.describe_exit()}: it was to be killed by "
                                           "the injected crash, and finished instead",
                                           "the crash point lies beyond what the role reaches; "
                                           "use a smaller WHEN")
            failed = [p for p, c in zip(procs, codes) if c not in (None, 0)]
            if failed:
                first = min(failed, key=lambda p: p.proc.returncode if p.proc.returncode < 0 else 1 << 30)
                others = len(procs) - 1
                raise RoleProcessError(
                    f"{first.describe_exit()}; stopped the other {others} role process"
                    f"{'es' if others != 1 else ''} and released the region",
                    "a role process should never die: look for the OOM killer (dmesg) or who sent "
                    "the signal, then rerun")
            if all(c == 0 for c in codes):
                return [p.result() for p in procs]
            if time.monotonic() > deadline:
                raise RoleProcessError(f"the role processes did not finish in {timeout:.0f}s",
                                       "see the watchdog settings; the run was stopped")
            time.sleep(poll_s)
    finally:
        stop_role_processes(procs)


_MAX_FIELDS = ("last_publish_ns", "last_ack_ns", "end_ns", "committed_seq", "messages_acked",
               "batches_acked", "stalled")


_LISTED = ("corrupt_off", "corrupt_val", "corrupt_kind")


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-process statistics: counts add up, frontiers and times take the max, the
    listed corrupt values are concatenated (the first few of all)."""
    out: dict[str, Any] = {}
    placed = [p["placement"] for p in parts if p.get("placement")]
    listed: dict[str, list[int]] = {k: [] for k in _LISTED}
    for part in parts:
        n = int(part.get("corrupt_listed", 0))
        for k in _LISTED:
            if k in part:
                listed[k].extend(part[k][:n])
        for k, v in part.items():
            if k == "placement" or k in _LISTED:
                continue
            if k not in out:
                out[k] = list(v) if isinstance(v, list) else v
            elif isinstance(v, list):
                out[k] = [a + b for a, b in zip(out[k], v)]
            elif k in _MAX_FIELDS or k == "stall_role":
                out[k] = max(out[k], v) if k != "stall_role" else out[k] | v
            elif k == "first_publish_ns":
                out[k] = min(x for x in (out[k], v) if x) if (out[k] or v) else 0
            else:
                out[k] = out[k] + v
    if placed:  # each role process placed its own roles
        out["placement"] = {"scheduling": "processes", "requested": placed[0].get("requested"),
                            "threads": sum(p.get("threads", 0) for p in placed),
                            "roles": [r for p in placed for r in p.get("roles", [])],
                            "processes": placed}
    for k in _LISTED:
        if any(k in part for part in parts):
            out[k] = (listed[k] + [0] * 8)[:8]
    if "corrupt_listed" in out:
        out["corrupt_listed"] = min(8, len(listed["corrupt_off"]))
    return out


def merge_records(parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    out: dict[str, list[Any]] = {}
    for part in parts:
        for k, arr in (part or {}).items():
            out.setdefault(k, []).append(arr)
    return {k: np.concatenate(v) for k, v in out.items()}
