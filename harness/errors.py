"""Exceptions of the harness. Each carries the offending value and the fix."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: a user-facing error printed as one line by the CLI."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)


class CoreError(HarnessError):
    """A call into the C core returned an error: ``call`` is the C function, ``errno`` the
    (positive) error number it returned (0 when it gives none), ``text`` the core's own words
    for it. Callers that know what the call was for turn it into their own error
    (harness.region into a RegionError with the path and the fix)."""

    def __init__(self, call: str, err: int = 0, text: str = "", fix: str | None = None) -> None:
        import os

        self.call = call
        self.errno = err
        self.text = text or (os.strerror(err) if err else "failed")
        super().__init__(f"{call}: {self.text}" + (f" (errno {err})" if err else ""), fix)


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


def why_not_a_file(path: object) -> str:
    """Why ``path`` cannot be read as a regular file, in words: it does not exist, is a
    directory, a character device (``/dev/null`` reads as empty), a FIFO, a socket..."""
    import os
    import stat

    try:
        mode = os.stat(str(path)).st_mode
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a part of the path is not a directory)"
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISCHR(mode):
        return "is a character device, not a regular file (it reads as empty or endless)"
    if stat.S_ISBLK(mode):
        return "is a block device, not a regular file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"
