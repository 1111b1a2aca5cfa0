"""The pytest plugin (entry point ``pytest11``) as a lab's own suite sees it, through pytester:
options, markers, device skips naming the probe, slow gating, the fixtures, and the HTML
report a session writes with ``--cxl-report``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.profiles import list_profiles
from harness.report.summary import load_summary

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SYSFS = ROOT / "fixtures" / "sysfs"


def test_options_are_offered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for option in ("--hw-profile=NAME", "--cxl-device=PATH|auto", "--cxl-report=DIR", "--run-slow",
                   "--cxl-allow-destructive", "--cxl-sysfs-root=DIR"):
        assert option in text, option
    assert "CXL shared-log hardware validation" in text


@pytest.mark.parametrize("declared_in_ini", [False, True])
def test_markers_registered_once(pytester: pytest.Pytester, declared_in_ini: bool) -> None:
    if declared_in_ini:  # as this project's pyproject does: the plugin must not add them again
        pytester.makeini("[pytest]\nmarkers =\n    needs_device: declared by the suite\n    slow: declared too\n")
    pytester.makepyfile(test_m="""
        import pytest

        @pytest.mark.needs_device
        @pytest.mark.throughput
        @pytest.mark.checker
        @pytest.mark.slow
        def test_marked():
            pass
    """)
    result = pytester.runpytest("--strict-markers", "--run-slow", "--cxl-sysfs-root", str(SYSFS / "devdax"))
    result.assert_outcomes(passed=1)
    listing = pytester.runpytest("--markers").stdout.str()
    for name in ("needs_device", "throughput", "checker", "slow"):
        assert listing.count(f"@pytest.mark.{name}:") == 1, name


DEVICE_TEST = """
    import pytest

    @pytest.mark.needs_device
    def test_on_device(cxl_discovery):
        assert cxl_discovery.choice.backend in ("devdax", "numa")
"""


def test_needs_device_is_skipped_naming_what_was_probed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dev=DEVICE_TEST)
    root = SYSFS / "plain"
    result = pytester.runpytest("-rs", "--cxl-sysfs-root", str(root))
    result.assert_outcomes(skipped=1)
    line = next(line for line in result.stdout.lines if line.startswith("SKIPPED"))
    assert "needs a CXL device, none found" in line
    assert f"probed {root}/sys/bus/dax/devices (0 dax device(s))" in line
    assert f"{root}/sys/devices/system/node" in line
    assert "no devdax-mode dax device and no CPU-less NUMA node" in line  # discovery's reason


@pytest.mark.parametrize("tree", ["devdax", "system-ram"])
def test_needs_device_runs_when_discovery_finds_one(pytester: pytest.Pytester, tree: str) -> None:
    pytester.makepyfile(test_dev=DEVICE_TEST)
    pytester.runpytest("--cxl-sysfs-root", str(SYSFS / tree)).assert_outcomes(passed=1)


def test_explicit_file_device_is_not_a_cxl_device(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_dev=DEVICE_TEST)
    path = tmp_path / "region.bin"
    result = pytester.runpytest("-rs", "--cxl-device", str(path), "--cxl-sysfs-root", str(SYSFS / "plain"))
    result.assert_outcomes(skipped=1)
    assert f"--cxl-device {path}" in result.stdout.str()


SLOW_TEST = """
    import pytest

    @pytest.mark.slow
    def test_long():
        pass

    def test_short():
        pass
"""


def test_slow_tests_skip_unless_asked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_slow=SLOW_TEST)
    monkeypatch.delenv("CXL_SLOW", raising=False)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert "pass --run-slow or set CXL_SLOW=1" in result.stdout.str()
    pytester.runpytest("--run-slow").assert_outcomes(passed=2)
    monkeypatch.setenv("CXL_SLOW", "1")
    pytester.runpytest().assert_outcomes(passed=2)


PROFILE_TEST = """
    def test_profile(hw_profile):
        assert hw_profile.name
"""


def test_hw_profile_is_parametrised(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_prof=PROFILE_TEST)
    default = pytester.runpytest("-v")
    default.assert_outcomes(passed=1)
    assert "test_profile[ci] PASSED" in default.stdout.str()
    two = pytester.runpytest("-v", "--hw-profile", "ci", "--hw-profile", "emulated-noncoherent")
    two.assert_outcomes(passed=2)
    assert "test_profile[emulated-noncoherent] PASSED" in two.stdout.str()
    pytester.runpytest("--hw-profile", "all").assert_outcomes(passed=len(list_profiles()))


def test_unknown_hw_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_prof=PROFILE_TEST)
    result = pytester.runpytest("--hw-profile", "no-such-profile")
    assert result.ret != 0
    assert "unknown profile 'no-such-profile'" in result.stdout.str() + result.stderr.str()


def test_region_of_a_device_profile_skips_without_the_device(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reg="""
        def test_region(cxl_region):
            assert cxl_region.size > 0
    """)
    result = pytester.runpytest("-rs", "--hw-profile", "ci", "--hw-profile", "cxl-devdax",
                                "--cxl-sysfs-root", str(SYSFS / "plain"))
    result.assert_outcomes(passed=1, skipped=1)
    text = result.stdout.str()
    assert "profile cxl-devdax needs a devdax device but discovery found none" in text
    assert "probed" in text


LAB_SUITE = """
    import json
    import pytest

    def test_orders(log_runner, cxl_region):
        seen = {}
        for order in (0, 2):
            r = log_runner(order=order, total_bytes=4 << 20)
            assert r.ok, [c.id for c in r.failed()]
            assert r.region["size"] == cxl_region.size
            seen[f"order{order}"] = r.throughput_mib_s
        with open("measured.json", "w") as f:  # pytester runs in its own directory
            json.dump(seen, f)

    @pytest.mark.throughput
    def test_ratio(log_runner, cxl_report):
        a = log_runner(order=2, variant="per-scanner", total_bytes=4 << 20, label="fast")
        b = log_runner(order=2, variant="shared-mutex", total_bytes=4 << 20, label="slow")
        cxl_report.add_target("made-up ratio", a.throughput_mib_s / b.throughput_mib_s, 1000.0)
        cxl_report.add_check("lab.own", "a check of the lab's own", True, "fine")

    @pytest.mark.checker
    def test_broken():
        assert 1 + 1 == 3, "arithmetic is off"
"""


def test_session_report_from_what_the_tests_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab=LAB_SUITE)
    result = pytester.runpytest("--cxl-report", "out")
    result.assert_outcomes(passed=2, failed=1)
    latest = pytester.path / "out" / "latest"
    assert latest.is_symlink()
    run_dir = latest.resolve()
    result.stdout.fnmatch_lines([f"cxl-harness report: {run_dir / 'index.html'} (FAIL; latest -> {run_dir.name})"])
    summary = load_summary(run_dir / "summary.json")

    # Per-test outcomes are checks, grouped by marker; the failure carries its message.
    checks = {c["id"]: c for c in summary["checks"]}
    broken = checks["test:test_lab.py::test_broken"]
    assert broken["ok"] is False and broken["group"] == "flush-fence"
    assert "arithmetic is off" in broken["counterexamples"][0]["message"]
    assert broken["counterexamples"][0]["location"] == "test_lab.py:23"
    assert checks["test:test_lab.py::test_ratio[ci]"]["group"] == "targets"
    assert checks["test:test_lab.py::test_orders[ci]"]["ok"] is True
    assert checks["lab.own"]["ok"] is True
    # Every LogResult the tests ran is a run, with its own figures; its invariants are checks.
    measured = json.loads((pytester.path / "measured.json").read_text())
    labels = [r["label"] for r in summary["runs"]]
    assert labels == ["order0/per-scanner (test_orders[ci])", "order2/per-scanner (test_orders[ci])",
                      "fast (test_ratio[ci])", "slow (test_ratio[ci])"]
    assert summary["runs"][0]["throughput_mib_s"] == measured["order0"]
    assert summary["runs"][1]["throughput_mib_s"] == measured["order2"]
    assert checks["order.dense-sequence"]["ok"] is True
    assert "passed in all 3 run(s)" in checks["order.dense-sequence"]["detail"]  # Order 2 only
    # The lab's target, missed; and the verdict names both failures.
    target = summary["targets"][0]
    assert target["name"] == "made-up ratio" and target["ok"] is False and target["bound"] == 1000.0
    assert target["verdict"] == "MISSED" and target["reason"] == "one value, no interval" and target["n"] == 1
    assert set(summary["verdict"]["failed"]) == {"test:test_lab.py::test_broken", "made-up ratio"}
    assert summary["verdict"]["summary"].startswith("pytest: 2 passed, 1 failed, 0 skipped")
    assert summary["profile"]["name"] == "ci" and summary["device"]["backend"] == "emulated"
    assert summary["meta"]["command"].startswith("pytest --cxl-report out")
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert 'data-verdict="fail"' in page and "arithmetic is off" in page
    assert (run_dir / "pytest-results.json").is_file() and (run_dir / "log-runs.json").is_file()


def test_no_report_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab="""
        def test_run(log_runner, cxl_report):
            r = log_runner(total_bytes=1 << 20)
            cxl_report.add_result(r, label="again")
            assert r.ok
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "cxl-harness report" not in result.stdout.str()
    assert not (pytester.path / "reports").exists()
