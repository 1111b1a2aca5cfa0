"""One group of log roles in its own OS process, attached to a shared region file.

Run by the coordinator (``harness.log.RoleProcess``) as ``python -m harness.log.role_process ...``.
It attaches to the region through a descriptor it inherited (``--region /proc/self/fd/N``)
with the device model the coordinator's region carries (``--device-model``: a region of an
emulated profile costs what the device costs in every process that maps it) and that model's
channels, shared with the coordinator and the other role processes through an inherited
descriptor (``--device-channels-fd``: one bandwidth cap and one utilisation), writes its
statistics, what its device model did and its per-batch records (.npz) to the inherited
``--out-fd``, and dies with its coordinator: PR_SET_PDEATHSIG is set before anything else,
and a coordinator already gone by then is noticed through the parent PID. SIGINT is ignored
(the coordinator owns Ctrl-C and stops its role processes); SIGTERM ends the process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.region import Region

PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 3


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the thread that started it ends; exit if it already did."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.log.role_process")
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--region", required=True, help="the region file, normally /proc/self/fd/N")
    p.add_argument("--region-fd", type=int, default=-1, help="inherited descriptor to close once mapped")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--config", required=True, help="LogConfig as JSON")
    p.add_argument("--roles", type=int, required=True)
    p.add_argument("--pub-brokers", type=int, default=0xFFFFFFFF)
    p.add_argument("--sub-mask", type=int, default=0xFFFFFFFF)
    p.add_argument("--out-fd", type=int, required=True, help="inherited descriptor for the results")
    p.add_argument("--device-model", default=None,
                   help="the device model the region carries (JSON of DeviceModel.to_dict())")
    p.add_argument("--device-channels-fd", type=int, default=-1,
                   help="inherited descriptor of the coordinator's shared channel file for that model")
    return p.parse_args(argv)


def open_role_region(path: str, size: int, model_json: str | None, channels_fd: int) -> Region:
    """The region as a role process maps it: the coordinator's file, with the device model it
    carries (attached where this process opens its mapping), sharing the coordinator's
    channels when it passed their descriptor (closed here once mapped: the mapping keeps
    them)."""
    from harness.errors import RegionError
    from harness.region import Region, device_model_from_json

    model = device_model_from_json(model_json) if model_json else None
    if channels_fd >= 0 and model is None:
        raise RegionError(f"--device-channels-fd {channels_fd} without --device-model",
                          "pass the model whose channels they are")
    region = Region.file(path, size, create=False, lock=False, device_model=model)
    try:
        if channels_fd >= 0:
            if region.device_model is None:
                raise RegionError("--device-channels-fd for a device model that pads nothing",
                                  "pass channels only with a device model")
            region.share_channels(channels_fd)
            os.close(channels_fd)
    except BaseException:
        region.close()
        raise
    return region


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    die_with_parent(a.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    import json

    import numpy as np

    from harness.log import LogConfig, LogHandle, attach_check

    cfg = LogConfig(**json.loads(a.config))
    with open_role_region(a.region, a.size, a.device_model, a.device_channels_fd) as region:
        if a.region_fd >= 0:
            os.close(a.region_fd)  # mapped now; the coordinator's lock is not ours to hold
        attach_check(region, cfg)
        h = LogHandle(region, cfg)
        try:
            rc = h.run(a.roles, a.pub_brokers, a.sub_mask)
            stats = h.stats()
            recs: dict[str, Any] = h.records() if cfg.recording else {}
        finally:
            h.close()
        reported = region.info().device_model  # what this process's model did, from the region
    meta = np.frombuffer(json.dumps({"rc": rc, "stats": stats, "device_model": reported}).encode(),
                         dtype=np.uint8)
    with os.fdopen(a.out_fd, "wb") as out:
        np.savez(out, __stats__=meta, **recs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
