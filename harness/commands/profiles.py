"""``cxl-harness profiles``: list the hardware profiles and validate them (or given files)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.commands._args import json_flag
from harness.profiles import (
    DEFAULT_PROFILE,
    list_profiles,
    load_profile,
    profile_dir,
    validate_file,
)


@dataclass
class Entry:
    name: str
    file: str
    valid: bool
    backend: str | None = None
    coherence: str | None = None
    description: str | None = None
    default: bool = False
    problems: list[str] = field(default_factory=list)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profiles", parents=[json_flag()],
        help="list hardware profiles and check that they are valid",
        description="List the shipped hardware profiles with their back-end, coherence and "
        "validation status, or validate the given profile files. Exit 1 if any is invalid.",
    )
    parser.add_argument(
        "--check", nargs="+", metavar="FILE", default=None,
        help="validate these profile files instead of listing the shipped ones",
    )
    parser.set_defaults(func=run)


def _entry(path: Path, is_shipped: bool) -> Entry:
    problems = validate_file(path)
    if problems:
        return Entry(path.stem, str(path), False, problems=problems)
    p = load_profile(path)
    return Entry(
        p.name, str(path), True, p.memory.backend, p.coherence, p.description,
        default=is_shipped and p.name == DEFAULT_PROFILE,
    )


def run(args: argparse.Namespace) -> int:
    if args.check:
        entries = [_entry(Path(f), False) for f in args.check]
    else:
        entries = [_entry(profile_dir() / f"{n}.yaml", True) for n in list_profiles()]
    if args.json:
        print(json.dumps([vars(e) for e in entries], indent=2))
    else:
        width = max([len(e.name) for e in entries] + [4])
        for e in entries:
            name = e.name + (" *" if e.default else "")
            if e.valid:
                status = f"{e.backend:<9} {e.coherence:<18} ok     "
                print(f"{name:<{width + 2}} {status}  {e.description}")
            else:
                print(f"{name:<{width + 2}} {'?':<9} {'?':<18} INVALID  {e.file}")
                for problem in e.problems:
                    print(f"    {problem}")
        if any(e.default for e in entries):
            print("* default profile")
    return 0 if all(e.valid for e in entries) else 1
