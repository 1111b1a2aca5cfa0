"""Where a run happens: the hardware profile (named, or chosen from what discovery finds)."""

from __future__ import annotations

from harness.discovery import discover
from harness.profiles import Profile, load_profile

# Profiles ``--profile auto`` picks for what discovery finds.
AUTO_PROFILES: dict[str, str] = {"devdax": "cxl-devdax", "numa": "cxl-numa", "emulated": "ci", "file": "ci"}


def resolve_profile(name: str, device: str | None = None, sysfs_root: str = "/") -> tuple[Profile, str]:
    """The profile to run and a sentence saying why. ``auto`` picks by what discovery finds
    (an explicit ``device`` counts as found)."""
    if name != "auto":
        profile = load_profile(name)
        return profile, f"profile {profile.name} was named ({profile.source})"
    choice = discover(sysfs_root, explicit_device=device).choice
    chosen = AUTO_PROFILES.get(choice.backend, "ci")
    profile = load_profile(chosen)
    return profile, f"--profile auto chose {chosen} because discovery chose the {choice.backend} back-end"
