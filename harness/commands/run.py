"""``cxl-harness run``: the main job -- characterise, run, check, compare, write the report.

Exit status: 0 when every check passed, no target was MISSED (INCONCLUSIVE targets are shown
in amber and do not fail the run unless ``--strict``), calibration is within tolerance and
every planted fault was caught; 1 otherwise (the report says what failed); 2 when the run
could not be made (bad profile, device refused, ...).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.commands._args import check_names, check_output_dir, device_name, int_range
from harness.commands.faults import LIST_FAULTS
from harness.hosts.cli import add_hosts_option, run_job_on_hosts
from harness.profiles import DEFAULT_PROFILE


def register(subparsers: Any) -> None:
    """Add the ``run`` sub-command to the CLI's sub-parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="the main job: characterise the memory, run and check the log, write the HTML report",
        description=(
            "Detect the CXL device (or emulate one, per profile), characterise it, run the shared "
            "log at Order 0 and Order 2 with both scanner variants, run the ordering invariants, "
            "the flush/fence checks on the non-coherent model and the fault catalogue, compare "
            "with the profile's targets, and write OUT/<timestamp>/ (index.html, summary.json, "
            "pyperf.json, benchmark.json and the raw results) plus OUT/latest. Exit status 0 only "
            "when everything passed."
        ),
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, metavar="NAME|auto",
        help="hardware profile name or .yaml path; 'auto' picks one from what discovery finds "
             "(default: %(default)s, emulated memory, works anywhere)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR",
                        help="where run directories go (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and the fault catalogue's quick subset (under a minute)")
    parser.add_argument("--device", metavar="PATH", type=device_name,
                        help="device or file to use instead of the profile's memory (/dev/daxX.Y, node:N, a path)")
    parser.add_argument("--allow-destructive", action="store_true",
                        help="consent to overwrite the device's contents")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="an earlier run directory (or its summary.json, or OUT/latest) to compare with")
    parser.add_argument("--rounds", type=int_range(1, 1000, 5), metavar="N",
                        help="interleaved rounds of the log runs (default: 3 with --quick, else 5)")
    parser.add_argument("--plant-fault", metavar="NAME",
                        help="self-test: plant this fault-catalogue defect in the model runs, to see "
                             "how a failure reads in the report (the run then fails)")
    parser.add_argument("--strict", action="store_true",
                        help="an INCONCLUSIVE target (interval straddles the bound, or too noisy) fails the run")
    parser.add_argument("--mutation", choices=("auto", "off", "sites", "all"), default="auto",
                        help="the report's Mutation section: 'sites' runs the site mutants and the "
                             "shortest counterexample of each caught fault (about 2 minutes), 'all' "
                             "adds the patch mutants (one rebuild each, about 75 s more; needs the "
                             "source tree and a C compiler); 'auto' (default): sites in full runs, "
                             "off with --quick")
    add_hosts_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.job.main import MainJobOptions, run_main_job

    if args.plant_fault is not None:
        from harness.checked import fault_names

        check_names("--plant-fault", [args.plant_fault], fault_names(), "fault", LIST_FAULTS)
    check_output_dir(args.out, "--out")
    if getattr(args, "hosts", None):
        return run_job_on_hosts(args)
    command = "cxl-harness " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "cxl-harness run"
    options = MainJobOptions(
        profile=args.profile, out=args.out, quick=args.quick, device=args.device,
        allow_destructive=args.allow_destructive, compare=args.compare, command=command,
        rounds=args.rounds, plant_fault=args.plant_fault, strict=args.strict,
        mutation=args.mutation,
    )
    result = run_main_job(options)
    return 0 if result.ok else 1
