"""Summary sections (``cxl-harness-summary/2``) from results: the device, the profile, the log
runs, the checks (ordering, flush/fence, faults), calibration, targets, ablations and the
verdict. Shared by the main job, the pytest plugin's ``--cxl-report`` and ``run --hosts``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness import benchmarks
from harness.characterize import Characterization
from harness.checked import CheckedRun, rule_doc, rule_names
from harness.discovery import Discovery
from harness.faults import CatalogueResult, detections
from harness.log import LogResult
from harness.profiles import Profile
from harness.report.rundir import jsonable
from harness.results import Check, TargetCheck
from harness.site import Site
from harness.stats import Samples, Verdict

MAX_COUNTEREXAMPLES = 20


def device_section(profile: Profile, device: str | None, region_info: dict[str, Any] | None,
                   sysfs_root: str = "/", profile_reason: str | None = None, *,
                   site: Site | None = None, discovery: Discovery | None = None) -> dict[str, Any]:
    """Back-end, identity and the discovery reasoning (what was probed, what was chosen), from
    the run's ``site`` (or one made for ``profile``, reusing ``discovery`` when given)."""
    if site is None:
        site = Site(profile, profile_reason or "", device, sysfs_root=sysfs_root, found=discovery)
    return site.device_section(region_info)


def profile_section(profile: Profile) -> dict[str, Any]:
    coherence = {"coherent": "coherent (hardware)", "noncoherent-model": "non-coherent (software model)",
                 "noncoherent-hw": "non-coherent hardware"}.get(profile.coherence, profile.coherence)
    return {"name": profile.name, "description": profile.description, "coherence": coherence,
            "injected": profile.device_model.to_dict() if profile.device_model.any else {}}


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
        "region": jsonable({**result.region, "msg_size": result.config.get("msg_size"),
                             "batch_bytes": result.config.get("batch_bytes"),
                             "msgs_per_batch": result.config.get("msgs_per_batch"),
                             "subscribers": result.config.get("subscribers"), "ack": result.ack}),
        "placement": jsonable(result.placement),
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
    return {**head, **jsonable(example)}


def ordering_checks(results: Sequence[tuple[str, str | None, LogResult]],
                    prefix: str = "order.") -> list[Check]:
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
        out.append(Check(f"{prefix}{cid}", first.name, not failing, detail, examples, group="ordering"))
    return out


def flush_fence_checks(runs: Sequence[tuple[str, CheckedRun]]) -> list[Check]:
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
        checks.append(Check(f"ff.{rule}", f"{rule}: {doc}", not errors, detail, examples, group="flush-fence"))
    events = sum(run.events for _, run in runs)
    stale = sum(run.model.get("stale_reads", 0) for _, run in runs)
    unclean = [(label, run) for label, run in runs if not run.clean]
    wrong: list[dict[str, Any]] = []
    for label, run in unclean:
        for c in run.result.failed():
            first = c.counterexamples[0] if c.counterexamples else {}
            wrong.append({"run": label, "check": c.id, "detail": c.detail, **jsonable(first)})
        if not run.result.failed():
            wrong.append({"run": label, "check": "(trace rules only)", "detail": detections(run)[1]})
    detail = (f"{len(runs)} run(s) over both variants and order levels, {events:,} traced memory events, "
              f"{stale} stale read(s) served by the model; ")
    detail += "all clean (no error-level rule, every invariant held)" if not unclean else (
        "NOT clean: " + "; ".join(f"{label}: {', '.join(detections(run)[0])}" for label, run in unclean[:3]))
    checks.append(Check("ff.model-clean",
                        "Runs through the non-coherent model: no rule broken, every ordering invariant holds",
                        not unclean, detail, wrong[:MAX_COUNTEREXAMPLES], group="flush-fence"))
    return checks


def _rule_doc(rule: str) -> str:
    return rule_doc(rule)


def fault_sections(cat: CatalogueResult) -> tuple[list[dict[str, Any]], Check]:
    """The summary's ``faults`` list and the ``faults.all-caught`` check."""
    faults = [{"name": o.name, "caught": o.caught, "by": ", ".join(o.by) or None,
               "diagnostic": f"{o.description}. {o.diagnostic}. Effect on the run: {o.model_effect} "
                             f"(seeds tried: {', '.join(map(str, o.seeds))})"}
              for o in cat.outcomes]
    missed = [o for o in cat.outcomes if not o.caught]
    check = Check(
        "faults.all-caught", "Every planted flush/fence/protocol defect is caught", not missed,
        f"{len(cat.outcomes) - len(missed)}/{len(cat.outcomes)} planted faults caught"
        + (f"; missed: {', '.join(o.name for o in missed)}" if missed else ""),
        [{"fault": o.name, "description": o.description, "seeds": o.seeds, "effect": o.model_effect}
         for o in missed], group="faults")
    return faults, check


def calibration_items(characterization: Characterization) -> list[dict[str, Any]]:
    """Summary ``calibration`` items from a :class:`harness.characterize.Characterization`:
    each figure's median with its 95% interval (order statistics, :class:`harness.stats.Samples`),
    coverage and sample count, what it is compared with (a device-model ``target`` or the
    profile's ``expected`` figure) and the error; for a target also the verdict (MET /
    HOST-LIMITED / MISSED / INCONCLUSIVE) and the host's own capability measured in the same
    run. With an injection baseline the figure compared (and shown) is the cost added on top
    of DRAM, so min/max and the interval move with it."""
    items = []
    for f in characterization.figures:
        shift = f.median - f.compared
        name = f.label + (" (added over DRAM)" if f.baseline else "")
        st = f.stats
        lo, hi = st.interval
        item: dict[str, Any] = {
            "name": name, "unit": f.unit,
            "measured": {"median": f.compared, "min": f.min - shift, "max": f.max - shift,
                         "runs": f.runs, "interval": [lo - shift, hi - shift],
                         "coverage": st.coverage},
            "expected": ({"value": f.expected, "tolerance_pct": f.tolerance_pct,
                          "kind": "target" if f.target else "expected"}
                         if f.expected is not None else None),
            "status": f.status,
        }
        if f.error_pct is not None:
            item["error_pct"] = f.error_pct
        verdict = f.verdict
        if verdict is not None:
            item["verdict"], item["verdict_reason"] = str(verdict[0]), verdict[1]
        host = f.host_capability()
        if host is not None:
            item["host_capability"] = {k: host[k] for k in ("median", "interval", "n", "coverage")}
        items.append(item)
    return items


def emulation_section(characterization: Characterization) -> dict[str, Any]:
    """The profile section's ``emulation_error`` (both means, labelled) on an emulated
    profile; nothing on a real device or ``ci``."""
    both = characterization.emulation_error()
    if both is None:
        return {}
    return {"emulation_error": {k: both[k] for k in (
        "over_all_stated_figures_pct", "over_host_reachable_figures_pct", "stated_figures",
        "host_limited_figures")}}


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


def summary_targets(checks: Sequence[TargetCheck]) -> list[dict[str, Any]]:
    """Summary ``targets``: each judged target as it was computed (verdict, interval, n)."""
    return [c.to_summary() for c in checks]


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


UNDECIDED = ("INCONCLUSIVE", "HOST-LIMITED")


def _calibration_verdict(item: Mapping[str, Any]) -> str | None:
    """A calibration item's verdict on its interval; an item from before verdicts (or with
    an expectation but no samples) is judged on its median status."""
    if item.get("verdict"):
        return str(item["verdict"])
    return {"pass": "MET", "fail": "MISSED"}.get(str(item.get("status")))


def _calibration_phrase(calibration: Sequence[Mapping[str, Any]]) -> str:
    judged = [c for c in calibration if _calibration_verdict(c) is not None]
    if not judged:
        return "no calibration target judged"
    met = sum(_calibration_verdict(c) == "MET" for c in judged)
    return f"{met} of {len(judged)} calibration item(s) within tolerance"


def verdict_section(checks: Sequence[Check], targets: Sequence[TargetCheck],
                    calibration: list[dict[str, Any]], faults: list[dict[str, Any]],
                    where: str, *, strict: bool = False) -> dict[str, Any]:
    """PASS when every check passed, no target was MISSED (nor INCONCLUSIVE when ``strict``),
    no calibration item was MISSED on its interval (an INCONCLUSIVE or HOST-LIMITED one fails
    only a ``strict`` run: the emulation could not show the figure, the system did not miss
    it) and every planted fault was caught."""
    failed_checks = [c.id for c in checks if not c.ok]
    failed_targets = [t.id for t in targets if t.fails(strict)]
    undecided_cal = [c["name"] for c in calibration if _calibration_verdict(c) in UNDECIDED]
    inconclusive = [t.id for t in targets if t.verdict is Verdict.INCONCLUSIVE] + undecided_cal
    failed_cal = [c["name"] for c in calibration
                  if _calibration_verdict(c) == "MISSED" or (strict and c["name"] in undecided_cal)]
    missed = [f["name"] for f in faults if not f["caught"]]
    failed = failed_checks + failed_targets + failed_cal + missed
    met = sum(t.verdict is Verdict.MET for t in targets)
    note = (f" ({len(inconclusive)} inconclusive{', failing under --strict' if strict else ''})"
            if inconclusive else "")
    if not failed:
        summary = (f"all {len(checks)} checks passed, {met} of {len(targets)} target(s) met{note}, "
                   f"{_calibration_phrase(calibration)}, "
                   f"{len(faults)} planted fault(s) caught on {where}")
    else:
        parts = []
        if failed_checks:
            parts.append(f"{len(failed_checks)} of {len(checks)} checks failed")
        if failed_targets:
            parts.append(f"{len(failed_targets)} of {len(targets)} target(s) "
                         f"{'missed or inconclusive (--strict)' if strict else 'missed'}")
        elif inconclusive:
            parts.append(f"{len(inconclusive)} target(s) or calibration item(s) inconclusive")
        if failed_cal:
            parts.append(f"{len(failed_cal)} calibration item(s) "
                         f"{'missed or undecided (--strict)' if strict else 'out of tolerance'}")
        if missed:
            parts.append(f"{len(missed)} planted fault(s) not caught")
        summary = ", ".join(parts) + f" on {where}"
    return {"ok": not failed, "failed": failed, "summary": summary, "inconclusive": inconclusive,
            "strict": strict}
