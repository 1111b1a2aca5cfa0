"""The main job (``cxl-harness run``) end to end, in quick mode on the default profile.

One real run (module fixture) is checked against what it measured: every figure in
summary.json is the figure of a LogResult the run produced, the targets are the benchmark
module's, calibration is the characterisation's, the pyperf and pytest-benchmark files are
readable by their own tools. Failing runs are made honestly: a profile whose ratio target
cannot be met, and a planted flush defect in the model runs.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import site
from harness.report import rundir
from harness.checked import rule_names
from harness.commands import run as run_command
from harness.faults import QUICK
from harness.job.main import MainJobOptions, MainJobResult, run_main_job
from harness.report.summary import load_summary

ROOT = Path(__file__).resolve().parents[1]
SYSFS = ROOT / "fixtures" / "sysfs"


def cli(argv: list[str]) -> int:
    """``cxl-harness run ...`` through the command's own parser (as the CLI registers it)."""
    parser = argparse.ArgumentParser(prog="cxl-harness")
    sub = parser.add_subparsers(dest="command")
    run_command.register(sub)
    args = parser.parse_args(["run", *argv])
    code: int = args.func(args)
    return code


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[MainJobResult, str]:
    out = tmp_path_factory.mktemp("reports")
    from io import StringIO

    stream = StringIO()
    result = run_main_job(MainJobOptions(profile="ci", quick=True, out=out, command="cxl-harness run --quick"),
                          stream=stream)
    return result, stream.getvalue()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_run_directory_holds_every_file_and_latest_points_at_it(quick_run: tuple[MainJobResult, str]) -> None:
    result, printed = quick_run
    run_dir = result.run_dir
    for name in ("index.html", "summary.json", "pyperf.json", "benchmark.json", "benchmarks.json",
                 "characterization.json", "log-runs.json", "faults.json"):
        assert (run_dir / name).is_file(), name
    assert result.latest == run_dir.parent / "latest"
    assert result.latest.is_symlink() and result.latest.resolve() == run_dir.resolve()
    summary = load_summary(run_dir / "summary.json")  # valid cxl-harness-summary/1
    assert summary["files"]["pyperf"] == "pyperf.json" and summary["files"]["benchmark"] == "benchmark.json"
    for rel in summary["files"].values():
        assert (run_dir / rel).is_file(), rel
    # It says where the report is and gives one overall line.
    assert f"report: {run_dir / 'index.html'}" in printed
    word = "PASS" if result.ok else "FAIL"
    assert f"\n{word}: {summary['verdict']['summary']}\n" in printed
    assert summary["meta"]["command"] == "cxl-harness run --quick"
    assert summary["meta"]["flush_instruction"] in ("clwb", "clflushopt", "clflush", "none")
    assert summary["meta"]["package_version"] and summary["meta"]["git_revision"]


def test_runs_in_summary_are_the_measured_log_results(quick_run: tuple[MainJobResult, str]) -> None:
    result, _ = quick_run
    summary = result.summary
    labels = [run["label"] for run in summary["runs"]]
    assert labels == ["order0/per-scanner", "order0/shared-mutex", "order2/per-scanner", "order2/shared-mutex"]
    raw = read_json(result.run_dir / "log-runs.json")
    for run in summary["runs"]:
        measured = result.representative[run["label"]]
        assert measured in result.runs[run["label"]] and len(result.runs[run["label"]]) == 3
        assert run["throughput_mib_s"] == measured.throughput_mib_s
        assert run["messages_per_s"] == measured.messages_per_s
        assert run["batches_per_s"] == measured.batches_per_s
        assert run["elapsed_s"] == measured.elapsed_s
        assert run["messages_published"] == measured.messages_published
        assert run["messages_delivered"] == min(measured.messages_delivered) == measured.messages_published
        assert (run["order"], run["variant"]) == (measured.order, measured.variant)
        if measured.latency.samples:
            assert run["latency_ns"] == {"p50": measured.latency.p50_ns, "p99": measured.latency.p99_ns,
                                         "p999": measured.latency.p999_ns}
            assert len(run["latency_cdf"]) == len(measured.latency.cdf) > 0
        # The same figures are in the raw file, one entry per round.
        rounds = raw[run["label"]]
        assert len(rounds) == 3
        assert run["throughput_mib_s"] in [r["throughput_mib_s"] for r in rounds]
    assert any("latency_cdf" in run for run in summary["runs"] if run["order"] == 2)


def test_checks_cover_ordering_flush_fence_and_faults(quick_run: tuple[MainJobResult, str]) -> None:
    result, _ = quick_run
    checks = {c["id"]: c for c in result.summary["checks"]}
    every_run = [r for rs in result.runs.values() for r in rs]
    # Each invariant of every run is a check, passing only if it held in every run.
    for r in every_run:
        for c in r.checks:
            assert f"order.{c.id}" in checks
    for cid, check in checks.items():
        if cid.startswith("order."):
            held = [c.ok for r in every_run for c in r.checks if f"order.{c.id}" == cid]
            assert check["ok"] == all(held) and held
    for rule in rule_names():
        assert checks[f"ff.{rule}"]["group"] == "flush-fence"
    assert checks["ff.model-clean"]["ok"], checks["ff.model-clean"]
    assert checks["faults.all-caught"]["ok"]
    faults = result.summary["faults"]
    assert [f["name"] for f in faults] == list(QUICK)
    assert all(f["caught"] and f["by"] for f in faults)
    assert read_json(result.run_dir / "faults.json")["ok"] is True
    # The verdict is the conjunction of everything.
    everything_ok = (all(c["ok"] for c in result.summary["checks"])
                     and all(t["verdict"] != "MISSED" for t in result.summary["targets"])
                     and all(c["status"] != "fail" for c in result.summary["calibration"]))
    assert result.ok == result.summary["verdict"]["ok"] == everything_ok
    failed = set(result.summary["verdict"]["failed"])
    assert failed == ({c["id"] for c in result.summary["checks"] if not c["ok"]}
                      | {t["name"] for t in result.summary["targets"] if t["verdict"] == "MISSED"}
                      | {c["name"] for c in result.summary["calibration"] if c["status"] == "fail"})


def test_quick_run_crashes_a_publisher_and_names_the_outcome(quick_run: tuple[MainJobResult, str]) -> None:
    """--quick includes one crash scenario (a publisher), reported as a named check of its own
    group -- what was declared lost, the time to detect, the verdict -- never silently."""
    result, printed = quick_run
    checks = {c["id"]: c for c in result.summary["checks"]}
    crash = checks["crash.publisher"]
    assert crash["group"] == "crash" and crash["ok"], crash
    assert "detected dead after" in crash["detail"] and "1 batch(es) declared lost" in crash["detail"]
    assert [(e["broker"], e["pbr_index"], e["client"]) for e in crash["counterexamples"]] == [(1, 64, 1)]
    raw = read_json(result.run_dir / "crashes.json")
    assert [(o["role"], o["mode"], o["declared_lost"], o["ok"]) for o in raw] == [("publisher", "threads", 1, True)]
    assert raw[0]["detect_ms"] >= 0 and result.summary["files"]["crash injection"] == "crashes.json"
    assert "crash injection: a publisher killed mid-run" in printed
    assert "Crash injection (named, expected outcomes)" in (result.run_dir / "index.html").read_text()


def test_targets_and_calibration_are_the_benchmarks_and_characterisation(
        quick_run: tuple[MainJobResult, str]) -> None:
    result, _ = quick_run
    bench = read_json(result.run_dir / "benchmarks.json")
    targets = result.summary["targets"]
    assert [t["name"] for t in targets] == [t["name"] for t in bench["targets"]]
    assert {t["name"] for t in targets} == {
        "order2_vs_order0", "order2_vs_nt_copy", "per_scanner_vs_mutex", "fence_amortisation"}
    for mine, theirs in zip(targets, bench["targets"]):
        # one figure per quantity: the summary shows exactly what the benchmark computed
        for key in ("measured", "interval", "n", "bound", "verdict", "reason"):
            assert mine[key] == theirs[key], key
        ratio = bench["results"][theirs["result"]]["ratio"]
        assert mine["interval"] == ratio["interval"] and mine["n"] == ratio["n"]
        lo, hi = mine["interval"]
        expected = ("MET" if lo >= mine["bound"] else "MISSED" if hi < mine["bound"] else "INCONCLUSIVE")
        assert mine["verdict"] == expected or mine["reason"].startswith(
            ("measurement error", "too few", "machine busy")) or "decided although" in mine["reason"]
        assert mine["ok"] == (mine["verdict"] == "MET")

    figures = read_json(result.run_dir / "characterization.json")["figures"]
    cal = result.summary["calibration"]
    assert len(cal) == len(figures) > 5
    for item, fig in zip(cal, figures):
        assert item["measured"]["median"] == pytest.approx(fig["compared"])
        assert item["status"] == fig["status"] and item["measured"]["runs"] == fig["runs"]

    names = [a["name"] for a in result.summary["ablations"]]
    assert any("shared mutex vs per-scanner" in n for n in names)
    assert any("flush amortisation" in n for n in names)
    assert any("reservation" in n for n in names)
    mutex = next(a for a in result.summary["ablations"] if "shared mutex" in a["name"])
    assert mutex["series"][0]["x"] == [4]  # --quick: the profile's broker count only
    per_b4 = bench["results"]["per_scanner_vs_mutex_b4"]
    assert mutex["series"][1]["y"][0] == pytest.approx(per_b4["a"]["median"])
    assert mutex["series"][1]["interval"][0] == per_b4["a"]["interval"]


def test_pyperf_and_pytest_benchmark_files_read_with_their_tools(quick_run: tuple[MainJobResult, str]) -> None:
    import pyperf

    result, _ = quick_run
    suite = pyperf.BenchmarkSuite.load(str(result.run_dir / "pyperf.json"))
    bench = suite.get_benchmark("log_order2_per_scanner")
    assert sorted(bench.get_values()) == sorted(r.elapsed_s for r in result.runs["order2/per-scanner"])
    assert "store_flush_fence_per_line" in suite.get_benchmark_names()
    compare = subprocess.run([sys.executable, "-m", "pyperf", "compare_to", str(result.run_dir / "pyperf.json"),
                              str(result.run_dir / "pyperf.json")], capture_output=True, text=True, timeout=60)
    assert compare.returncode == 0, compare.stderr

    data = read_json(result.run_dir / "benchmark.json")
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    by_name = {b["name"]: b for b in data["benchmarks"]}
    log_run = by_name["log[order2/per-scanner]"]
    assert log_run["stats"]["data"] == [r.elapsed_s for r in result.runs["order2/per-scanner"]]
    assert log_run["stats"]["rounds"] == 3
    assert log_run["stats"]["min"] == min(log_run["stats"]["data"])
    for key in ("min", "max", "mean", "stddev", "median", "iqr", "ops", "rounds", "iterations"):
        assert key in log_run["stats"], key
    env = {**os.environ, "COLUMNS": "200"}
    tool = Path(sys.executable).parent / "pytest-benchmark"
    shown = subprocess.run([str(tool), "compare", str(result.run_dir / "benchmark.json")], capture_output=True, text=True,
                           timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "log[order2/per-scanner]" in shown.stdout


def test_html_report_shows_the_run(quick_run: tuple[MainJobResult, str]) -> None:
    result, _ = quick_run
    page = html.unescape(result.report.read_text(encoding="utf-8"))
    assert page.count('data-verdict="' + ("pass" if result.ok else "fail") + '"') == 1
    for ident in ("verdict", "meta", "device", "calibration", "checks", "targets", "charts", "ablations",
                  "faults", "raw"):
        assert f'<section id="{ident}"' in page, ident
    for chart in ("throughput", "latency-percentiles", "latency-cdf", "ablation-0"):
        assert f'data-chart="{chart}"' in page, chart
    assert "order.dense-sequence" in page and "ff.unflushed_before_publish" in page
    assert result.summary["device"]["discovery_reason"] in page
    assert 'href="pyperf.json"' in page and 'href="benchmark.json"' in page
    # Self-contained: nothing to fetch (SVG namespace URIs are names, not requests).
    import re

    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)


def test_impossible_target_fails_the_run_and_the_report_says_why(
        quick_run: tuple[MainJobResult, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load((ROOT / "hw_profiles" / "ci.yaml").read_text())
    doc["name"] = "ci-impossible"
    doc["targets"]["ratios"]["order2_vs_order0"] = 100
    profile = tmp_path / "ci-impossible.yaml"
    profile.write_text(yaml.safe_dump(doc))
    out = tmp_path / "reports"
    first, _ = quick_run

    code = cli(["--profile", str(profile), "--quick", "--rounds", "1", "--out", str(out),
                "--compare", str(first.run_dir)])
    printed = capsys.readouterr().out

    assert code == 1
    latest = out / "latest"
    run_dir = latest.resolve()
    summary = load_summary(latest / "summary.json")
    target = next(t for t in summary["targets"] if t["name"] == "order2_vs_order0")
    assert target["bound"] == 100 and target["verdict"] == "MISSED" and 0 < target["measured"] < 100
    assert target["interval"][1] < 100 and target["n"] >= 6
    assert not summary["verdict"]["ok"] and target["name"] in summary["verdict"]["failed"]
    assert summary["profile"]["name"] == "ci-impossible"
    assert "\nFAIL: " in printed and f"failed: {target['name']}" in printed
    # the line says why: the verdict, the figure against its bound, where the bound comes from
    line = next(ln for ln in printed.splitlines() if f"failed: {target['name']}" in ln)
    assert "MISSED" in line and ">= 100" in line and "ci-impossible" in line, line
    page = html.unescape((run_dir / "index.html").read_text(encoding="utf-8"))
    assert 'data-verdict="fail"' in page
    assert f"{target['name']}</a> <span class=\"muted\">— MISSED: median " in page  # named in the verdict
    assert "required ≥ 100×" in page and "MISSED" in page
    assert "Compared with an earlier run" in page  # --compare


def test_planted_flush_defect_fails_with_counterexample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports"
    code = cli(["--quick", "--rounds", "1", "--out", str(out), "--plant-fault", "pub_no_payload_flush"])
    printed = capsys.readouterr().out
    assert code == 1
    summary = load_summary(out / "latest" / "summary.json")
    checks = {c["id"]: c for c in summary["checks"]}
    rule = checks["ff.unflushed_before_publish"]
    assert not rule["ok"] and rule["counterexamples"]
    example = rule["counterexamples"][0]
    assert example["rule"] == "unflushed_before_publish" and example["severity"] == "error"
    assert example["agent"].startswith("publisher") and example["code"].startswith("cffi_src/src/cxl_")
    clean = checks["ff.model-clean"]
    assert not clean["ok"]
    wrong = [ex for ex in clean["counterexamples"] if ex["check"] == "payload-integrity"]
    assert wrong and wrong[0]["published"]["checksum"] != wrong[0]["delivered"]["checksum"]
    # The log runs on the real memory are unaffected: their checks still pass.
    assert all(c["ok"] for c in summary["checks"] if c["id"].startswith("order."))
    assert "ff.unflushed_before_publish" in summary["verdict"]["failed"]
    assert "  failed: ff.unflushed_before_publish" in printed
    page = html.unescape((out / "latest" / "index.html").read_text(encoding="utf-8"))
    assert '<details class="cx" open>' in page  # failing checks show their counterexamples open
    assert example["code"] in page and "payload-integrity" in page


def test_unknown_planted_fault_and_bad_compare_fail_before_running(tmp_path: Path) -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="unknown fault 'no_such_fault'"):
        run_main_job(MainJobOptions(quick=True, out=tmp_path, plant_fault="no_such_fault"))
    with pytest.raises(HarnessError, match="no such file"):
        run_main_job(MainJobOptions(quick=True, out=tmp_path, compare=tmp_path / "missing"))
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize(("tree", "profile", "backend"), [
    ("devdax", "cxl-devdax", "devdax"), ("system-ram", "cxl-numa", "numa"), ("plain", "ci", "emulated")])
def test_profile_auto_follows_discovery(tree: str, profile: str, backend: str) -> None:
    chosen, why = site.resolve_profile("auto", sysfs_root=str(SYSFS / tree))
    assert chosen.name == profile
    assert f"chose {profile}" in why and backend in why


def test_latest_falls_back_to_a_pointer_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tmp_path / "20250101-000000"
    first.mkdir()
    assert rundir.point_latest(tmp_path, first).is_symlink()

    def no_symlinks(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    second = tmp_path / "20250101-000001"
    second.mkdir()
    latest = rundir.point_latest(tmp_path, second)
    assert latest.is_file() and not latest.is_symlink()
    assert latest.read_text().strip() == second.name
    assert rundir.resolve_latest(latest) == second


def test_role_placement_and_noise_are_in_the_summary_and_report(quick_run: tuple[MainJobResult, str]) -> None:
    result, _ = quick_run
    run = result.summary["runs"][0]
    placed = run["placement"]
    assert placed["scheduling"] in ("workers", "threads") and placed["roles"]
    assert placed["roles"] == result.representative[run["label"]].placement["roles"]
    meta = result.summary["meta"]
    assert meta["quick"] is True and isinstance(meta["git_dirty"], bool) and meta["python"]
    assert meta["machine_state"]["cpus"] >= 1 and "load_avg" in meta["machine_state"]
    page = html.unescape((result.run_dir / "index.html").read_text(encoding="utf-8"))
    assert "Roles on CPUs" in page and placed["roles"][0]["role"] in page
    assert "Load average (1, 5, 15 min)" in page and "Quick run" in page
    bench = read_json(result.run_dir / "benchmarks.json")
    assert bench["results"]["order2_vs_order0"]["params"]["placement"]["roles"]


# ------------------------------------------------------------------ the Mutation section

def test_quick_run_leaves_the_mutation_section_out_and_says_why(quick_run: tuple[MainJobResult, str]) -> None:
    result, log = quick_run
    assert "mutation" not in result.summary and "mutation:" not in log
    assert not (result.run_dir / "mutation.json").exists()
    page = (result.run_dir / "index.html").read_text(encoding="utf-8")
    assert 'id="mutation-not-computed"' in page and "Not computed in this run" in page


@pytest.mark.parametrize(("choice", "quick", "parts"), [
    ("auto", True, (False, False)), ("auto", False, (True, False)), ("off", False, (False, False)),
    ("sites", True, (True, False)), ("all", True, (True, True))])
def test_mutation_choice(choice: str, quick: bool, parts: tuple[bool, bool]) -> None:
    assert MainJobOptions(quick=quick, mutation=choice).mutation_parts == parts


def test_mutation_choice_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown mutation choice 'some'"):
        _ = MainJobOptions(mutation="some").mutation_parts
    with pytest.raises(SystemExit):
        cli(["--quick", "--out", str(tmp_path), "--mutation", "some"])
    assert "invalid choice: 'some'" in capsys.readouterr().err


@pytest.mark.checker
def test_mutation_parts_make_the_section_and_the_raw_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a full run adds (the site mutants cut to one site here; the counterexamples of
    the catalogue's caught faults, the quick subset)."""
    import functools

    import harness.mutate
    from harness.faults import run_catalogue
    from harness.job.main import mutation_parts
    from harness.report.summary import validate_summary

    monkeypatch.setattr(harness.mutate, "run_mutation",
                        functools.partial(harness.mutate.run_mutation, ["write_header/flush#3"]))
    catalogue = run_catalogue(quick=True, clean_runs=0, seeds=(1, 2, 3))
    said: list[str] = []
    section, raw = mutation_parts(MainJobOptions(quick=True, mutation="sites"), catalogue, said.append)
    assert section is not None and raw is not None
    assert section["sites"]["mutants"] == 1 and section["sites"]["killed"] == 1 and section["patches"] is None
    caught = [o.name for o in catalogue.outcomes if o.caught]
    assert [c["fault"] for c in section["counterexamples"]] == caught and caught
    assert all(c["steps"] >= 1 and c["story"] for c in section["counterexamples"])
    assert raw["format"] == "cxl-mutation/1" and raw["sites"]["outcomes"][0]["site"] == "write_header/flush#3"
    validate_summary({"schema": "cxl-harness-summary/2", "verdict": {"ok": True}, "mutation": section})
    assert any("site mutants killed" in s for s in said)
