"""Exceptions of the harness. Each carries the offending value and the fix."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: a user-facing error printed as one line by the CLI."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)


class ProfileError(HarnessError):
    """A hardware profile is missing, malformed or names unknown values."""


class DeviceError(HarnessError):
    """A memory device or back-end cannot be used as asked."""


class RegionError(HarnessError):
    """A shared region cannot be created, mapped or attached."""


class ConfigError(HarnessError):
    """A run configuration is inconsistent."""


class HistoryError(HarnessError):
    """A history or trace file cannot be parsed."""
