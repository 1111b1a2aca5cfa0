#!/usr/bin/env python3
"""Read and check times and peak memory of the history checker on a generated history.

    python scripts/history_perf.py EVENTS [--runs N] [--file PATH] [--keep]

Generates a valid Order 2 history of about EVENTS events (tests/test_history_perf.py's
generator; reused from --file when it exists), then runs ``read_history`` + ``check_history``
N times, each in a fresh interpreter so that the peak resident memory (ru_maxrss) is that of
one check alone. Prints each run and the median and range of read, check and total seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_RUN = r"""
import json, resource, sys, time
from harness.history import check_history, read_history
t0 = time.perf_counter()
h = read_history(sys.argv[1])
t1 = time.perf_counter()
rep = check_history(h)
t2 = time.perf_counter()
assert rep.ok, rep.failed_ids()
print(json.dumps({"events": h.events, "read_s": t1 - t0, "check_s": t2 - t1,
                  "total_s": t2 - t0,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=int)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--file", type=Path, default=None, help="history file to reuse or create")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from test_history_perf import generate  # noqa: E402

    tmp = None
    path = args.file
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "history.jsonl"
    if not path.exists():
        generate(path, args.events)
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", ONE_RUN, str(path)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        r = json.loads(out)
        runs.append(r)
        print(f"events={r['events']} read={r['read_s']:.2f}s check={r['check_s']:.2f}s "
              f"total={r['total_s']:.2f}s peak={r['peak_mib']:.0f} MiB", flush=True)
    for key in ("read_s", "check_s", "total_s", "peak_mib"):
        vals = [r[key] for r in runs]
        print(f"{key:>9}: median {statistics.median(vals):.2f}, range "
              f"{min(vals):.2f}-{max(vals):.2f} over {len(vals)} runs")
    if tmp is not None and not args.keep:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
