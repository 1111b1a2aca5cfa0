"""The ``cxl-harness`` command line. Errors are one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from harness.errors import HarnessError

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.commands.run",
    "harness.commands.detect",
    "harness.commands.profiles",
    "harness.commands.publish",
    "harness.commands.faults",
    "harness.commands.check_trace",
    "harness.commands.check_history",
    "harness.commands.characterize",
    "harness.commands.bench",
    "harness.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxl-harness",
        description="Validate a CXL-memory shared log on a real device or emulated memory.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except HarnessError as exc:
        print(f"cxl-harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxl-harness {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
