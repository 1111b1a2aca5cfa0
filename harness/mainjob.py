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
6. compares with the profile's targets and writes ``<out>/<timestamp>/`` holding
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

import datetime as _dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import harness
from harness import benchmarks
from harness import crash as crash_mod
from harness.characterize import Characterization, characterize
from harness.checked import CheckedRun, ModelConfig, fault_doc, rule_names, run_checked, small_config
from harness.discovery import Choice, discover
from harness.errors import HarnessError
from harness.faults import CLEAN_VARIANTS, CatalogueResult, detections, run_catalogue
from harness.log import LogConfig, LogResult, run_log
from harness.machine import _now, meta_section
from harness.stats import Samples
from harness.native import flush_instruction
from harness.profiles import Profile, load_profile
from harness.report.render import render_report
from harness.report.summary import (
    REPORT_FILENAME,
    SCHEMA_ID,
    SUMMARY_FILENAME,
    Summary,
    load_summary,
    write_summary,
)
from harness.runner import choose_backend, open_region

ORDERS: tuple[int, ...] = (0, 2)
VARIANTS: tuple[str, ...] = ("per-scanner", "shared-mutex")
LATEST = "latest"
PYPERF_FILENAME = "pyperf.json"
BENCHMARK_FILENAME = "benchmark.json"
RUNS_FILENAME = "log-runs.json"
CHARACTERIZATION_FILENAME = "characterization.json"
BENCHMARKS_FILENAME = "benchmarks.json"
FAULTS_FILENAME = "faults.json"
CRASHES_FILENAME = "crashes.json"
MAX_COUNTEREXAMPLES = 20
# Profiles ``--profile auto`` picks for what discovery finds.
AUTO_PROFILES: dict[str, str] = {"devdax": "cxl-devdax", "numa": "cxl-numa", "emulated": "ci", "file": "ci"}


# ------------------------------------------------------------------------------------------
# Options and result


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


# ------------------------------------------------------------------------------------------
# Small helpers


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


def device_section(profile: Profile, device: str | None, region_info: dict[str, Any] | None,
                   sysfs_root: str = "/", profile_reason: str | None = None) -> dict[str, Any]:
    """Back-end, identity and the discovery reasoning (what was probed, what was chosen)."""
    disc = discover(sysfs_root, explicit_device=device)
    choice: Choice = choose_backend(profile, device, sysfs_root)
    reasons = [_sentence(profile_reason)] if profile_reason else []
    reasons.append(_sentence(choice.reason))
    if choice.reason != disc.choice.reason:
        reasons.append(f"Discovery on this machine (sysfs root {sysfs_root}): {_sentence(disc.choice.reason)}")
    info = region_info or {}
    return {
        "backend": str(info.get("backend") or choice.backend),
        "path": info.get("path") or choice.device,
        "size_bytes": int(info["size"]) if info.get("size") is not None else None,
        "numa_node": info.get("numa_node") if info.get("numa_node") is not None else choice.node,
        "discovery_reason": " ".join(reasons),
        "discovery": _jsonable(disc.to_dict()),
    }


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def profile_section(profile: Profile) -> dict[str, Any]:
    coherence = {"coherent": "coherent (hardware)", "noncoherent-model": "non-coherent (software model)",
                 "noncoherent-hw": "non-coherent hardware"}.get(profile.coherence, profile.coherence)
    return {"name": profile.name, "description": profile.description, "coherence": coherence,
            "injected": profile.device_model.to_dict() if profile.device_model.any else {}}


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy (numpy scalars and tuples become plain values; NaN/inf become None)."""
    return json.loads(json.dumps(value, default=_json_default, allow_nan=True),
                      parse_constant=lambda _c: None)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ------------------------------------------------------------------------------------------
# Log runs -> summary runs and ordering checks


def run_label(result: LogResult) -> str:
    return f"order{result.order}/{result.variant}"


def run_entry(label: str, result: LogResult) -> dict[str, Any]:
    """One summary ``runs`` item with exactly the figures of ``result``."""
    entry: dict[str, Any] = {
        "label": label,
        "order": result.order,
        "variant": result.variant,
        "brokers": result.brokers,
        "messages_published": result.messages_published,
        # Every subscriber must get everything; the report shows the worst one.
        "messages_delivered": min(result.messages_delivered) if result.messages_delivered
        else result.messages_acked,
        "throughput_mib_s": result.throughput_mib_s,
        "messages_per_s": result.messages_per_s,
        "batches_per_s": result.batches_per_s,
        "elapsed_s": result.elapsed_s,
        "region": _jsonable({**result.region, "msg_size": result.config.get("msg_size"),
                             "batch_bytes": result.config.get("batch_bytes"),
                             "msgs_per_batch": result.config.get("msgs_per_batch"),
                             "subscribers": result.config.get("subscribers"), "ack": result.ack}),
        "placement": _jsonable(result.placement),
    }
    if result.latency.samples:  # Order 0 with ACK 0 records none
        entry["latency_ns"] = {"p50": result.latency.p50_ns, "p99": result.latency.p99_ns,
                               "p999": result.latency.p999_ns}
        entry["latency_cdf"] = [[float(x), min(1.0, max(0.0, float(y)))] for x, y in result.latency.cdf]
    return entry


def _counterexample(label: str, where: str | None, example: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = {"run": label}
    if where:
        head["round"] = where
    return {**head, **_jsonable(example)}


def ordering_checks(results: Sequence[tuple[str, str | None, LogResult]],
                    prefix: str = "order.") -> list[dict[str, Any]]:
    """One summary check per invariant over every run: passes only if it passed in each run;
    a failure names the runs and carries their counterexamples (tagged with the run)."""
    by_id: dict[str, list[tuple[str, str | None, Any]]] = {}
    for label, where, result in results:
        for check in result.checks:
            by_id.setdefault(check.id, []).append((label, where, check))
    out = []
    for cid, items in by_id.items():
        failing = [(label, where, c) for label, where, c in items if not c.ok]
        first = items[0][2]
        labels = sorted({label for label, _, _ in items})
        if not failing:
            detail = (f"passed in all {len(items)} run(s) ({', '.join(labels)}); "
                      f"last: {items[-1][2].detail}")
            examples: list[dict[str, Any]] = []
        else:
            shown = "; ".join(f"{label}{f' round {where}' if where else ''}: {c.detail}"
                              for label, where, c in failing[:3])
            more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
            detail = f"FAILED in {len(failing)} of {len(items)} run(s): {shown}{more}"
            examples = []
            for label, where, c in failing:
                source = c.counterexamples or [{"detail": c.detail}]
                examples.extend(_counterexample(label, where, ex) for ex in source)
            examples = examples[:MAX_COUNTEREXAMPLES]
        out.append({"id": f"{prefix}{cid}", "name": first.name, "group": "ordering",
                    "ok": not failing, "detail": detail, "counterexamples": examples})
    return out


def log_config(profile: Profile, *, order: int, variant: str, quick: bool,
               subscribers: int = 2, seed: int = 1) -> LogConfig:
    """The profile's workload; ``quick`` caps the payload at 64 MiB (a run of about 0.1 s)."""
    w = profile.workload
    total = w.total_mib << 20
    if quick:
        total = min(total, 64 << 20)
    return LogConfig(order=order, variant=variant, brokers=w.brokers, subscribers=subscribers,
                     msg_size=w.msg_size, batch_bytes=w.batch_bytes, total_bytes=total, ack=1,
                     epoch_us=w.epoch_us, seed=seed)


def run_log_rounds(profile: Profile, *, quick: bool, rounds: int, device: str | None = None,
                   allow_destructive: bool = False, sysfs_root: str = "/",
                   on_run: Callable[[str, int, LogResult], None] | None = None,
                   ) -> tuple[dict[str, list[LogResult]], dict[str, Any]]:
    """Order 0 and 2, both variants, interleaved over ``rounds`` rounds on one region."""
    configs = {f"order{o}/{v}": log_config(profile, order=o, variant=v, quick=quick)
               for o in ORDERS for v in VARIANTS}
    biggest = max(configs.values(), key=lambda c: c.total_bytes)
    out: dict[str, list[LogResult]] = {label: [] for label in configs}
    with open_region(profile, biggest, device=device, allow_destructive=allow_destructive,
                     sysfs_root=sysfs_root) as region:
        try:
            for r in range(rounds):
                for label, cfg in configs.items():
                    result = run_log(replace(cfg, seed=cfg.seed + r), region=region)
                    out[label].append(result)
                    if on_run is not None:
                        on_run(label, r + 1, result)
        finally:
            info = region.info().to_dict()
    return out, _jsonable(info)


def representative(results: list[LogResult]) -> LogResult:
    """The run of median throughput (a failing run wins, so the report shows it)."""
    failing = [r for r in results if not r.ok]
    if failing:
        return failing[0]
    ordered = sorted(results, key=lambda r: r.throughput_mib_s)
    return ordered[(len(ordered) - 1) // 2]


# ------------------------------------------------------------------------------------------
# Flush/fence: fault-free runs through the non-coherent model, and the fault catalogue


def model_runs(count: int, plant_fault: str | None = None, first_seed: int = 1000) -> list[tuple[str, CheckedRun]]:
    """Runs on the checked build through the non-coherent model, cycling through both
    variants and both order levels (:data:`harness.faults.CLEAN_VARIANTS`)."""
    out = []
    for i in range(count):
        variant, order, nt = CLEAN_VARIANTS[i % len(CLEAN_VARIANTS)]
        seed = first_seed + i
        cfg = small_config(order=order, variant=variant, seed=seed, nt_copy=nt)
        label = f"model order{order}/{variant}{' nt-copy' if nt else ''} seed {seed}"
        out.append((label, run_checked(cfg, fault=plant_fault, model=ModelConfig())))
    return out


def flush_fence_checks(runs: Sequence[tuple[str, CheckedRun]]) -> list[dict[str, Any]]:
    """One check per trace rule (fails on any error-level finding; warnings are listed as
    performance notes), and one that the runs were clean (rules and ordering invariants;
    a failed invariant's first counterexample is kept)."""
    checks = []
    for rule in rule_names():
        found = [(label, f) for label, run in runs for f in run.findings if f.rule == rule]
        errors = [(label, f) for label, f in found if f.severity == "error"]
        warnings = [(label, f) for label, f in found if f.severity != "error"]
        doc = found[0][1].doc if found else _rule_doc(rule)
        if errors:
            detail = (f"{sum(f.count for _, f in errors)} violation(s) in {len({lb for lb, _ in errors})} of "
                      f"{len(runs)} model run(s); first: {errors[0][1].describe()}")
        elif warnings:
            detail = (f"no error in {len(runs)} model run(s); {sum(f.count for _, f in warnings)} "
                      f"performance warning(s), e.g. {warnings[0][1].describe()}")
        else:
            detail = f"no finding in {len(runs)} model run(s)"
        examples: list[dict[str, Any]] = [{"run": label, "rule": f.rule, "severity": f.severity, "agent": f.agent,
                     "other_agent": f.other_agent, "line": f"0x{f.line_offset:x}", "count": f.count,
                     "code": f.location, "first_event": f.first_event}
                    for label, f in (errors or warnings)[:MAX_COUNTEREXAMPLES]]
        checks.append({"id": f"ff.{rule}", "name": f"{rule}: {doc}", "group": "flush-fence",
                       "ok": not errors, "detail": detail, "counterexamples": examples})
    events = sum(run.events for _, run in runs)
    stale = sum(run.model.get("stale_reads", 0) for _, run in runs)
    unclean = [(label, run) for label, run in runs if not run.clean]
    wrong: list[dict[str, Any]] = []
    for label, run in unclean:
        for c in run.result.failed():
            first = c.counterexamples[0] if c.counterexamples else {}
            wrong.append({"run": label, "check": c.id, "detail": c.detail, **_jsonable(first)})
        if not run.result.failed():
            wrong.append({"run": label, "check": "(trace rules only)", "detail": detections(run)[1]})
    detail = (f"{len(runs)} run(s) over both variants and order levels, {events:,} traced memory events, "
              f"{stale} stale read(s) served by the model; ")
    detail += "all clean (no error-level rule, every invariant held)" if not unclean else (
        "NOT clean: " + "; ".join(f"{label}: {', '.join(detections(run)[0])}" for label, run in unclean[:3]))
    checks.append({"id": "ff.model-clean",
                   "name": "Runs through the non-coherent model: no rule broken, every ordering invariant holds",
                   "group": "flush-fence", "ok": not unclean, "detail": detail,
                   "counterexamples": wrong[:MAX_COUNTEREXAMPLES]})
    return checks


def _rule_doc(rule: str) -> str:
    from harness.native import load

    native = load(True)
    names = rule_names()
    return str(native.ffi.string(native.lib.cxl_chk_rule_doc(names.index(rule) + 1)).decode())


def fault_sections(cat: CatalogueResult) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The summary's ``faults`` list and the ``faults.all-caught`` check."""
    faults = [{"name": o.name, "caught": o.caught, "by": ", ".join(o.by) or None,
               "diagnostic": f"{o.description}. {o.diagnostic}. Effect on the run: {o.model_effect} "
                             f"(seeds tried: {', '.join(map(str, o.seeds))})"}
              for o in cat.outcomes]
    missed = [o for o in cat.outcomes if not o.caught]
    check = {
        "id": "faults.all-caught", "name": "Every planted flush/fence/protocol defect is caught",
        "group": "faults", "ok": not missed,
        "detail": (f"{len(cat.outcomes) - len(missed)}/{len(cat.outcomes)} planted faults caught"
                   + (f"; missed: {', '.join(o.name for o in missed)}" if missed else "")),
        "counterexamples": [{"fault": o.name, "description": o.description, "seeds": o.seeds,
                             "effect": o.model_effect} for o in missed],
    }
    return faults, check


# ------------------------------------------------------------------------------------------
# Characterisation -> calibration


def calibration_items(characterization: Characterization) -> list[dict[str, Any]]:
    """Summary ``calibration`` items from a :class:`harness.characterize.Characterization`.
    With an injection baseline the figure compared (and shown) is the cost added on top of
    DRAM, so min/max move with it."""
    items = []
    for f in characterization.figures:
        shift = f.median - f.compared
        name = f.label + (" (added over DRAM)" if f.baseline else "")
        item: dict[str, Any] = {
            "name": name, "unit": f.unit,
            "measured": {"median": f.compared, "min": f.min - shift, "max": f.max - shift, "runs": f.runs},
            "expected": ({"value": f.expected, "tolerance_pct": f.tolerance_pct}
                         if f.expected is not None else None),
            "status": f.status,
        }
        items.append(item)
    return items


def characterization_ablation(characterization: Characterization) -> dict[str, Any] | None:
    """Copy bandwidth by chunk size, regular vs non-temporal (a chart even when the profile
    states no expectation)."""
    series = []
    for nt, label in ((False, "regular copy"), (True, "non-temporal copy")):
        figs = sorted((f for f in characterization.figures
                       if f.unit == "GB/s" and f.params.get("nt") is nt and "chunk" in f.params),
                      key=lambda f: f.params["chunk"])
        if figs:
            series.append({"label": label, "x": [int(f.params["chunk"]) for f in figs],
                           "y": [f.median for f in figs],
                           "interval": [list(Samples.of(f.samples).interval) for f in figs]})
    if not series:
        return None
    return {"name": "Characterisation: copy bandwidth by chunk size",
            "x_label": "chunk (bytes)", "unit": "GB/s", "series": series}


# ------------------------------------------------------------------------------------------
# Targets and ablations from the same-run benchmarks (harness.benchmarks)


def summary_targets(checks: Sequence[benchmarks.TargetCheck]) -> list[dict[str, Any]]:
    """Summary ``targets``: each judged target as it was computed (verdict, interval, n)."""
    out = []
    for c in checks:
        d = c.to_dict()
        item = {k: d[k] for k in ("name", "kind", "verdict", "reason", "measured", "interval",
                                  "n", "bound", "comparison", "ok", "unit", "description")}
        if c.samples is not None:
            item["samples"] = list(c.samples.values)
        out.append(item)
    return out


def _series(label: str, x: list[float | str], samples: Sequence[Sequence[float]]) -> dict[str, Any]:
    stats = [Samples.of(s) for s in samples]
    return {"label": label, "x": x, "y": [s.median for s in stats],
            "interval": [list(s.interval) for s in stats]}


def summary_ablations(results: Mapping[str, benchmarks.Result]) -> list[dict[str, Any]]:
    """The seed's ablations and the same-run comparisons as report charts."""
    out: list[dict[str, Any]] = []
    mutex = sorted((r for k, r in results.items() if k.startswith("per_scanner_vs_mutex_b")
                    and isinstance(r, benchmarks.Ratio)), key=lambda r: int(r.name.rsplit("_b", 1)[1]))
    if mutex:
        xs: list[float | str] = [int(r.name.rsplit("_b", 1)[1]) for r in mutex]
        out.append({"name": "shared mutex vs per-scanner buffers (Order 2, publish-only)",
                    "x_label": "brokers", "unit": "MiB/s",
                    "series": [_series("shared mutex (before)", xs, [r.b for r in mutex]),
                               _series("per-scanner buffers (after)", xs, [r.a for r in mutex])]})
    o = results.get("order2_vs_order0")
    nt = results.get("order2_vs_nt_copy")
    if isinstance(o, benchmarks.Ratio):
        cats: list[float | str] = ["Order 0", "Order 2"]
        samples = [o.b, o.a]
        if isinstance(nt, benchmarks.Ratio):
            cats.append(f"raw NT copy ({nt.params.get('chunk', '?')} B chunks)")
            samples.append(nt.b)
        out.append({"name": "Publish-only: Order 0, Order 2, raw NT copy (same region)",
                    "x_label": "", "unit": "MiB/s",
                    "series": [_series("median of interleaved runs", cats, samples)]})
    h = results.get("header_fence_ablation")
    fa = results.get("fence_amortisation")
    if isinstance(h, benchmarks.Ratio):
        out.append({"name": "flush amortisation: fences per PBR header (Order 2 log)",
                    "x_label": "", "unit": "batches/s",
                    "series": [_series("fence after each line", ["log, Order 2"], [h.b]),
                               _series("one fence for both lines", ["log, Order 2"], [h.a])]})
    if isinstance(fa, benchmarks.Ratio):
        out.append({"name": "flush amortisation: store + flush per line (device micro-benchmark)",
                    "x_label": "", "unit": "ns per line",
                    "series": [_series("one fence per line", ["store + flush"], [fa.a]),
                               _series("one fence per two lines", ["store + flush"], [fa.b])]})
    res = results.get("reservation_per_epoch_vs_per_batch")
    if isinstance(res, benchmarks.Ratio):
        out.append({"name": "sequence reservation: per epoch vs per batch (sequencer drain)",
                    "x_label": "", "unit": "batches/s",
                    "series": [_series("one reservation per batch", ["drain"], [res.b]),
                               _series("one reservation per epoch", ["drain"], [res.a])]})
    sus = results.get("sustained_vs_ceiling")
    drain = results.get("drain_batches_per_s")
    if isinstance(sus, benchmarks.Ratio):
        cats2: list[float | str] = ["one core publishing (ceiling)", "sustained, publishers + sequencer"]
        samples2 = [sus.b, sus.a]
        if isinstance(drain, benchmarks.Measure):
            cats2.append("sequencer-only drain")
            samples2.append(drain.samples)
        out.append({"name": "Sequencer capacity: 1 KiB batches of 10 messages", "x_label": "",
                    "unit": "batches/s", "series": [_series("median", cats2, samples2)]})
    return out


def benchmark_items(results: Mapping[str, benchmarks.Result]) -> list[dict[str, Any]]:
    """pytest-benchmark items (seconds per unit of work) for each side of each comparison."""
    out = []
    sides: list[tuple[str | None, Sequence[float]]]
    for key, r in results.items():
        convert = benchmarks.SECONDS_PER_UNIT.get(r.unit)
        if convert is None:
            continue
        sides = ([(r.a_label, r.a), (r.b_label, r.b)] if isinstance(r, benchmarks.Ratio)
                 else [(None, r.samples)])
        for label, samples in sides:
            data = [convert(v) for v in samples if v > 0]
            if data:
                out.append({"name": f"{key}[{label}]" if label else key, "group": key, "data": data,
                            "extra_info": {"unit": r.unit, "samples": list(samples),
                                           "per": r.unit.split("/")[0] if "/" in r.unit else r.unit,
                                           "description": r.description}})
    return out


# ------------------------------------------------------------------------------------------
# Standard benchmark formats


def log_run_pyperf(runs: Mapping[str, list[LogResult]], metadata: Mapping[str, Any]) -> list[Any]:
    """pyperf benchmarks of the main log runs: seconds per run of the fixed workload, one
    pyperf run per round."""
    import pyperf

    out = []
    meta = {k: str(v) for k, v in metadata.items()}
    for label, results in runs.items():
        if results:
            name = f"log_{label.replace('/', '_').replace('-', '_')}"
            out.append(pyperf.Benchmark([
                pyperf.Run([r.elapsed_s], collect_metadata=False,
                           metadata={"name": name, "unit": "second", **meta,
                                     "description": f"{label}: one run of {r.payload_bytes} payload bytes"})
                for r in results if r.elapsed_s > 0]))
    return out


def pyperf_text(suite: Any) -> str:
    """A pyperf BenchmarkSuite as pyperf's own JSON text."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.json"
        suite.dump(str(path), replace=True)
        return path.read_text(encoding="utf-8")


def pytest_benchmark_json(items: Iterable[dict[str, Any]], *, started: str) -> dict[str, Any]:
    """pytest-benchmark's JSON document (what ``--benchmark-json`` writes) for ``items``
    (``name``, ``group``, ``data``: seconds per round, ``extra_info``), with its machine and
    commit info, so ``pytest-benchmark compare`` reads it."""
    from pytest_benchmark import __version__ as pb_version
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.stats import Stats
    from pytest_benchmark.utils import get_commit_info

    # pytest-benchmark has no type hints; its helpers are called as its own plugin does.
    stats_type: Any = Stats
    commit_info: Any = get_commit_info
    machine_info: Any = pytest_benchmark_generate_machine_info

    out = []
    for bench in items:
        stats = stats_type()
        for value in bench["data"]:
            stats.update(float(value))
        as_dict: dict[str, Any] = dict(stats.as_dict())
        as_dict["data"] = [float(v) for v in bench["data"]]
        as_dict["iterations"] = 1
        out.append({
            "group": bench.get("group"), "name": bench["name"],
            "fullname": f"cxl-harness run::{bench['name']}", "params": None, "param": None,
            "extra_info": _jsonable(bench.get("extra_info", {})),
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(bench["data"]),
                        "max_time": 0.0, "min_time": 0.0, "warmup": False},
            "stats": as_dict,
        })
    try:
        commit = commit_info("cxl-harness")
    except Exception as exc:  # noqa: BLE001 - reported in the file, as pytest-benchmark does
        commit = {"error": f"{type(exc).__name__}: {exc}"}
    return {"machine_info": _jsonable(machine_info()),
            "commit_info": _jsonable(commit), "benchmarks": out,
            "datetime": _dt.datetime.fromisoformat(started).astimezone(_dt.timezone.utc).isoformat(),
            "version": pb_version}


def log_run_items(runs: Mapping[str, list[LogResult]]) -> list[dict[str, Any]]:
    """The main runs as pytest-benchmark items: seconds per run of the fixed workload."""
    out = []
    for label, results in runs.items():
        if results:
            r0 = results[0]
            out.append({"name": f"log[{label}]", "group": "log runs (profile workload)",
                        "data": [r.elapsed_s for r in results],
                        "extra_info": {"throughput_mib_s": [r.throughput_mib_s for r in results],
                                       "payload_bytes": r0.payload_bytes, "brokers": r0.brokers,
                                       "variant": r0.variant, "order": r0.order}})
    return out


# ------------------------------------------------------------------------------------------
# The verdict and the run directory


def target_fails(target: Mapping[str, Any], strict: bool) -> bool:
    """MISSED fails a run; INCONCLUSIVE fails only a ``--strict`` one."""
    verdict = target.get("verdict", "MET" if target.get("ok") else "MISSED")
    return bool(verdict == "MISSED" or (strict and verdict == "INCONCLUSIVE"))


def verdict_section(checks: list[dict[str, Any]], targets: list[dict[str, Any]],
                    calibration: list[dict[str, Any]], faults: list[dict[str, Any]],
                    where: str, *, strict: bool = False) -> dict[str, Any]:
    """PASS when every check passed, no target was MISSED (nor INCONCLUSIVE when ``strict``),
    every calibration item is within tolerance and every planted fault was caught."""
    failed_checks = [c["id"] for c in checks if not c["ok"]]
    failed_targets = [t["name"] for t in targets if target_fails(t, strict)]
    inconclusive = [t["name"] for t in targets if t.get("verdict") == "INCONCLUSIVE"]
    failed_cal = [c["name"] for c in calibration if c["status"] == "fail"]
    missed = [f["name"] for f in faults if not f["caught"]]
    failed = failed_checks + failed_targets + failed_cal + missed
    met = sum(t.get("verdict") == "MET" for t in targets)
    note = (f" ({len(inconclusive)} inconclusive{', failing under --strict' if strict else ''})"
            if inconclusive else "")
    if not failed:
        summary = (f"all {len(checks)} checks passed, {met} of {len(targets)} target(s) met{note}, "
                   f"{sum(c['status'] == 'pass' for c in calibration)} calibration item(s) within tolerance, "
                   f"{len(faults)} planted fault(s) caught on {where}")
    else:
        parts = []
        if failed_checks:
            parts.append(f"{len(failed_checks)} of {len(checks)} checks failed")
        if failed_targets:
            parts.append(f"{len(failed_targets)} of {len(targets)} target(s) "
                         f"{'missed or inconclusive (--strict)' if strict else 'missed'}")
        elif inconclusive:
            parts.append(f"{len(inconclusive)} target(s) inconclusive")
        if failed_cal:
            parts.append(f"{len(failed_cal)} calibration item(s) out of tolerance")
        if missed:
            parts.append(f"{len(missed)} planted fault(s) not caught")
        summary = ", ".join(parts) + f" on {where}"
    return {"ok": not failed, "failed": failed, "summary": summary, "inconclusive": inconclusive,
            "strict": strict}


def _unique_dir(root: Path, name: str) -> Path:
    path, n = root / name, 2
    while path.exists():
        path, n = root / f"{name}-{n}", n + 1
    return path


def point_latest(out_root: Path, run_dir: Path) -> Path:
    """``out_root/latest`` -> ``run_dir`` (a relative symlink, replaced atomically; a text file
    holding the directory name where symlinks cannot be made)."""
    link = out_root / LATEST
    tmp = out_root / f".{LATEST}.{os.getpid()}"
    target = os.path.relpath(run_dir, out_root)
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp, target_is_directory=True)
        if link.is_dir() and not link.is_symlink():
            raise OSError(f"{link} is a directory")
        os.replace(tmp, link)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        if link.is_symlink():
            link.unlink()
        if link.is_dir():
            raise HarnessError(f"{link} is a directory, cannot point it at the newest run",
                               f"remove or rename {link}") from None
        link.write_text(target + "\n", encoding="utf-8")
    return link


def resolve_latest(path: Path) -> Path:
    """A run directory given as itself, or as ``latest`` (symlink or pointer file)."""
    if path.is_file() and path.name == LATEST:
        return path.parent / path.read_text(encoding="utf-8").strip()
    return path


def write_run_dir(summary: dict[str, Any], out_root: Path, *, run_name: str | None = None,
                  raw: dict[str, tuple[str, Any]] | None = None, previous: Summary | None = None,
                  ) -> tuple[Path, Path, Path]:
    """Write ``out_root/<run_name>/`` with the raw files (role -> (file name, JSON value or
    text)), ``summary.json`` and ``index.html``; point ``out_root/latest`` at it. Returns
    (run directory, report path, latest pointer)."""
    out_root.mkdir(parents=True, exist_ok=True)
    name = run_name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = _unique_dir(out_root, name)
    run_dir.mkdir(parents=True)
    files = {"summary": SUMMARY_FILENAME}
    for role, (filename, value) in (raw or {}).items():
        text = value if isinstance(value, str) else json.dumps(_jsonable(value), indent=2) + "\n"
        (run_dir / filename).write_text(text, encoding="utf-8")
        files[role] = filename
    summary = {**summary, "files": files}
    write_summary(summary, run_dir / SUMMARY_FILENAME)
    report = render_report(summary, run_dir, dict(previous) if previous is not None else None)
    latest = point_latest(out_root, run_dir)
    return run_dir, report, latest


def load_previous(path: Path | None) -> Summary | None:
    if path is None:
        return None
    path = resolve_latest(path)
    summary_path = path / SUMMARY_FILENAME if path.is_dir() else path
    return load_summary(summary_path)


# ------------------------------------------------------------------------------------------
# The main job


def run_main_job(options: MainJobOptions, stream: TextIO | None = None) -> MainJobResult:
    """Run everything and write the report; see the module docstring."""
    out = stream if stream is not None else sys.stdout
    started = _now()
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {text}", file=out, flush=True)

    profile, profile_reason = resolve_profile(options.profile, options.device, options.sysfs_root)
    quick = options.quick
    rounds = options.rounds or (3 if quick else 5)
    previous = load_previous(options.compare)  # a bad --compare fails before anything runs
    if options.plant_fault:
        fault_doc(options.plant_fault)  # an unknown name fails now, naming the choices
    say(f"profile {profile.name}: {profile.description} ({profile_reason})")
    device_arg, consent = options.device, options.allow_destructive

    say("characterising the memory: load latency, flush+fence, copy bandwidth")
    character = characterize(profile, quick=quick, sysfs_root=options.sysfs_root, device=device_arg,
                             allow_destructive=consent)

    say(f"log runs: Order 0 and 2 x per-scanner and shared-mutex, {rounds} interleaved rounds")
    runs, region_info = run_log_rounds(
        profile, quick=quick, rounds=rounds, sysfs_root=options.sysfs_root,
        on_run=lambda label, r, res: say(
            f"  {label} round {r}: {res.throughput_mib_s:,.0f} MiB/s, "
            f"{sum(c.ok for c in res.checks)}/{len(res.checks)} checks passed"),
        device=device_arg, allow_destructive=consent)
    chosen = {label: representative(results) for label, results in runs.items()}

    say("same-run ratio benchmarks and the seed's ablations")
    results = benchmarks.run_suite(profile, quick=quick, device=device_arg, allow_destructive=consent,
                                   progress=lambda name: say(f"  measuring {name}"))
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
    device = device_section(profile, options.device, region_info, options.sysfs_root, profile_reason)
    where = device["path"] or f"{device['backend']} memory"
    verdict = verdict_section(checks, targets, calibration, faults, where, strict=options.strict)
    summary: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "meta": meta_section(options.command or "cxl-harness run", started),
        "verdict": verdict,
        "device": device,
        "profile": profile_section(profile),
        "calibration": calibration,
        "checks": checks,
        "runs": [run_entry(label, chosen[label]) for label in runs],
        "ablations": ablations,
        "targets": targets,
        "faults": faults,
    }

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
    for name in verdict["failed"][:20]:
        print(f"  failed: {name}", file=out)
    return MainJobResult(ok=bool(verdict["ok"]), run_dir=run_dir, report=report, latest=latest,
                         summary=written, runs=runs, representative=chosen, failed=list(verdict["failed"]))
