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


class RoleProcessError(HarnessError):
    """A role process of a multi-process run died, failed or did not finish."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM) after its workers were stopped."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        try:
            self.signame = signal.Signals(signum).name
        except ValueError:
            self.signame = f"signal {signum}"
        super().__init__(self.signame)
