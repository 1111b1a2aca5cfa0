"""Mapping a profile's memory for one use (a command that maps once). Everything is done by
:class:`harness.site.Site`; a run that maps more than once keeps the site instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from harness.discovery import Choice
from harness.log import LogConfig
from harness.profiles import Profile
from harness.region import Region
from harness.site import Site, choose_backend, device_model_for

__all__ = ["choose_backend", "device_model_for", "map_memory", "open_region"]


@contextmanager
def map_memory(profile: Profile, size: int, *, device: str | None = None,
               allow_destructive: bool = False, shareable: bool = False, sysfs_root: str = "/",
               what: str = "the run") -> Iterator[tuple[Region, Choice]]:
    """Map ``size`` bytes of the memory ``profile`` names (or ``device``) for one use; yields
    the region and the back-end choice. A run that maps more than once keeps a
    :class:`harness.site.Site` instead (discovery once)."""
    site = Site(profile, device=device, allow_destructive=allow_destructive, sysfs_root=sysfs_root)
    with site.map(size, shareable=shareable, what=what) as region:
        yield region, site.choice


@contextmanager
def open_region(profile: Profile, cfg: LogConfig, *, device: str | None = None,
                allow_destructive: bool = False, shareable: bool = False,
                sysfs_root: str = "/") -> Iterator[Region]:
    """Map the region a run of ``cfg`` on ``profile`` needs; release it afterwards."""
    site = Site(profile, device=device, allow_destructive=allow_destructive, sysfs_root=sysfs_root)
    with site.open_for(cfg, shareable=shareable) as region:
        yield region
