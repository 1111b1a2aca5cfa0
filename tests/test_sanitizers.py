"""The C core under AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer.

``make -C cffi_src asan tsan`` builds three drivers from cffi_src/tests/stress_main.c: every
role (publishers, scanners, epoch sequencer / Order-0 ackers, subscribers) over Order 0 and 2,
both variants, 1/2/4 brokers, 0..2 subscribers, ACK 0/1/2 and tiny rings, then rounds over
corrupted memory. The checked build runs through the non-coherent model (deterministic
scheduler). Each must exit 0 with no sanitizer report.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CFFI = ROOT / "cffi_src"
BIN = CFFI / "bin"
REPORT_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                  "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:detect_leaks=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=66:second_deadlock_stack=1",
}


def _runtime_missing(flag: str, tmp: Path) -> str | None:
    """None when gcc can link a program with -fsanitize=flag, else the reason."""
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    src = tmp / "t.c"
    src.write_text("int main(void) { return 0; }\n")
    r = subprocess.run(["gcc", f"-fsanitize={flag}", str(src), "-o", str(tmp / "t")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"gcc lacks the {flag} sanitizer runtime: {r.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sanitizer-probe")
    for flag in ("address,undefined", "thread"):
        reason = _runtime_missing(flag, tmp)
        if reason and os.environ.get("CI") != "true":
            pytest.skip(reason)
        assert reason is None, reason  # in CI the sanitizers must run
    r = subprocess.run(["make", "-C", str(CFFI), "asan", "tsan"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return BIN


def _run(binary: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV}
    r = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0 and "ThreadSanitizer" in r.stderr and "unexpected memory mapping" in r.stderr:
        # TSan and high-entropy ASLR: retry with randomisation off
        r = subprocess.run(["setarch", platform.machine(), "-R", str(binary), *args], capture_output=True,
                           text=True, timeout=timeout, env=env)
    return r


def _assert_clean(r: subprocess.CompletedProcess[str], corrupt: bool = True) -> None:
    out = r.stdout + r.stderr
    for marker in REPORT_MARKERS:
        assert marker not in out, out[-6000:]
    assert r.returncode == 0, out[-6000:]
    # 36 Order 0/2 configurations and 18 Order 5 ones (spread, hold bounds, planted gaps)
    assert "clean runs: 54, failed: 0" in r.stdout
    if "checked" not in r.args[0] and "-R" not in r.args:  # crash runs need real threads
        assert "crash runs: 6, failed: 0" in r.stdout, r.stdout
    if corrupt:
        assert "corrupt rounds:" in r.stdout


def test_asan_ubsan_driver_runs_clean(built: Path) -> None:
    _assert_clean(_run(built / "stress-asan"))


def test_checked_build_under_asan_runs_clean(built: Path) -> None:
    _assert_clean(_run(built / "stress-checked-asan"))


def test_tsan_driver_runs_clean(built: Path) -> None:
    _assert_clean(_run(built / "stress-tsan"))


def test_driver_rejects_unknown_options(built: Path) -> None:
    r = _run(built / "stress-asan", "-x")
    assert r.returncode == 2 and "usage:" in r.stderr


def test_checked_driver_reports_invariant_failures(built: Path) -> None:
    """Not a rubber stamp: with a planted defect (fault 1, the payload flush removed) the
    checked driver names the failing runs and exits non-zero."""
    r = _run(built / "stress-checked-asan", "-q", "-n", "0", "-f", "1")
    assert r.returncode == 1
    assert "FAIL [" in r.stderr and "checked build: rule" in r.stderr


def test_checked_build_all_configurations(built: Path) -> None:
    """Every configuration, two publishers per broker included, runs clean on the model."""
    _assert_clean(_run(built / "stress-checked-asan", "-a", "-n", "0"), corrupt=False)


@pytest.mark.parametrize("fault, message", [
    (26, "per-client order errors"),          # seq5_hold_release_unordered
    (28, "planted gap never resolved"),       # seq5_gap_no_marker
    (29, "rule unflushed_before_publish"),    # seq5_marker_unflushed
])
def test_checked_driver_catches_order5_defects(built: Path, fault: int, message: str) -> None:
    """The Order 5 scenarios of the driver are not a rubber stamp either."""
    r = _run(built / "stress-checked-asan", "-q", "-n", "0", "-f", str(fault))
    assert r.returncode == 1 and "order=5" in r.stderr and message in r.stderr, r.stderr[-3000:]


# ------------------------------------------------------------------------------------------
# The command line on a sanitizer build of the extension (CXL_SANITIZE, cffi_src/build_core.py)


@pytest.fixture(scope="module")
def asan_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the harness package whose ``_core`` is built with ASan + UBSan."""
    tmp = tmp_path_factory.mktemp("asan-core")
    reason = _runtime_missing("address,undefined", tmp)
    if reason and os.environ.get("CI") != "true":
        pytest.skip(reason)
    assert reason is None, reason
    build = tmp / "build"
    build.mkdir()
    env = {**os.environ, "CXL_SANITIZE": "address,undefined"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import build_core; "
            "print(build_core.ffi.compile(tmpdir=sys.argv[2], verbose=False))")
    r = subprocess.run([sys.executable, "-c", code, str(CFFI), str(build)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=tmp)  # cwd outside the tree: absolute sources
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    built = Path(r.stdout.strip().splitlines()[-1])
    pkg = tmp / "pkg"
    shutil.copytree(ROOT / "harness", pkg / "harness", ignore=shutil.ignore_patterns("_core.*", "__pycache__"))
    shutil.copy(built, pkg / "harness" / built.name)
    return pkg


def _asan_env(pkg: Path) -> dict[str, str]:
    libs = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
            for lib in ("libasan.so", "libubsan.so")]
    return {**os.environ, "PYTHONPATH": str(pkg), "LD_PRELOAD": ":".join(libs),
            "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def _asan_cli(pkg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240,
                          env=_asan_env(pkg), cwd=pkg)


def test_asan_build_of_the_extension_is_the_one_loaded_and_catches_an_overflow(asan_package: Path) -> None:
    """Not a rubber stamp: the copy loads the sanitizer build, and an out-of-bounds read through
    it (a 64-byte checksum of a 16-byte buffer) is reported by AddressSanitizer."""
    code = ("import harness._core as c; print(c.__file__); b = c.ffi.new('char[16]'); "
            "c.lib.cxl_checksum_bytes(b, 64, 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=_asan_env(asan_package), cwd=asan_package)
    assert str(asan_package) in r.stdout
    assert r.returncode != 0 and "AddressSanitizer" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("crash,processes", [("publisher:1@50%", False), ("scanner:1@50%", False),
                                             ("subscriber:1@50%", True)])
def test_cli_crash_paths_under_asan(asan_package: Path, crash: str, processes: bool) -> None:
    """publish --crash on the ASan/UBSan extension: the dead role is detected, its share named,
    the run passes, and the sanitizers see nothing (role processes inherit the preload)."""
    args = ["publish", "--brokers", "2", "--total-bytes", "1MiB", "--batch-bytes", "4KiB", "--msg-size",
            "256", "--ring-slots", "16", "--subscribers", "2", "--slot-timeout", "20", "--watchdog", "2",
            "--crash", crash] + (["--processes"] if processes else [])
    r = _asan_cli(asan_package, *args)
    out = r.stdout + r.stderr
    for marker in REPORT_MARKERS:
        assert marker not in out, out[-6000:]
    assert r.returncode == 0, out[-4000:]
    assert "-- detected" in r.stdout and "crash verdict: expected outcome" in r.stdout


def test_cli_bad_crash_input_under_asan(asan_package: Path) -> None:
    r = _asan_cli(asan_package, "publish", "--crash", "scanner:9@50%", "--slot-timeout", "20")
    assert r.returncode == 2 and "broker index 9 is out of range" in r.stderr
    assert "Traceback" not in r.stderr
