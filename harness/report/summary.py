"""The run summary (``summary.json``): its data model, JSON schema, loading and validation.

A run of the harness writes one ``summary.json`` next to ``pyperf.json`` and
``benchmark.json``; :mod:`harness.report.render` turns it into the HTML report. The file
format is ``cxl-harness-summary/2``:

``schema``
    The literal ``"cxl-harness-summary/2"`` (required).
``meta``
    Who ran what, where: ``started``/``finished`` (ISO 8601), ``host``, ``kernel``, ``cpu``,
    ``flush_instruction``, ``package_version``, ``git_revision``, ``command``.
``verdict``
    ``ok`` (required), ``failed`` (names of the items that failed; each should match the
    ``id`` or ``name`` of a check, target, calibration item or fault), ``summary`` (one line).
``device``
    Memory back-end: ``backend``, ``path``, ``size_bytes``, ``numa_node``,
    ``discovery_reason`` (prose) and ``discovery`` (the raw discovery record).
``profile``
    Hardware profile: ``name``, ``description``, ``coherence``, ``injected`` (the device
    model's target costs), and on an emulated profile ``emulation_error``
    (``over_all_stated_figures_pct``, ``over_host_reachable_figures_pct``: mean absolute %
    error over every stated figure and over those the host can reach; ``stated_figures``,
    ``host_limited_figures``).
``calibration``
    Device characterisation, one item per measurement: ``name``, ``unit``, ``measured``
    (``median``, ``min``, ``max``, ``runs``, ``interval`` -- the 95% interval of the median --
    and its ``coverage``), ``expected`` (``value``, ``tolerance_pct``, ``kind``: ``target``
    of the device model or ``expected`` figure of a real device; or null), ``status``
    (``pass`` | ``fail`` | ``no-expectation``: the median within the tolerance), ``error_pct``,
    ``verdict`` (``MET`` | ``HOST-LIMITED`` | ``MISSED`` | ``INCONCLUSIVE``, decided on the
    intervals) with ``verdict_reason``, and ``host_capability`` (``median``, ``interval``,
    ``n``, ``coverage``: the same figure with the model padding nothing; or null).
``checks``
    Every check: ``id``, ``name``, ``group`` (``ordering`` | ``flush-fence`` | ``faults`` |
    ``targets``), ``ok``, ``detail``, ``counterexamples`` (a list of JSON objects).
``runs``
    One item per benchmark run: ``label``, ``order``, ``variant``, ``brokers``,
    ``messages_published``, ``messages_delivered``, ``throughput_mib_s``, ``messages_per_s``,
    ``batches_per_s``, ``elapsed_s``, ``latency_ns`` (``p50``, ``p99``, ``p999``), optional
    ``latency_cdf`` (``[[ns, fraction], ...]``, fraction ascending in [0, 1]) and ``region``.
``ablations``
    ``name``, ``x_label``, ``unit``, ``series`` (``label``, ``x``, ``y`` (medians), optional
    ``interval``: the 95% interval ``[low, high]`` of each point's median, same unit as ``y``,
    drawn as the error bar). ``x`` values are numbers (drawn as lines) or strings (grouped bars).
``targets``
    ``name``, ``kind`` (``ratio`` | ``absolute``), ``verdict`` (``MET`` | ``MISSED`` |
    ``INCONCLUSIVE``), ``reason``, ``measured`` (the median, null when not measured),
    ``interval`` (95% ``[low, high]`` or null), ``n``, ``bound``, ``comparison`` (``>=`` |
    ``<=``), ``ok`` (verdict is MET), ``unit``, optional ``description`` and ``samples`` (what
    the interval was computed from; ``--compare`` tests a change on them).
``faults``
    The fault catalogue: ``name``, ``caught``, ``by`` (check/rule id), ``diagnostic``.
``hosts`` (optional)
    A multi-host run (``--hosts``): ``hosts`` (per host: ``name``, ``gateway``, ``device``,
    ``roles``, ``identity``, figures), ``failures``, ``timings_s``; see harness/hosts/report.py.
``mutation`` (optional)
    The mutation score, when the run computed it (full runs; see harness/report/mutation.py):
    ``source``, ``sites`` (``sites``, ``mutants``, ``killed``, ``equivalent``, ``fault_only``,
    ``survived``, ``unreached``, ``score``, ``seconds``, ``configs``, ``baseline_runs``,
    ``survivors``, ``equivalents``; or null), ``patches`` (``mutants``, ``killed``,
    ``equivalent``, ``survived``, ``crashed``, ``hung``, ``seconds``, ``outcomes``; or null),
    ``counterexamples`` (``fault``, ``target``, ``steps``, ``original_steps``, ``then``,
    ``story``: the shortest counterexample of each caught catalogue fault).
``files``
    Raw files written next to the summary, by role (``summary``, ``pyperf``, ``benchmark``),
    as paths relative to the summary's directory.

Every section except ``schema`` and ``verdict`` may be missing; :func:`normalize_summary`
fills it with an empty value so the renderer can rely on every key. Unknown keys are kept
(forward compatibility) but not rendered.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, TypedDict, cast

from harness.errors import HarnessError
from harness.results import CHECK_GROUPS as CHECK_GROUPS

REPORT_FILENAME = "index.html"
SCHEMA_ID = "cxl-harness-summary/2"
PREVIOUS_SCHEMA_ID = "cxl-harness-summary/1"  # read, upgraded on load (for --compare)
SUMMARY_FILENAME = "summary.json"

CALIBRATION_STATUSES: tuple[str, ...] = ("pass", "fail", "no-expectation")
CALIBRATION_VERDICTS: tuple[str, ...] = ("MET", "HOST-LIMITED", "MISSED", "INCONCLUSIVE")


class SummaryError(HarnessError):
    """A run summary cannot be read or does not follow ``cxl-harness-summary/2``."""


# --------------------------------------------------------------------------- data model


class Meta(TypedDict, total=False):
    started: str
    finished: str
    host: str
    kernel: str
    cpu: str
    flush_instruction: str
    package_version: str
    git_revision: str
    command: str
    git_dirty: bool
    python: str
    memory_gib: float | None
    numa_nodes: int | None
    quick: bool
    machine_state: dict[str, Any]
    warnings: list[str]


class Verdict(TypedDict):
    ok: bool
    failed: NotRequired[list[str]]
    summary: NotRequired[str]
    inconclusive: NotRequired[list[str]]
    strict: NotRequired[bool]


class Device(TypedDict, total=False):
    backend: str
    path: str | None
    size_bytes: int | None
    numa_node: int | None
    discovery_reason: str
    discovery: dict[str, Any]


class EmulationError(TypedDict, total=False):
    over_all_stated_figures_pct: float | None
    over_host_reachable_figures_pct: float | None
    stated_figures: list[str]
    host_limited_figures: list[str]


class Profile(TypedDict, total=False):
    name: str
    description: str
    coherence: str
    injected: dict[str, Any]
    emulation_error: EmulationError


class Measured(TypedDict, total=False):
    median: Required[float]
    min: float
    max: float
    runs: int
    interval: list[float]  # 95% interval of the median [lo, hi]
    coverage: float


class Expected(TypedDict, total=False):
    value: Required[float]
    tolerance_pct: float
    kind: Literal["target", "expected"]


class HostCapability(TypedDict):
    median: float
    interval: list[float]
    n: int
    coverage: float


class CalibrationItem(TypedDict):
    name: str
    unit: str
    measured: Measured
    expected: NotRequired[Expected | None]
    status: Literal["pass", "fail", "no-expectation"]
    error_pct: NotRequired[float]
    verdict: NotRequired[Literal["MET", "HOST-LIMITED", "MISSED", "INCONCLUSIVE"] | None]
    verdict_reason: NotRequired[str]
    host_capability: NotRequired[HostCapability | None]


class Check(TypedDict):
    id: str
    name: str
    group: Literal["ordering", "flush-fence", "faults", "targets"]
    ok: bool
    detail: NotRequired[str]
    counterexamples: NotRequired[list[dict[str, Any]]]


class Latency(TypedDict, total=False):
    p50: float
    p99: float
    p999: float


class Run(TypedDict):
    label: str
    order: int
    variant: str
    placement: NotRequired[dict[str, Any]]
    brokers: NotRequired[int]
    messages_published: NotRequired[int]
    messages_delivered: NotRequired[int]
    throughput_mib_s: float
    messages_per_s: NotRequired[float]
    batches_per_s: NotRequired[float]
    elapsed_s: NotRequired[float]
    latency_ns: NotRequired[Latency]
    latency_cdf: NotRequired[list[list[float]]]
    region: NotRequired[dict[str, Any]]


class Series(TypedDict):
    label: str
    x: list[float | str]
    y: list[float]
    interval: NotRequired[list[list[float]] | None]


class Ablation(TypedDict):
    name: str
    x_label: NotRequired[str]
    unit: NotRequired[str]
    series: list[Series]


class Target(TypedDict):
    name: str
    kind: Literal["ratio", "absolute"]
    verdict: Literal["MET", "MISSED", "INCONCLUSIVE"]
    reason: NotRequired[str]
    measured: float | None
    interval: NotRequired[list[float] | None]
    n: NotRequired[int]
    bound: float
    comparison: Literal[">=", "<="]
    ok: bool
    unit: NotRequired[str]
    description: NotRequired[str]
    samples: NotRequired[list[float]]


class Fault(TypedDict):
    name: str
    caught: bool
    by: NotRequired[str | None]
    diagnostic: NotRequired[str]


class Summary(TypedDict):
    schema: str
    meta: Meta
    verdict: Verdict
    device: Device
    profile: Profile
    calibration: list[CalibrationItem]
    checks: list[Check]
    runs: list[Run]
    ablations: list[Ablation]
    targets: list[Target]
    faults: list[Fault]
    files: dict[str, str]
    hosts: NotRequired[dict[str, Any]]  # a multi-host run only (harness/hosts/report.py)
    mutation: NotRequired[dict[str, Any]]  # when the run computed it (harness/report/mutation.py)


# --------------------------------------------------------------------------- JSON schema

# The format, written once: summary.schema.json next to this module (the TypedDicts above
# are checked against it by tests/test_summary_schema.py).
SUMMARY_SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).with_name("summary.schema.json")).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema  # on first validation: the command line starts without it

    return jsonschema.Draft202012Validator(SUMMARY_SCHEMA)

_DEFAULT_SECTIONS: dict[str, Any] = {
    "meta": {},
    "device": {},
    "profile": {},
    "calibration": [],
    "checks": [],
    "runs": [],
    "ablations": [],
    "targets": [],
    "faults": [],
    "files": {},
}


def _where(path: Any) -> str:
    """``deque(['runs', 0, 'latency_ns'])`` -> ``runs[0].latency_ns``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def schema_errors(data: Any) -> list[str]:
    """Every way ``data`` breaks ``cxl-harness-summary/2``, one readable line each
    (``runs[0].throughput_mib_s: 'fast' is not of type 'number'``); empty when valid."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [f"{_where(err.absolute_path)}: {err.message}" for err in errors]
    lines.extend(_semantic_errors(data) if not lines else [])
    return lines


def _semantic_errors(data: dict[str, Any]) -> list[str]:
    """Rules the JSON schema cannot express: finite numbers, matching series lengths,
    a monotone CDF, unique check ids."""
    lines: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            lines.append(f"{where}: {value!r} is not a finite number")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk(data, "")
    for a_index, ablation in enumerate(data.get("ablations", [])):
        for s_index, series in enumerate(ablation["series"]):
            where = f"ablations[{a_index}].series[{s_index}]"
            n_x, n_y = len(series["x"]), len(series["y"])
            if n_x != n_y:
                lines.append(f"{where}: x has {n_x} values but y has {n_y}")
            interval = series.get("interval")
            if interval is not None and len(interval) != n_y:
                lines.append(f"{where}: interval has {len(interval)} values but y has {n_y}")
    for r_index, run in enumerate(data.get("runs", [])):
        cdf = run.get("latency_cdf") or []
        for p_index in range(1, len(cdf)):
            if cdf[p_index][0] < cdf[p_index - 1][0] or cdf[p_index][1] < cdf[p_index - 1][1]:
                lines.append(
                    f"runs[{r_index}].latency_cdf[{p_index}]: {cdf[p_index]} goes below the "
                    f"previous point {cdf[p_index - 1]}; a CDF never decreases"
                )
                break
    seen: set[str] = set()
    for c_index, check in enumerate(data.get("checks", [])):
        if check["id"] in seen:
            lines.append(f"checks[{c_index}].id: {check['id']!r} is used by an earlier check")
        seen.add(check["id"])
    return lines


def normalize_summary(data: dict[str, Any]) -> Summary:
    """A deep copy of a *valid* summary with every optional section and per-item optional
    key filled in, so templates and charts can index it without guards."""
    out: dict[str, Any] = copy.deepcopy(data)
    for key, default in _DEFAULT_SECTIONS.items():
        if out.get(key) is None:
            out[key] = copy.deepcopy(default)
    verdict = out["verdict"]
    verdict.setdefault("failed", [])
    verdict.setdefault("summary", "")
    verdict.setdefault("inconclusive", [])
    verdict.setdefault("strict", False)
    for item in out["calibration"]:
        item.setdefault("expected", None)
        item.setdefault("verdict", None)
        item.setdefault("host_capability", None)
    for check in out["checks"]:
        check.setdefault("detail", "")
        check.setdefault("counterexamples", [])
    for run in out["runs"]:
        run.setdefault("latency_ns", {})
        run.setdefault("latency_cdf", [])
        run.setdefault("region", {})
        run.setdefault("placement", {})
    for ablation in out["ablations"]:
        ablation.setdefault("x_label", "")
        ablation.setdefault("unit", "")
        for series in ablation["series"]:
            series.setdefault("interval", None)
    for target in out["targets"]:
        target.setdefault("interval", None)
        target.setdefault("unit", "")
        target.setdefault("reason", "")
        target.setdefault("n", 0)
        target.setdefault("description", "")
    for fault in out["faults"]:
        fault.setdefault("by", None)
        fault.setdefault("diagnostic", "")
    return cast(Summary, out)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A ``cxl-harness-summary/1`` document in the /2 shape: a target's ``target`` becomes its
    ``bound``, its verdict is MET or MISSED from ``ok`` (v1 judged medians, so no interval is
    known), and a series' symmetric ``spread`` becomes an interval around ``y``."""
    out = copy.deepcopy(data)
    out["schema"] = SCHEMA_ID
    for t in out.get("targets") or []:
        if isinstance(t, dict):
            t["bound"] = t.pop("target", 0.0)
            t.pop("spread", None)
            t.setdefault("verdict", "MET" if t.get("ok") else "MISSED")
            t.setdefault("reason", "judged on the median alone (summary format 1)")
    for ab in out.get("ablations") or []:
        for series in (ab.get("series") or []) if isinstance(ab, dict) else []:
            spread = series.pop("spread", None) if isinstance(series, dict) else None
            if spread is not None and isinstance(series.get("y"), list):
                series["interval"] = [[y - e, y + e] for y, e in zip(series["y"], spread)]
    return out


def validate_summary(data: Any, *, source: str = "summary") -> Summary:
    """Check ``data`` against ``cxl-harness-summary/2`` and return it normalised.

    Raises :class:`SummaryError` listing every problem (path inside the document and what
    is wrong), prefixed by ``source`` (usually the file name)."""
    if not isinstance(data, dict):
        raise SummaryError(
            f"{source}: a run summary is a JSON object, got {type(data).__name__}",
            f"write a {SCHEMA_ID} object (see harness/report/summary.py)",
        )
    if data.get("schema") == PREVIOUS_SCHEMA_ID:
        data = upgrade_v1(data)
    if "schema" in data and data["schema"] != SCHEMA_ID:
        raise SummaryError(
            f"{source}: schema is {data['schema']!r}, this harness reads {SCHEMA_ID!r}",
            "re-run the harness to regenerate the summary, or render it with the version that wrote it",
        )
    problems = schema_errors(data)
    if problems:
        shown = "; ".join(problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise SummaryError(
            f"{source}: not a valid {SCHEMA_ID} summary: {shown}{more}",
            "fix the listed fields; the format is documented in harness/report/summary.py",
        )
    return normalize_summary(data)


def load_summary(path: Path) -> Summary:
    """Read and validate a ``summary.json``; every failure is a :class:`SummaryError`
    that names the file and the fix."""
    if not path.exists():
        raise SummaryError(
            f"{path}: no such file",
            f"point at a run directory that holds {SUMMARY_FILENAME} (a harness run writes it)",
        )
    if not path.is_file():
        raise SummaryError(f"{path}: not a regular file", f"pass the run directory or its {SUMMARY_FILENAME}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SummaryError(f"{path}: cannot read: {exc}", "check the file's permissions and encoding") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SummaryError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            "the run was probably interrupted while writing it; re-run the harness",
        ) from exc
    return validate_summary(data, source=str(path))


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    """Validate ``summary`` and write it as stable, human-diffable JSON; returns ``path``."""
    validate_summary(summary, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
