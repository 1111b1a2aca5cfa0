#!/usr/bin/env python3
"""Line coverage (gcov) of the protocol's C code under the model runs.

Builds the checked core once more with --coverage into a scratch directory, runs the
fault-free model runs of ``harness.mutate.MODEL_CONFIGS`` (every configuration, each seed with
whole role steps and with preemption) in a child process on that build, then reads gcov's
figures per source file and lists the functions that kept uncovered lines.

    .venv/bin/python scripts/model_coverage.py [--seeds 3] [--faults] [--json] [--lines]

--faults also runs every catalogue fault once (the fault code and the corruption paths it
reaches); without it only the fault-free runs count.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "cffi_src"))

PROTOCOL = ("cxl_log_layout.c", "cxl_log_common.c", "cxl_publisher.c", "cxl_scanner.c",
            "cxl_sequencer.c", "cxl_order5.c", "cxl_subscriber.c", "cxl_runner.c")


def build(tmp: Path) -> Path:
    import build_core  # cffi_src/build_core.py
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(build_core._cdef_text() + "\n" + build_core._extra_cdef())
    ffi.set_source("harness._core_checked", '#include "cxl_api.h"\n#include "cxl_check_api.h"\n',
                   sources=[str(build_core.SRC / s) for s in build_core.CHECKED_SOURCES],
                   include_dirs=[str(build_core.SRC)], define_macros=[("CXL_CHECKED", "1")],
                   extra_compile_args=["-O0", "-g", "--coverage"] + build_core._MK["BASE_CFLAGS"],
                   extra_link_args=["-pthread", "--coverage"])
    return Path(ffi.compile(tmpdir=str(tmp)))


def child(so: str, seeds: int, faults: bool) -> None:
    spec = importlib.util.spec_from_file_location("harness._core_checked", so)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["harness._core_checked"] = mod
    spec.loader.exec_module(mod)
    from harness.checked import fault_names, run_checked
    from harness.faults import fault_config
    from harness.mutate import baseline

    base = baseline(seeds=tuple(range(1, seeds + 1)))  # also runs each catalogue fault once
    if faults:
        for name in fault_names():
            for s in range(1, seeds + 1):
                run_checked(fault_config(name, s), fault=name)
    print(json.dumps({"runs": base.runs, "failures": base.failures}))


def gcov(objdir: Path) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in PROTOCOL:
        gcda = list(objdir.rglob(name.replace(".c", ".gcda")))
        if not gcda:
            continue
        res = subprocess.run(["gcov", "-t", "-f", "-o", str(gcda[0].parent), str(ROOT / "cffi_src/src" / name)],
                             capture_output=True, text=True, cwd=objdir)
        lines, covered, uncovered = 0, 0, []
        func = ""
        by_func: dict[str, list[int]] = {}
        for row in res.stdout.splitlines():
            m = re.match(r"\s*([^:]+):\s*(\d+):(.*)", row)
            if not m:
                continue
            count, lno, text = m.group(1).strip(), int(m.group(2)), m.group(3)
            fm = re.match(r"^[A-Za-z_][^=;(]*?\b([A-Za-z_][A-Za-z_0-9]*)\s*\(", text)
            if fm and not text.rstrip().endswith(";") and not text.startswith("#"):
                func = fm.group(1)
            if count == "-":
                continue
            lines += 1
            if count.startswith("#####") or count.startswith("====="):
                uncovered.append(lno)
                by_func.setdefault(func, []).append(lno)
            else:
                covered += 1
        out[name] = {"lines": lines, "covered": covered,
                     "percent": round(100.0 * covered / lines, 1) if lines else 0.0,
                     "uncovered_by_function": by_func}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lines", action="store_true", help="list the uncovered line numbers too")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), a.child[2] == "1")
        return
    with tempfile.TemporaryDirectory(prefix="cxl-cov-") as tmp:
        so = build(Path(tmp))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        res = subprocess.run([sys.executable, __file__, "--child", str(so), str(a.seeds),
                              "1" if a.faults else "0"], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.exit(f"model runs failed: {res.stderr.strip().splitlines()[-1:]}")
        runs = json.loads(res.stdout.strip().splitlines()[-1])
        cov = gcov(Path(tmp))
    total = sum(int(str(v["lines"])) for v in cov.values())
    hit = sum(int(str(v["covered"])) for v in cov.values())
    if a.json:
        print(json.dumps({"runs": runs, "files": cov, "lines": total, "covered": hit}, indent=2))
        return
    print(f"model runs: {runs['runs']} fault-free (+ one run per catalogue fault"
          f"{', then every fault per seed' if a.faults else ''}); failures: {len(runs['failures'])}")
    for name, v in cov.items():
        print(f"{name:20} {v['covered']:5}/{v['lines']:<5} lines  {v['percent']:5.1f}%")
        funcs = v["uncovered_by_function"]
        assert isinstance(funcs, dict)
        for f, lns in sorted(funcs.items(), key=lambda kv: -len(kv[1])):
            shown = f" {lns}" if a.lines else ""
            print(f"    {len(lns):4} uncovered in {f or '?'}{shown}")
    print(f"protocol code: {hit}/{total} lines ({100.0 * hit / max(total, 1):.1f}%)")


if __name__ == "__main__":
    main()
