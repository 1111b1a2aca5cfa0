"""Every command whose reader goes away (``cxl-harness CMD | head``) ends quietly: exit 141,
no BrokenPipeError traceback, no 'Exception ignored' at interpreter exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"


def _report_dir(tmp: Path) -> str:
    d = tmp / "run"
    d.mkdir()
    shutil.copy(FIX / "reports" / "summary-pass.json", d / "summary.json")
    return str(d)


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "help": lambda t: ["--help"],
    "detect": lambda t: ["detect", "--sysfs-root", str(FIX / "sysfs" / "devdax")],
    "profiles": lambda t: ["profiles"],
    "check-history": lambda t: ["check-history", str(FIX / "histories" / "valid.jsonl")],
    "check-trace": lambda t: ["check-trace", str(FIX / "traces" / "pmemcheck-missing-flush.log")],
    "faults-list": lambda t: ["faults", "--list"],
    "faults": lambda t: ["faults", "--only", "pub_no_payload_flush", "--seeds", "1", "--clean-runs", "0"],
    "publish": lambda t: ["publish", "--total-bytes", "1MiB", "--brokers", "1"],
    "characterize": lambda t: ["characterize", "--quick", "--runs", "1"],
    "bench": lambda t: ["bench", "--quick", "--budget", "1", "--only", "fence_amortisation", "--out", str(t / "b")],
    "report": lambda t: ["report", _report_dir(t)],
    "run": lambda t: ["run", "--quick", "--out", str(t / "reports")],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_into_a_closed_pipe(tmp_path: Path, name: str) -> None:
    argv = COMMANDS[name](tmp_path)
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first byte
    try:
        proc = subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=ROOT, stdout=w,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=300)
    finally:
        os.close(w)
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    # argparse's --help ignores write errors itself and exits 0
    assert proc.returncode == (0 if name == "help" else 141), (proc.returncode, err[-2000:])
