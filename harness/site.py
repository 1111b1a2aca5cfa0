"""Where a run happens, resolved once: the hardware profile (named, or chosen from what
discovery finds), the device, the consent to overwrite it, and what discovery found.

A :class:`Site` walks sysfs at most once (``discovery``), chooses the back-end once
(``choice``), and maps regions with the profile's device model (``map``, ``open_for``): the
region is released, and its model with it, when the ``with`` block ends. Mapped devices take
the discovered objects (alignment, driver, CPU list) instead of reading sysfs again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.discovery import Choice, DaxDevice, Discovery, NumaNode, discover
from harness.errors import DeviceError
from harness.profiles import Profile, load_profile
from harness.region import DeviceModel

if TYPE_CHECKING:
    from harness.log import LogConfig
    from harness.region import Region

# Profiles ``--profile auto`` picks for what discovery finds.
AUTO_PROFILES: dict[str, str] = {"devdax": "cxl-devdax", "numa": "cxl-numa", "emulated": "ci", "file": "ci"}


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


def choose_backend(profile: Profile, device: str | None, sysfs_root: str = "/",
                   walk: Callable[[], Discovery] | None = None) -> Choice:
    """Explicit device > the profile's memory > discovery (for 'auto'). ``walk`` gives what
    discovery finds (with ``explicit_device=device``); it is called only when needed."""
    mem = profile.memory
    found = walk or (lambda: discover(sysfs_root, explicit_device=device))
    if device:
        return found().choice
    if mem.backend == "auto" or (mem.backend == "devdax" and not mem.device) or (
            mem.backend == "numa" and mem.node is None):
        choice = found().choice
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


@dataclass
class Site:
    """One profile on one machine: the context every mapping of a run shares."""

    profile: Profile
    reason: str = ""  # why this profile (named, or what --profile auto saw)
    device: str | None = None  # an explicit device (--device)
    allow_destructive: bool = False
    sysfs_root: str = "/"
    found: Discovery | None = field(default=None, repr=False)  # discovery, once walked

    @classmethod
    def resolve(cls, name: str, *, device: str | None = None, allow_destructive: bool = False,
                sysfs_root: str = "/") -> Site:
        """The site of profile ``name`` (a name, a path, or ``auto``: chosen by discovery)."""
        if name != "auto":
            profile = load_profile(name)
            return cls(profile, f"profile {profile.name} was named ({profile.source})", device,
                       allow_destructive, sysfs_root)
        found = discover(sysfs_root, explicit_device=device)
        chosen = AUTO_PROFILES.get(found.choice.backend, "ci")
        return cls(load_profile(chosen),
                   f"--profile auto chose {chosen} because discovery chose the {found.choice.backend} back-end",
                   device, allow_destructive, sysfs_root, found)

    @property
    def discovery(self) -> Discovery:
        """What sysfs holds (walked once per site)."""
        if self.found is None:
            self.found = discover(self.sysfs_root, explicit_device=self.device)
        return self.found

    @cached_property
    def choice(self) -> Choice:
        """The back-end: explicit device > the profile's memory > discovery."""
        return choose_backend(self.profile, self.device, self.sysfs_root, walk=lambda: self.discovery)

    @property
    def consent(self) -> bool:
        return self.allow_destructive or self.profile.memory.allow_destructive

    def numa_node(self, node: int | None) -> NumaNode | None:
        return next((n for n in self.discovery.numa_nodes if n.id == node), None) if node is not None else None

    def dax_device(self, path: str) -> DaxDevice | None:
        name = Path(path).name
        return next((d for d in self.discovery.dax_devices if d.name == name), None)

    @contextmanager
    def map(self, size: int, *, shareable: bool = False, what: str = "the run") -> Iterator[Region]:
        """Map ``size`` bytes (rounded to the device's alignment) of this site's memory with the
        profile's device model; released on exit."""
        from harness.log import shm_region
        from harness.region import HUGE_2M, Region, round_up

        choice, consent = self.choice, self.consent
        stack = ExitStack()
        if choice.backend == "devdax":
            assert choice.device is not None
            dax = self.dax_device(choice.device)
            align = dax.align if dax is not None and dax.align else HUGE_2M
            region = Region.devdax(choice.device, round_up(size, align), align, allow_destructive=consent,
                                   sysfs_root=self.sysfs_root, dax=dax)
        elif choice.backend == "numa":
            assert choice.node is not None
            region = Region.numa(choice.node, round_up(size, HUGE_2M), allow_destructive=consent,
                                 sysfs_root=self.sysfs_root, info=self.numa_node(choice.node))
        elif choice.backend == "file" and choice.device:
            path = Path(choice.device)
            if path.exists() and not consent:
                raise DeviceError(f"{path} exists; {what} would overwrite it",
                                  "pass --allow-destructive, or name a path that does not exist yet")
            region = Region.file(path, round_up(size, HUGE_2M), create=not path.exists(),
                                 device_model=device_model_for(self.profile, "file"))
        elif shareable:  # already unlinked: nothing is left on /dev/shm however the run ends
            region = stack.enter_context(shm_region(round_up(size, HUGE_2M),
                                                    device_model=device_model_for(self.profile, "emulated")))
        else:
            region = Region.emulated(round_up(size, HUGE_2M), hugepages=True,
                                     device_model=device_model_for(self.profile, "emulated"))
        try:
            yield region
        finally:
            region.close()
            stack.close()

    @contextmanager
    def open_for(self, cfg: LogConfig, *, shareable: bool = False) -> Iterator[Region]:
        """The region a run of ``cfg`` needs (at least the profile's emulated size)."""
        from harness.errors import RegionError
        from harness.log import explain_size, layout_size

        layout = need = layout_size(cfg)
        if self.profile.memory.backend == "emulated":
            need = max(need, self.profile.memory.size_mib << 20)
        with ExitStack() as stack:
            try:
                region = stack.enter_context(self.map(need, shareable=shareable))
            except RegionError as exc:
                if not exc.problem.startswith("cannot map") or need != layout:
                    raise
                # the size came from the configuration: say which value made it that big
                what, fix = explain_size(cfg)
                raise RegionError(f"{exc.problem}: the layout is {need:,} bytes, mostly {what}", fix) from None
            yield region

    def device_section(self, region_info: dict[str, Any] | None) -> dict[str, Any]:
        """The summary's ``device``: back-end, identity and the discovery reasoning."""
        from harness.report.rundir import jsonable

        disc, choice = self.discovery, self.choice
        reasons = [_sentence(self.reason)] if self.reason else []
        reasons.append(_sentence(choice.reason))
        if choice.reason != disc.choice.reason:
            reasons.append(f"Discovery on this machine (sysfs root {self.sysfs_root}): "
                           f"{_sentence(disc.choice.reason)}")
        info = region_info or {}
        return {
            "backend": str(info.get("backend") or choice.backend),
            "path": info.get("path") or choice.device,
            "size_bytes": int(info["size"]) if info.get("size") is not None else None,
            "numa_node": info.get("numa_node") if info.get("numa_node") is not None else choice.node,
            "discovery_reason": " ".join(reasons),
            "discovery": jsonable(disc.to_dict()),
        }


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def resolve_profile(name: str, device: str | None = None, sysfs_root: str = "/") -> tuple[Profile, str]:
    """The profile to run and a sentence saying why (``Site.resolve`` without the site)."""
    site = Site.resolve(name, device=device, sysfs_root=sysfs_root)
    return site.profile, site.reason
