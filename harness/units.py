"""Parsing of human sizes ("64KiB", "1GiB", "4096") for the CLI and profiles."""

from __future__ import annotations

import re

from harness.errors import ConfigError

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2,
          "mib": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30, "t": 1000**4, "tib": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from '1GiB', '64 KiB', '1.5MB' or a plain number; ConfigError otherwise."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"{text!r} is not a size", "write e.g. 4096, 64KiB, 256MiB or 1GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def size_arg(text: str) -> int:
    """argparse ``type=`` for sizes: a bad value becomes a usage error, not a traceback."""
    import argparse

    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
