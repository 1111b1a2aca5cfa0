"""The main job's figures in other tools' formats: pyperf (``pyperf.json``) and
pytest-benchmark (``benchmark.json``, readable by ``pytest-benchmark compare``)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import benchmarks
from harness.log import LogResult
from harness.report.rundir import jsonable

PYPERF_FILENAME = "pyperf.json"
BENCHMARK_FILENAME = "benchmark.json"


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
        text: str = path.read_text(encoding="utf-8")
        return text


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
            "extra_info": jsonable(bench.get("extra_info", {})),
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(bench["data"]),
                        "max_time": 0.0, "min_time": 0.0, "warmup": False},
            "stats": as_dict,
        })
    try:
        commit = commit_info("cxl-harness")
    except Exception as exc:  # noqa: BLE001 - reported in the file, as pytest-benchmark does
        commit = {"error": f"{type(exc).__name__}: {exc}"}
    return {"machine_info": jsonable(machine_info()),
            "commit_info": jsonable(commit), "benchmarks": out,
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
