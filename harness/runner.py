"""From a hardware profile to a mapped region: discovery, consent and the device model the
region carries (set once here, when it is opened; nobody switches it on or off later)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from harness.discovery import Choice, discover
from harness.errors import DeviceError, RegionError
from harness.log import LogConfig, explain_size, layout_size, shm_region
from harness.profiles import Profile
from harness.region import HUGE_2M, DeviceModel, Region, round_up


def device_model_for(profile: Profile, backend: str) -> DeviceModel | None:
    """The device model a region of ``profile`` on ``backend`` carries: the profile's, on
    emulated and file memory; none on a real device (it costs what it costs)."""
    if backend not in ("emulated", "file"):
        return None
    m = profile.device_model
    if not (m.any or m.invalidate_flushes):
        return None
    # anonymous emulated memory is not the device: the model's write-back replaces the host's
    return replace(m, host_flush=backend == "file")


def choose_backend(profile: Profile, device: str | None, sysfs_root: str = "/") -> Choice:
    """Explicit device > the profile's memory > discovery (for 'auto')."""
    mem = profile.memory
    if device:
        return discover(sysfs_root, explicit_device=device).choice
    if mem.backend == "auto" or (mem.backend == "devdax" and not mem.device) or (
            mem.backend == "numa" and mem.node is None):
        choice = discover(sysfs_root).choice
        if mem.backend in ("devdax", "numa") and choice.backend != mem.backend:
            raise DeviceError(
                f"profile {profile.name} needs a {mem.backend} device but discovery found none "
                f"({choice.reason})", "run 'cxl-harness detect' on the machine with the device")
        return choice
    if mem.backend == "devdax":
        return Choice("devdax", mem.device, None, f"profile {profile.name} names {mem.device}")
    if mem.backend == "numa":
        return Choice("numa", None, mem.node, f"profile {profile.name} names node {mem.node}")
    if mem.backend == "file":
        return Choice("file", mem.path, None, f"profile {profile.name} names file {mem.path}")
    return Choice("emulated", None, None, f"profile {profile.name} uses emulated memory")


@contextmanager
def map_memory(profile: Profile, size: int, *, device: str | None = None,
               allow_destructive: bool = False, shareable: bool = False, sysfs_root: str = "/",
               what: str = "the run") -> Iterator[tuple[Region, Choice]]:
    """Map ``size`` bytes of the memory ``profile`` names (or ``device``), rounded to the
    device alignment; yields the region and the discovery choice, releases it afterwards."""
    consent = allow_destructive or profile.memory.allow_destructive
    choice = choose_backend(profile, device, sysfs_root)
    stack = ExitStack()
    if choice.backend == "devdax":
        assert choice.device is not None
        align = _dax_align(choice.device, sysfs_root)
        region = Region.devdax(choice.device, round_up(size, align), align,
                               allow_destructive=consent, sysfs_root=sysfs_root)
    elif choice.backend == "numa":
        assert choice.node is not None
        region = Region.numa(choice.node, round_up(size, HUGE_2M), allow_destructive=consent,
                             sysfs_root=sysfs_root)
    elif choice.backend == "file" and choice.device:
        path = Path(choice.device)
        if path.exists() and not consent:
            raise DeviceError(f"{path} exists; {what} would overwrite it",
                              "pass --allow-destructive, or name a path that does not exist yet")
        region = Region.file(path, round_up(size, HUGE_2M), create=not path.exists(),
                             device_model=device_model_for(profile, "file"))
    elif shareable:  # already unlinked: nothing is left on /dev/shm however the run ends
        region = stack.enter_context(shm_region(round_up(size, HUGE_2M),
                                                device_model=device_model_for(profile, "emulated")))
    else:
        region = Region.emulated(round_up(size, HUGE_2M), hugepages=True,
                                 device_model=device_model_for(profile, "emulated"))
    try:
        yield region, choice
    finally:
        region.close()
        stack.close()


@contextmanager
def open_region(profile: Profile, cfg: LogConfig, *, device: str | None = None,
                allow_destructive: bool = False, shareable: bool = False,
                sysfs_root: str = "/") -> Iterator[Region]:
    """Map the region a run of ``cfg`` on ``profile`` needs; release it afterwards."""
    layout = need = layout_size(cfg)
    if profile.memory.backend == "emulated":
        need = max(need, profile.memory.size_mib << 20)
    with ExitStack() as stack:
        try:
            region, _ = stack.enter_context(map_memory(
                profile, need, device=device, allow_destructive=allow_destructive, shareable=shareable,
                sysfs_root=sysfs_root))
        except RegionError as exc:
            if not exc.problem.startswith("cannot map") or need != layout:
                raise
            # the size came from the configuration: say which value made it that big
            what, fix = explain_size(cfg)
            raise RegionError(f"{exc.problem}: the layout is {need:,} bytes, mostly {what}", fix) from None
        yield region


def _dax_align(device: str, sysfs_root: str) -> int:
    f = Path(sysfs_root) / "sys/bus/dax/devices" / Path(device).name / "align"
    try:
        return int(f.read_text().strip())
    except (OSError, ValueError):
        return HUGE_2M
