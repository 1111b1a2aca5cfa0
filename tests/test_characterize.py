"""Device characterisation, and the emulated device costing what its model says."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from harness.characterize import (
    FAIL,
    CopySource,
    NO_EXPECTATION,
    PASS,
    Characterization,
    Figure,
    FigureVerdict,
    band_verdict,
    characterize,
    emulation_accuracy,
    llc_bytes,
    write_together,
)
from harness.commands import characterize as cmd
from harness.noise import CpuMeter
from harness.profiles import DeviceModel, load_profile
from harness.region import Region
from harness.stats import Plan, Sampler, Samples, Timed, Verdict, measure_single

# Accuracy samples: one ~50 us call each (most miss the kernel's and other processes' time
# slices, see emulation_accuracy), +-1 % at 95 %, 30 to 200 of them, 4 s; doubled once when
# the machine is too noisy to decide, then the test skips with the reason.
ACCURACY_PLAN = Plan(min_sample_s=0.00001, precision=0.01, min_pairs=30, max_pairs=200, budget_s=4.0)


@pytest.fixture(scope="module")
def ci_result() -> Characterization:
    return characterize(load_profile("ci"), quick=True)


def test_ci_characterisation_measures_every_figure(ci_result: Characterization) -> None:
    names = [f.name for f in ci_result.figures]
    for want in ("load_latency_ns", "flush_fence_ns", "flush_fence_2lines_ns", "flush_fence_4lines_ns",
                 "fence_amortisation", "inval_reload_ns", "copy_gbps_1024", "copy_gbps_65536",
                 "nt_copy_gbps_256", "nt_copy_gbps_65536", "nt_copy_2writers_gbps"):
        assert want in names
    assert "read_gbps" not in names  # ci states no read bandwidth
    for f in ci_result.figures:
        assert f.runs >= 9 and all(s > 0 for s in f.samples), f
        lo, hi = f.interval
        assert f.min <= lo <= f.median <= hi <= f.max
        assert f.status == NO_EXPECTATION and not f.target  # ci states no figures
    assert ci_result.backend == "emulated" and ci_result.ok
    assert ci_result.emulation_error_pct is None and ci_result.region["device_model"] is None
    lat = ci_result.figure("load_latency_ns")
    assert lat.params["exceeds_llc"] == (lat.params["region_bytes"] > ci_result.llc_bytes)
    assert ci_result.comparison()["kind"] == "device"
    json.dumps(ci_result.to_dict())


def test_emulated_profile_compares_every_stated_figure_with_its_target() -> None:
    profile = load_profile("emulated-cxl")
    m = profile.device_model
    c = characterize(profile, quick=True)
    want = {"load_latency_ns": m.load_ns, "flush_fence_ns": m.fence_ns(1),
            "flush_fence_2lines_ns": m.fence_ns(2) / 2, "flush_fence_4lines_ns": m.fence_ns(4) / 4,
            "nt_copy_gbps_65536": m.write_bw_gbps, "nt_copy_2writers_gbps": m.write_bw_gbps,
            "read_gbps": m.read_bw_gbps}
    stated = {f.name: f for f in c.figures if f.target}
    assert set(stated) == set(want)
    for name, value in want.items():
        f = stated[name]
        assert f.expected == pytest.approx(value) and f.tolerance_pct == m.tolerance_pct
        assert f.error_pct == pytest.approx((f.median - value) / value * 100)
        assert "model" in f.params and f.params["model"]["ops"] > 0, f.params
    errs = [abs(f.error_pct) for f in stated.values() if f.error_pct is not None]
    assert c.emulation_error_pct == pytest.approx(sum(errs) / len(errs))
    data = c.to_dict()
    assert data["emulation_error_pct"] == c.emulation_error_pct
    section = data["calibration"]
    assert section["kind"] == "emulation" and len(section["figures"]) == len(want)
    assert all(len(row["interval"]) == 2 and "target" in row for row in section["figures"])
    assert c.region["device_model"]["targets"]["load_ns"] == m.load_ns
    assert c.figure("load_latency_ns").params["cache_resident_by_design"]
    # every stated figure carries the host's own capability, measured in the same run, and a
    # verdict that follows from the intervals
    for f in stated.values():
        row = data["figures"][[g["name"] for g in data["figures"]].index(f.name)]
        host = row["host_capability"]
        assert host is not None and host["n"] == len(f.host or []) >= 9, f.name
        assert host["interval"][0] <= host["median"] <= host["interval"][1]
        assert row["verdict"] in {"MET", "HOST-LIMITED", "MISSED", "INCONCLUSIVE"}
        if row["verdict"] == "HOST-LIMITED":  # only when the host alone is slower than the target
            lo, hi = host["interval"]
            assert (hi < f.expected) if f.higher_is_faster else (lo > f.expected), row
    # the latency targets are far above this host's own (cached) cost: never host-limited
    assert c.figure("load_latency_ns").host_stats.median < m.load_ns  # type: ignore[union-attr]
    both = data["emulation_error"]
    assert both["over_all_stated_figures_pct"] == c.emulation_error_pct
    assert both["over_host_reachable_figures_pct"] == c.emulation_error_reachable_pct
    assert set(both["host_limited_figures"]) == {f.name for f in stated.values() if f.host_limited}
    assert all(f.host is None for f in c.figures if not f.target)
    json.dumps(data)


def _bw_profile(tmp_path: Path, gbps: float) -> Path:
    import yaml

    doc = yaml.safe_load(Path(load_profile("ci").source).read_text())
    doc.update(name=f"charac-bw-{gbps:g}", device_model={"write_bw_gbps": gbps, "tolerance_pct": 10})
    path = tmp_path / f"charac-bw-{gbps:g}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _write_figure(profile_path: Path, applied: DeviceModel | None = None) -> Figure:
    profile = load_profile(profile_path)
    reason = ""
    for scale in (1.0, 3.0):  # one longer retry when too noisy to decide
        f = characterize(profile, quick=True, applied_model=applied, scale=scale).figure("nt_copy_gbps_65536")
        assert f.verdict is not None and f.target and f.host is not None
        verdict, reason = f.verdict
        if verdict is not FigureVerdict.INCONCLUSIVE:
            return f
    pytest.skip(f"machine too noisy to judge the write bandwidth figure: {reason}")


def test_a_device_faster_than_the_host_is_host_limited_and_a_reachable_miss_is_missed(
        tmp_path: Path) -> None:
    # 10 TB/s: no host copies that fast by itself -- HOST-LIMITED, decided on the host's interval
    f = _write_figure(_bw_profile(tmp_path, 10_000))
    assert f.verdict is not None and f.verdict[0] is FigureVerdict.HOST_LIMITED, f.verdict
    assert f.host_stats is not None and f.host_stats.interval[1] < 10_000
    # 3 GB/s: the host alone is several times faster; a model planted 20 % slower misses the
    # target, and that is MISSED, not excused as host-limited
    f = _write_figure(_bw_profile(tmp_path, 3.0), DeviceModel(write_bw_gbps=2.4, host_flush=False))
    assert f.verdict is not None and f.verdict[0] is FigureVerdict.MISSED, f.verdict
    assert not f.host_limited and f.host_stats is not None and f.host_stats.interval[0] > 3.0


# Two writers together on a device whose write bandwidth the host reaches with room to spare:
# the pooled profile's 9.5 GB/s, the quick characterisation's 4 MiB pass (2 MiB per writer,
# ~0.22 ms at the cap). Python threads behind a barrier started ~0.5 ms apart on the busy
# 2-core VM, so the two writers wrote one after the other with a gap between them, and the
# figure read 70-89 % of the cap while the host alone wrote 20+ GB/s.
TWO_WRITER_PLAN = Plan(min_sample_s=0.002, precision=0.02, min_pairs=9, max_pairs=40, budget_s=4.0)
TWO_WRITER_BYTES = 4 << 20


def _two_writers(stagger_ns: int = 0) -> tuple[Verdict, str]:
    gbps = load_profile("emulated-cxl-pooled").device_model.write_bw_gbps
    model = DeviceModel(write_bw_gbps=gbps, host_flush=False)
    reason = ""
    with Region.emulated(64 << 20, hugepages=True, device_model=model) as region:
        src = CopySource(region, 4 << 20)

        def sampler(stagger: int) -> Sampler:
            return Sampler(lambda: Timed(float(TWO_WRITER_BYTES), TWO_WRITER_BYTES / 1e9 / write_together(
                region, src, TWO_WRITER_BYTES, 65536, True, 2, stagger).gbps), "rate")
        for scale in (1.0, 3.0):  # one longer retry when too noisy to decide, then skip
            plan = TWO_WRITER_PLAN.scaled(scale)
            # the host alone, same writers, same run -- never with the planted skew, which
            # would make the host read as slow as the skewed writers and skip the planted half
            with region.unpadded():
                host = Samples.of([v / 1e9 / gbps for v in measure_single(sampler(0), plan).a])
            if host.interval[0] < 1.1:
                reason = f"the host alone wrote {host.text()} x the {gbps:g} GB/s target"
                continue
            # other processes' share over the whole measurement: a 2 ms sample is far too short
            # for /proc/stat's 10 ms ticks (per sample, a quiet machine read as 87 % busy)
            with CpuMeter().span() as span:
                res = measure_single(sampler(stagger_ns), plan)
            verdict, reason = band_verdict(Samples.of([v / 1e9 / gbps for v in res.a]), 1.0, 0.10,
                                           span.other_share)
            if verdict is not Verdict.INCONCLUSIVE:
                return verdict, reason
    pytest.skip(f"machine too busy to judge two writers against the cap: {reason}")


def test_two_writers_together_reach_the_shared_cap() -> None:
    verdict, reason = _two_writers()
    assert verdict is Verdict.MET, reason
    # planted: the second writer starts 1.5 runs late (what the Python-thread measurement did
    # on a busy machine) -- the channel idles between them, and the check must say so
    run_ns = int(TWO_WRITER_BYTES / 2 / load_profile("emulated-cxl-pooled").device_model.write_bw_gbps)
    verdict, reason = _two_writers(stagger_ns=run_ns * 3 // 2)
    assert verdict is Verdict.MISSED, reason


def _fence_profile(tmp_path: Path, ns: float, tolerance_pct: float) -> Path:
    import yaml

    doc = yaml.safe_load(Path(load_profile("ci").source).read_text())
    doc.update(name="charac-test", device_model={"flush_fence_ns": ns, "tolerance_pct": tolerance_pct})
    path = tmp_path / "charac-test.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _fence_verdict(profile_path: Path, applied: DeviceModel | None) -> tuple[Verdict, str, Figure]:
    profile = load_profile(profile_path)
    reason = ""
    for scale in (1.0, 3.0):  # one longer retry when too noisy to decide
        f = characterize(profile, quick=True, applied_model=applied, scale=scale).figure("flush_fence_ns")
        assert f.verdict is not None
        verdict, reason = f.verdict
        if verdict != Verdict.INCONCLUSIVE:
            return verdict, reason, f
    pytest.skip(f"machine too noisy to judge the fence figure: {reason}")


def test_expectations_pass_and_fail_on_injected_fence(tmp_path: Path) -> None:
    # a 3 us flush+fence target (+-5 %): measured within it; a seam planted to pay 10 % more
    # (3.3 us) is caught by the same figure
    path = _fence_profile(tmp_path, 3000, 5)
    verdict, reason, f = _fence_verdict(path, None)
    assert verdict == Verdict.MET and f.status == PASS and f.target, reason
    verdict, reason, f = _fence_verdict(path, DeviceModel(flush_fence_ns=3300, host_flush=False))
    assert verdict == Verdict.MISSED and f.status == FAIL, reason


def test_figure_status_rules() -> None:
    f = Figure("x", "x", "ns", [90.0, 100.0, 130.0], expected=100.0, tolerance_pct=5.0)
    assert f.status == PASS and f.median == 100.0 and f.spread == pytest.approx(0.4)
    assert f.error_pct == 0.0 and f.baseline is None
    f.expected = 110.0
    assert f.status == FAIL and f.error_pct == pytest.approx(-100 / 11)
    assert f.verdict is not None and f.verdict[0] == Verdict.INCONCLUSIVE  # 3 samples: no 95 %
    tight = Samples.of([100.0 + i * 0.1 for i in range(9)])
    assert band_verdict(tight, 100.0, 0.05)[0] == Verdict.MET
    assert band_verdict(tight, 110.0, 0.05)[0] == Verdict.MISSED
    assert band_verdict(Samples.of([80.0 + 5 * i for i in range(9)]), 100.0, 0.05)[0] == Verdict.INCONCLUSIVE


def _spread(centre: float, n: int = 9, step: float = 0.001) -> list[float]:
    """n samples tightly around ``centre`` (a decided 95 % interval)."""
    return [centre * (1 + step * (i - n // 2)) for i in range(n)]


def test_emulation_error_is_the_mean_absolute_error_of_the_stated_figures() -> None:
    figs = [Figure("a", "a", "ns", _spread(110.0), expected=100.0, tolerance_pct=10, target=True,
                   host=_spread(20.0)),
            Figure("b", "b", "ns", _spread(95.0), expected=100.0, tolerance_pct=10, target=True,
                   host=_spread(20.0)),
            # the host alone writes 5.2 GB/s: a 20 GB/s device is beyond it
            Figure("c", "c", "GB/s", _spread(5.0), expected=20.0, tolerance_pct=10, target=True,
                   host=_spread(5.2)),
            Figure("d", "d", "ns", _spread(1.0))]
    c = Characterization("p", "emulated", {}, {}, 0, True, figs)
    assert [f.host_limited for f in figs] == [False, False, True, False]
    assert c.emulation_error_pct == pytest.approx((10 + 5 + 75) / 3)
    assert c.emulation_error_reachable_pct == pytest.approx(7.5)
    assert c.comparison()["host_limited"] == ["c"] and not c.ok
    both = c.to_dict()["emulation_error"]
    assert both["over_all_stated_figures_pct"] == c.emulation_error_pct
    assert both["over_host_reachable_figures_pct"] == c.emulation_error_reachable_pct
    assert both["stated_figures"] == ["a", "b", "c"] and both["host_limited_figures"] == ["c"]
    row = c.comparison()["figures"][2]
    assert row["verdict"] == "HOST-LIMITED" and row["host_capability"]["median"] == pytest.approx(5.2)
    # without the host's capability measured nothing is called host-limited
    figs[2].host = None
    assert not figs[2].host_limited and c.emulation_error_reachable_pct == c.emulation_error_pct


@pytest.mark.parametrize("unit, target, measured, host, want", [
    # costs (less is faster)
    ("ns", 100.0, 103.0, 20.0, FigureVerdict.MET),            # within +-10 %
    ("ns", 100.0, 103.0, 150.0, FigureVerdict.MET),           # MET wins whatever the host
    ("ns", 100.0, 150.0, 148.0, FigureVerdict.HOST_LIMITED),  # the host alone is slower
    ("ns", 100.0, 150.0, 20.0, FigureVerdict.MISSED),         # the host reaches it: the model is off
    ("ns", 100.0, 70.0, 150.0, FigureVerdict.MISSED),         # faster than the device: never the host
    ("ns", 100.0, 150.0, 100.0, FigureVerdict.INCONCLUSIVE),  # the host's interval holds the target
    ("ns", 100.0, 150.0, 200.0, FigureVerdict.INCONCLUSIVE),  # host slower than padded: disturbed
    # bandwidths (more is faster)
    ("GB/s", 20.0, 20.5, 30.0, FigureVerdict.MET),
    ("GB/s", 20.0, 14.0, 15.0, FigureVerdict.HOST_LIMITED),
    ("GB/s", 20.0, 14.0, 30.0, FigureVerdict.MISSED),
    ("GB/s", 20.0, 30.0, 15.0, FigureVerdict.MISSED),
    ("GB/s", 20.0, 14.0, 4.0, FigureVerdict.INCONCLUSIVE),     # host slower than padded: disturbed
])
def test_host_limited_only_when_the_host_alone_is_slower_than_the_target(
        unit: str, target: float, measured: float, host: float, want: FigureVerdict) -> None:
    step = 0.05 if host == target else 0.001  # +-10 % around the target: straddles it
    f = Figure("x", "x", unit, _spread(measured), expected=target, tolerance_pct=10, target=True,
               host=_spread(host, step=step))
    assert f.verdict is not None
    verdict, reason = f.verdict
    assert verdict is want, reason
    assert f.host_limited == (want is FigureVerdict.HOST_LIMITED)
    if want is FigureVerdict.HOST_LIMITED:
        assert "host alone" in reason and f.host_error_pct is not None
    # the same samples without the host's capability: never HOST-LIMITED
    f.host = None
    assert f.verdict is not None and f.verdict[0] is not FigureVerdict.HOST_LIMITED


def test_cli_characterize_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["characterize", "--profile", "ci", "--quick", "--runs", "2", "--json"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "ci" and data["ok"] and data["figures"][0]["runs"] == 2
    assert data["emulation_error_pct"] is None and "interval" in data["figures"][0]
    assert data["emulation_error"] is None  # ci states no figure: nothing to emulate
    assert all(f["host_capability"] is None for f in data["figures"])
    doc = yaml.safe_load(Path(load_profile("ci").source).read_text())
    doc.update(name="charac-bad", expected={"nt_copy_bw_gbps": {"value": 10_000, "tolerance_pct": 1}})
    bad = tmp_path / "charac-bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    args = parser.parse_args(["characterize", "--profile", str(bad), "--quick", "--runs", "2"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "FAIL: nt_copy_gbps_65536" in out and "expected 10000" in out


def test_llc_bytes_reads_the_largest_cache(tmp_path: Path) -> None:
    for idx, size in (("index0", "48K"), ("index2", "2048K"), ("index3", "105M")):
        d = tmp_path / "sys/devices/system/cpu/cpu0/cache" / idx
        d.mkdir(parents=True)
        (d / "size").write_text(size + "\n")
    assert llc_bytes(tmp_path) == 105 << 20
    assert llc_bytes(tmp_path / "nowhere") == 32 << 20


# ------------------------------------------------------------------------------------------
# The device model's flush+fence costs its target: +-5 %, judged on the 95 % interval


# +-5 %: on short samples a clean model measured +0.2 to +3.2 % (300 ns to 2 us targets, the
# 2-core CI VM, shared), the planted defect pays 10 % more. (On 2 ms samples the time the
# kernel took from the spin-wait read as +3-7 %, and the band had been widened to +-10 %
# with a +25 % plant.)
TOLERANCE = 0.05


def _accuracy(target: float, applied: float | None = None) -> tuple[Verdict, str]:
    acc = emulation_accuracy(target, ACCURACY_PLAN, applied_ns=applied, tolerance=TOLERANCE)
    if acc.verdict == Verdict.INCONCLUSIVE:
        acc = emulation_accuracy(target, ACCURACY_PLAN.scaled(2.0), applied_ns=applied, tolerance=TOLERANCE)
    if acc.verdict == Verdict.INCONCLUSIVE:
        pytest.skip(f"machine too noisy to judge a {target:g} ns target: {acc.reason}")
    assert math.isfinite(acc.ratios.median)
    return acc.verdict, acc.reason


@pytest.mark.parametrize("target", (300.0, 1000.0, 2000.0))
def test_injected_flush_delay_is_accurate(target: float) -> None:
    verdict, reason = _accuracy(target)
    assert verdict == Verdict.MET, reason


def test_accuracy_check_catches_a_miscalibrated_seam() -> None:
    # planted: the model pays 10 % more than its target -- the check must say so
    verdict, reason = _accuracy(1000.0, applied=1100.0)
    assert verdict == Verdict.MISSED, reason


# ------------------------------------------------------------------------------------------
# Real device


@pytest.mark.needs_device
def test_real_device_characterisation(cxl_discovery) -> None:  # type: ignore[no-untyped-def]
    # the needs_device marker skips this (naming what was probed) when there is no device
    d = cxl_discovery
    profile = load_profile("cxl-devdax" if d.choice.backend == "devdax" else "cxl-numa")
    c = characterize(profile, quick=True, allow_destructive=d.choice.backend == "numa")
    assert c.backend == d.choice.backend and c.comparison()["kind"] == "device"
    assert c.emulation_error_pct is None and c.region["device_model"] is None
    assert all(f.status != FAIL for f in c.figures), [f.to_dict() for f in c.failed()]
    if d.choice.backend == "numa" and c.numa_node and c.numa_node["read_latency_ns"] is not None:
        assert c.figure("load_latency_ns").firmware == c.numa_node["read_latency_ns"]
