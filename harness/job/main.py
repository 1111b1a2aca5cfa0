"""The main job (``cxl-harness run``): everything a lab engineer attaches to a ticket.

One call of :func:`run_main_job`:

1. picks the hardware profile (``auto``: from what discovery finds) and the memory back-end,
   and records the discovery reasoning;
2. characterises the memory (:mod:`harness.characterize`);
3. runs the shared log at Order 0 and Order 2 with both scanner variants, in interleaved
   rounds (A B C D A B C D ...), every run checked against the ordering invariants;
4. runs the same-run ratio benchmarks and the seed's ablations (:mod:`harness.benchmarks`,
   when that module is installed; otherwise the targets are computed from step 3's runs);
5. runs fault-free runs on the checked build through the non-coherent model (flush/fence
   trace rules) and the fault catalogue (its quick subset with ``--quick``), then crashes a
   role mid-run (``--quick``: a publisher; full: a publisher, a scanner and a subscriber),
   each reported as a named check: what was declared lost, the time to detect, the verdict;
6. in full runs (``mutation``: auto; ``sites``/``all`` ask for it with ``--quick`` too) runs
   the site mutants (:mod:`harness.mutate`), the shortest counterexample of each caught
   catalogue fault (:mod:`harness.counterexamples`) and, with ``all``, the patch mutants
   (:mod:`harness.patchmut`), for the report's Mutation section and ``mutation.json``;
7. compares with the profile's targets and writes ``<out>/<timestamp>/`` holding
   ``index.html``, ``summary.json`` (``cxl-harness-summary/2``), ``pyperf.json``,
   ``benchmark.json`` (pytest-benchmark format) and the raw results, and points
   ``<out>/latest`` at it.

The verdict passes only when every check passed, every target was met, no calibration item
is out of tolerance and every planted fault was caught.

The helpers that turn results into summary sections (:func:`meta_section`,
:func:`device_section`, :func:`run_entry`, :func:`ordering_checks`, :func:`write_run_dir`,
...) are shared with the pytest plugin's ``--cxl-report``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import harness
from harness import benchmarks
from harness import crash as crash_mod
from harness.characterize import characterize
from harness.checked import CheckedRun, ModelConfig, fault_doc, run_checked, small_config
from harness.errors import ConfigError
from harness.faults import CLEAN_VARIANTS, CatalogueResult, run_catalogue
from harness.job.exports import (BENCHMARK_FILENAME, PYPERF_FILENAME, benchmark_items, log_run_items,
                                 log_run_pyperf, pyperf_text, pytest_benchmark_json)
from harness.job.sections import (calibration_items, characterization_ablation, device_section,
                                  emulation_section,
                                  fault_sections, flush_fence_checks, ordering_checks, profile_section,
                                  run_entry, summary_ablations, summary_targets, verdict_section)
from harness.log import LogResult, workload_config
from harness.machine import _now, meta_section
from harness.native import flush_instruction
from harness.profiles import Profile
from harness.report.mutation import MUTATION_FILENAME, mutation_section
from harness.report.mutation import raw_file as mutation_raw_file
from harness.report.rundir import jsonable, load_previous, write_run_dir
from harness.report.summary import SCHEMA_ID, SUMMARY_FILENAME
from harness.runlog import run_log
from harness.site import Site

ORDERS: tuple[int, ...] = (0, 2)
VARIANTS: tuple[str, ...] = ("per-scanner", "shared-mutex")
RUNS_FILENAME = "log-runs.json"
CHARACTERIZATION_FILENAME = "characterization.json"
BENCHMARKS_FILENAME = "benchmarks.json"
FAULTS_FILENAME = "faults.json"
CRASHES_FILENAME = "crashes.json"


@dataclass(frozen=True)
class MainJobOptions:
    """What ``cxl-harness run`` was asked to do."""

    profile: str = "ci"  # a profile name, a path to a profile file, or "auto"
    out: Path = Path("reports")
    quick: bool = False
    device: str | None = None
    allow_destructive: bool = False
    compare: Path | None = None  # an earlier run directory (or its summary.json)
    sysfs_root: str = "/"
    command: str | None = None  # the command line, for the report
    rounds: int | None = None  # interleaved rounds of the log runs (default: 3 quick, 5 full)
    plant_fault: str | None = None  # self-test: plant a catalogue defect in the model runs
    run_name: str | None = None  # the run directory's name (default: a timestamp)
    strict: bool = False  # an INCONCLUSIVE target fails the run
    # the Mutation section: auto (site mutants and counterexamples in full runs, none with
    # quick), off, sites, all (with the patch mutants)
    mutation: str = "auto"

    @property
    def mutation_parts(self) -> tuple[bool, bool]:
        """(site mutants and counterexamples, patch mutants) this run computes."""
        if self.mutation not in ("auto", "off", "sites", "all"):
            raise ConfigError(f"unknown mutation choice {self.mutation!r}", "use auto, off, sites or all")
        sites = self.mutation in ("sites", "all") or (self.mutation == "auto" and not self.quick)
        return sites, self.mutation == "all"


@dataclass
class MainJobResult:
    ok: bool
    run_dir: Path
    report: Path
    latest: Path
    summary: dict[str, Any]
    runs: dict[str, list[LogResult]]  # label -> one LogResult per round
    representative: dict[str, LogResult]  # label -> the run shown in the report
    failed: list[str] = field(default_factory=list)


def run_log_rounds(profile: Profile, *, quick: bool, rounds: int, device: str | None = None,
                   allow_destructive: bool = False, sysfs_root: str = "/",
                   on_run: Callable[[str, int, LogResult], None] | None = None,
                   site: Site | None = None) -> tuple[dict[str, list[LogResult]], dict[str, Any]]:
    """Order 0 and 2, both variants, interleaved over ``rounds`` rounds on one region."""
    configs = {f"order{o}/{v}": workload_config(profile, order=o, variant=v, quick=quick)
               for o in ORDERS for v in VARIANTS}
    biggest = max(configs.values(), key=lambda c: c.total_bytes)
    out: dict[str, list[LogResult]] = {label: [] for label in configs}
    site = site or Site(profile, device=device, allow_destructive=allow_destructive, sysfs_root=sysfs_root)
    with site.open_for(biggest) as region:
        try:
            for r in range(rounds):
                for label, cfg in configs.items():
                    result = run_log(replace(cfg, seed=cfg.seed + r), region=region)
                    out[label].append(result)
                    if on_run is not None:
                        on_run(label, r + 1, result)
        finally:
            info = region.info().to_dict()
    return out, jsonable(info)


def representative(results: list[LogResult]) -> LogResult:
    """The run of median throughput (a failing run wins, so the report shows it)."""
    failing = [r for r in results if not r.ok]
    if failing:
        return failing[0]
    ordered = sorted(results, key=lambda r: r.throughput_mib_s)
    return ordered[(len(ordered) - 1) // 2]


def model_runs(count: int, plant_fault: str | None = None, first_seed: int = 1000) -> list[tuple[str, CheckedRun]]:
    """Runs on the checked build through the non-coherent model, cycling through both
    variants and the order levels, Order 5 with a planted gap resolved each way
    (:data:`harness.faults.CLEAN_VARIANTS`)."""
    out = []
    for i in range(count):
        variant, order, nt, extra = CLEAN_VARIANTS[i % len(CLEAN_VARIANTS)]
        seed = first_seed + i
        cfg = small_config(order=order, variant=variant, seed=seed, nt_copy=nt, **extra)
        o5 = ""
        if order == 5:
            o5 = f" spread {cfg.client_spread}" + (f" gap by {cfg.gap_policy}" if cfg.gap_client >= 0 else "")
        label = f"model order{order}/{variant}{' nt-copy' if nt else ''}{o5} seed {seed}"
        out.append((label, run_checked(cfg, fault=plant_fault, model=ModelConfig())))
    return out


def mutation_parts(options: MainJobOptions, catalogue: CatalogueResult, say: Callable[[str], None]
                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The summary's ``mutation`` section and the raw ``mutation.json``, when asked for."""
    sites_on, patches_on = options.mutation_parts
    if not sites_on and not patches_on:
        return None, None
    from harness.counterexamples import fault_counterexamples
    from harness.mutate import run_mutation

    say("mutation: every seam call of the protocol switched off in turn")
    site_rep = run_mutation().to_dict()
    say(f"  {site_rep['killed']} of {site_rep['mutants']} site mutants killed, "
        f"{site_rep['equivalent']} equivalent, {site_rep['survived']} survived ({site_rep['seconds']:.0f}s)")
    caught = [o.name for o in catalogue.outcomes if o.caught]
    say(f"  shortest counterexample of each of the {len(caught)} caught faults")
    cx = [c.to_dict() for c in fault_counterexamples(caught)]
    patches = None
    if patches_on:
        from harness.patchmut import run_patches

        say("  patch mutants: bounds, order and checks changed in the C source, one rebuild each")
        patches = run_patches().to_dict()
        say(f"  {patches['killed']} of {patches['mutants']} patch mutants killed, "
            f"{patches['equivalent']} equivalent, {patches['survived']} survived ({patches['seconds']:.0f}s)")
    return mutation_section(site_rep, patches, cx), mutation_raw_file(site_rep, patches, cx)


def run_main_job(options: MainJobOptions, stream: TextIO | None = None) -> MainJobResult:
    """Run everything and write the report; see the module docstring."""
    out = stream if stream is not None else sys.stdout
    started = _now()
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {text}", file=out, flush=True)

    site = Site.resolve(options.profile, device=options.device, allow_destructive=options.allow_destructive,
                        sysfs_root=options.sysfs_root)
    profile, profile_reason = site.profile, site.reason
    quick = options.quick
    rounds = options.rounds or (3 if quick else 5)
    previous = load_previous(options.compare)  # a bad --compare fails before anything runs
    if options.plant_fault:
        fault_doc(options.plant_fault)  # an unknown name fails now, naming the choices
    say(f"profile {profile.name}: {profile.description} ({profile_reason})")

    say("characterising the memory: load latency, flush+fence, copy bandwidth")
    character = characterize(profile, quick=quick, site=site)

    say(f"log runs: Order 0 and 2 x per-scanner and shared-mutex, {rounds} interleaved rounds")
    runs, region_info = run_log_rounds(
        profile, quick=quick, rounds=rounds,
        on_run=lambda label, r, res: say(
            f"  {label} round {r}: {res.throughput_mib_s:,.0f} MiB/s, "
            f"{sum(c.ok for c in res.checks)}/{len(res.checks)} checks passed"),
        site=site)
    chosen = {label: representative(results) for label, results in runs.items()}

    say("same-run ratio benchmarks and the seed's ablations")
    results = benchmarks.run_suite(profile, quick=quick, progress=lambda name: say(f"  measuring {name}"),
                                   site=site)
    target_list = benchmarks.target_checks(profile, results)

    n_model = 4 if quick else 12
    say(f"flush/fence: {n_model} runs through the non-coherent model"
        + (f", planted fault {options.plant_fault}" if options.plant_fault else ""))
    model = model_runs(n_model, options.plant_fault)
    say("fault catalogue" + (" (quick subset)" if quick else " (every planted defect)"))
    catalogue = run_catalogue(quick=quick, clean_runs=0, seeds=(1, 2, 3))
    say("crash injection: " + ("a publisher" if quick else "a publisher, a scanner and a subscriber")
        + " killed mid-run")
    crashes = crash_mod.run_scenarios(quick)
    for o in crashes:
        say(f"  {o.detail}")

    mutation, mutation_raw = mutation_parts(options, catalogue, say)

    # The summary.
    ordering = ordering_checks([(label, str(i + 1), r) for label, rs in runs.items()
                                for i, r in enumerate(rs)])
    faults, fault_check = fault_sections(catalogue)
    checks = ordering + flush_fence_checks(model) + [fault_check] + crash_mod.crash_checks(crashes)
    calibration = calibration_items(character)
    targets = summary_targets(target_list)
    ablations = summary_ablations(results)
    copy_chart = characterization_ablation(character)
    if copy_chart is not None:
        ablations.append(copy_chart)
    device = site.device_section(region_info)
    where = device["path"] or f"{device['backend']} memory"
    verdict = verdict_section(checks, target_list, calibration, faults, where, strict=options.strict)
    summary: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "meta": meta_section(options.command or "cxl-harness run", started),
        "verdict": verdict,
        "device": device,
        "profile": {**profile_section(profile), **emulation_section(character)},
        "calibration": calibration,
        "checks": [c.to_dict() for c in checks],
        "runs": [run_entry(label, chosen[label]) for label in runs],
        "ablations": ablations,
        "targets": targets,
        "faults": faults,
    }
    if mutation is not None:
        summary["mutation"] = mutation

    # Raw files next to the summary.
    suite = benchmarks.pyperf_suite(results, {"profile": profile.name, **benchmarks.run_metadata()})
    for bench in log_run_pyperf(runs, {"profile": profile.name}):
        suite.add_benchmark(bench)
    raw: dict[str, tuple[str, Any]] = {
        "pyperf": (PYPERF_FILENAME, pyperf_text(suite)),
        "benchmark": (BENCHMARK_FILENAME, pytest_benchmark_json(
            benchmark_items(results) + log_run_items(runs), started=started)),
        "benchmarks": (BENCHMARKS_FILENAME, benchmarks.summary(profile, results, target_list)),
        "characterisation": (CHARACTERIZATION_FILENAME, character.to_dict()),
        "log runs": (RUNS_FILENAME, {label: [r.to_dict() for r in rs] for label, rs in runs.items()}),
        "fault catalogue": (FAULTS_FILENAME, {**catalogue.to_dict(),
                                              "model_runs": [{"label": lb, **run.to_dict()} for lb, run in model]}),
        "crash injection": (CRASHES_FILENAME, [o.to_dict() for o in crashes]),
    }
    if mutation_raw is not None:
        raw["mutation"] = (MUTATION_FILENAME, mutation_raw)
    summary["meta"]["finished"] = _now()
    summary["meta"]["quick"] = quick
    summary["meta"]["warnings"] = benchmarks.noise_warnings(summary["meta"]["machine_state"], results)
    run_dir, report, latest = write_run_dir(summary, options.out, run_name=options.run_name, raw=raw,
                                            previous=previous)
    written = json.loads((run_dir / SUMMARY_FILENAME).read_text(encoding="utf-8"))
    say("report written")
    print(f"report: {report}", file=out)
    print(f"latest: {latest} -> {run_dir.name}", file=out)
    word = "PASS" if verdict["ok"] else "FAIL"
    print(f"{word}: {verdict['summary']}", file=out)
    why = {t.id: f": {t.verdict.value} {t.reason} (from {t.source}; see docs/verdicts.md)"
           for t in target_list}
    for name in verdict["failed"][:20]:
        print(f"  failed: {name}{why.get(name, '')}", file=out)
    return MainJobResult(ok=bool(verdict["ok"]), run_dir=run_dir, report=report, latest=latest,
                         summary=written, runs=runs, representative=chosen, failed=list(verdict["failed"]))
