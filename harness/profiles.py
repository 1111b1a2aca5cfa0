"""Hardware profiles: YAML files in ``hw_profiles/`` validated against ``schema.json``.

A profile says which memory back-end to use, whether memory is coherent, what the emulated
device costs (its ``device_model``: target costs the seam pads every operation up to), what a
real device should measure like, and the throughput targets.
Every problem is reported as ``profile FILE: KEY.PATH: what is wrong (what is allowed)``.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from harness.errors import ProfileError, why_not_a_file

if TYPE_CHECKING:
    import jsonschema

DEFAULT_PROFILE = "ci"
SCHEMA_FILE = "schema.json"

BackendName = Literal["emulated", "file", "devdax", "numa", "auto"]
Coherence = Literal["coherent", "noncoherent-model", "noncoherent-hw"]


@dataclass(frozen=True)
class MemoryConfig:
    backend: BackendName
    size_mib: int
    device: str | None = None  # /dev/daxN.M; None = auto (discovery chooses)
    node: int | None = None  # NUMA node; None = auto
    path: str | None = None  # file back-end only
    hugepages: bool = False
    allow_destructive: bool = False  # consent to overwrite a real device


@dataclass(frozen=True)
class DeviceModel:
    """What an operation costs on the emulated device (target costs, not added costs).

    The seam measures each real operation and spins for the rest of its target, so the device
    costs the same on any host that is faster than it; where the host alone is slower, the
    shortfall is counted (see ``cxl_seam.h``). All zero = nothing modelled (``ci``).
    """

    load_ns: float = 0.0  # first line read after an invalidate
    flush_fence_ns: float = 0.0  # flush + fence of one line
    write_bw_gbps: float = 0.0  # write channel (copies into the region), shared by all agents
    read_bw_gbps: float = 0.0  # read channel (lines read after an invalidate)
    # (utilisation, latency multiplier) points, piecewise linear; () = no load dependence
    latency_curve: tuple[tuple[float, float], ...] = ()
    window_us: float = 10.0  # utilisation is measured over this window
    tolerance_pct: float = 10.0  # characterisation: each figure within this of its target
    host_flush: bool = True  # also issue the host's flush (False: anonymous emulated memory)
    invalidate_flushes: bool = False  # non-coherent hardware: invalidate = flush the line

    @property
    def any(self) -> bool:
        return any(v > 0 for v in (self.load_ns, self.flush_fence_ns, self.write_bw_gbps,
                                   self.read_bw_gbps))

    def fence_ns(self, lines: int) -> float:
        """Target of one fence closing ``lines`` flushes: the first line's latency, then each
        further line in flight behind it at the link rate (64 B at the write bandwidth)."""
        per_line = 64.0 / self.write_bw_gbps if self.write_bw_gbps > 0 else 0.0
        return self.flush_fence_ns + (lines - 1) * per_line

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_curve"] = [list(p) for p in self.latency_curve]
        return d


@dataclass(frozen=True)
class Expectation:
    value: float
    tolerance_pct: float

    def within(self, measured: float) -> bool:
        """True if *measured* is within tolerance_pct percent of value."""
        return abs(measured - self.value) <= self.value * self.tolerance_pct / 100.0


@dataclass(frozen=True)
class Expected:
    load_latency_ns: Expectation | None = None
    flush_fence_ns: Expectation | None = None
    copy_bw_gbps: Expectation | None = None
    nt_copy_bw_gbps: Expectation | None = None


@dataclass(frozen=True)
class RatioTargets:
    """Minimum ratios, both sides measured in the same run."""

    order2_vs_order0: float | None = None
    order2_vs_nt_copy: float | None = None
    order5_vs_order2: float | None = None
    per_scanner_vs_mutex: float | None = None
    fence_amortisation: float | None = None


@dataclass(frozen=True)
class AbsoluteTargets:
    order2_mib_s: float | None = None  # minimum
    batches_per_s: float | None = None  # minimum
    p99_commit_latency_us: float | None = None  # maximum


@dataclass(frozen=True)
class Targets:
    ratios: RatioTargets = RatioTargets()
    absolute: AbsoluteTargets = AbsoluteTargets()


@dataclass(frozen=True)
class Order5Workload:
    """How the profile's Order 5 runs are made (see LogConfig's Order 5 fields)."""

    client_spread: int | None = None  # None: each client over every broker
    gap_policy: str = "markers"
    gap_timeout_ms: float = 1000.0
    hold_cap: int = 0


@dataclass(frozen=True)
class Workload:
    msg_size: int
    batch_bytes: int
    brokers: int
    total_mib: int
    epoch_us: int
    order5: Order5Workload = Order5Workload()

    def order5_settings(self) -> dict[str, Any]:
        """LogConfig fields of an Order 5 run of this workload."""
        o = self.order5
        return {"order": 5, "client_spread": o.client_spread or self.brokers,
                "gap_policy": o.gap_policy, "gap_timeout_ms": o.gap_timeout_ms, "hold_cap": o.hold_cap}


@dataclass(frozen=True)
class Measurement:
    """How benchmark samples are taken (see harness.stats.Plan)."""

    min_sample_ms: float = 200.0
    precision_pct: float = 3.0
    min_pairs: int = 6
    max_pairs: int = 40
    budget_s: float = 30.0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    memory: MemoryConfig
    coherence: Coherence
    device_model: DeviceModel
    expected: Expected
    targets: Targets
    workload: Workload
    source: str  # the file it was loaded from
    measurement: Measurement = Measurement()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Locating profiles.


def profile_dir() -> Path:
    """The directory of shipped profiles: package data when installed, else the repo's."""
    try:
        resources = importlib.resources.files("harness.hw_profiles")
    except ModuleNotFoundError:
        resources = None
    if isinstance(resources, Path) and (resources / SCHEMA_FILE).is_file():
        return resources
    return Path(__file__).resolve().parent.parent / "hw_profiles"


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    path = profile_dir() / SCHEMA_FILE
    try:
        return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ProfileError(
            f"profile schema {path} cannot be read: {exc}", "reinstall cxl-harness"
        ) from exc


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            why = why_not_a_file(path)
            raise ProfileError(
                f"profile file {text} not found" if why == "does not exist" else f"profile file {text} {why}",
                f"pass an existing .yaml file or one of: {', '.join(list_profiles())}",
            )
        return path
    candidate = profile_dir() / f"{text}.yaml"
    if candidate.is_file():
        return candidate
    raise ProfileError(
        f"unknown profile {text!r}; available: {', '.join(list_profiles())}",
        "pass one of these names or a path to a profile .yaml file",
    )


# ---------------------------------------------------------------------------------------------
# Validation.

_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    dict: "mapping",
    list: "list",
}


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _key(path: Iterable[object], leaf: object | None = None) -> str:
    parts = [str(p) for p in path] + ([str(leaf)] if leaf is not None else [])
    return ".".join(parts) if parts else "(top level)"


def _format(err: jsonschema.ValidationError) -> list[str]:
    """One or more 'key.path: problem' lines for a schema error."""
    where, value, rule = err.absolute_path, err.instance, err.validator
    schema: Mapping[str, Any] = err.schema if isinstance(err.schema, Mapping) else {}
    rule_value: Any = err.validator_value
    expected = schema.get("description")
    if rule == "required" and isinstance(value, Mapping):
        return [f"{_key(where, k)}: required key is missing" for k in rule_value if k not in value]
    if rule == "additionalProperties" and isinstance(value, Mapping):
        allowed = sorted(schema.get("properties", {}))
        return [
            f"{_key(where, k)}: unknown key (allowed here: {', '.join(allowed)})"
            for k in value
            if k not in allowed
        ]
    if rule == "type":
        types = rule_value if isinstance(rule_value, list) else [rule_value]
        want = " or ".join("mapping" if t == "object" else str(t) for t in types)
        return [f"{_key(where)}: expected {want}, got {_type_name(value)} {value!r}"]
    if rule == "enum":
        return [f"{_key(where)}: {value!r} is not one of {list(rule_value)}"]
    if rule == "minimum":
        return [f"{_key(where)}: {value!r} is below the minimum {rule_value}"]
    if rule == "exclusiveMinimum":
        return [f"{_key(where)}: {value!r} must be greater than {rule_value}"]
    if rule == "maximum":
        return [f"{_key(where)}: {value!r} is above the maximum {rule_value}"]
    if rule in ("pattern", "minLength") and expected:
        return [f"{_key(where)}: {value!r} is not valid, expected {expected}"]
    return [f"{_key(where)}: {err.message}"]


def _semantic(doc: Mapping[str, Any]) -> list[str]:
    """Cross-field rules the schema cannot say clearly. *doc* already matches the schema."""
    problems = []
    memory = doc["memory"]
    backend = memory["backend"]
    uses = {"device": ("devdax", "auto"), "node": ("numa", "auto"), "path": ("file",)}
    for key, backends in uses.items():
        if memory.get(key) is not None and backend not in backends:
            problems.append(
                f"memory.{key}: {memory[key]!r} is only used with backend "
                f"{' or '.join(map(repr, backends))}, not {backend!r}"
            )
    if backend == "file" and memory.get("path") is None:
        problems.append("memory.path: required when memory.backend is 'file'")
    workload = doc["workload"]
    model = doc.get("device_model", {})
    if backend in ("devdax", "numa") and any(v for k, v in model.items() if k != "tolerance_pct"):
        problems.append(f"device_model: a {backend!r} device costs what it costs; a device model "
                        "is only used with backend 'emulated' or 'file' (state 'expected' figures)")
    curve = model.get("latency_curve", [])
    utils = [point[0] for point in curve]
    if any(b <= a for a, b in zip(utils, utils[1:])):
        problems.append(f"device_model.latency_curve: utilisations {utils} are not strictly "
                        "ascending (give points in order of utilisation)")
    if workload["batch_bytes"] < workload["msg_size"]:
        problems.append(
            f"workload.batch_bytes: {workload['batch_bytes']} is smaller than "
            f"workload.msg_size {workload['msg_size']} (a batch holds at least one message)"
        )
    spread = workload.get("order5", {}).get("client_spread")
    if spread is not None and (spread > workload["brokers"] or workload["brokers"] % spread):
        problems.append(f"workload.order5.client_spread: {spread} does not divide workload.brokers "
                        f"{workload['brokers']} (a client spans whole groups of brokers)")
    return problems


def _read(path: Path) -> tuple[Any, list[str]]:
    """The parsed YAML document, or problems explaining why there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"cannot read the file: {exc}"]
    import yaml  # imported when a profile is read: the CLI starts without it

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [f"YAML syntax error{where}: {problem}"]
    if doc is None:
        return None, ["(top level): file is empty, expected a mapping of profile keys"]
    if not isinstance(doc, dict):
        return None, [f"(top level): expected a mapping of profile keys, got {_type_name(doc)}"]
    return doc, []


def _problems(doc: Mapping[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    problems: list[str] = []
    for err in errors:
        for line in _format(err):
            if line not in problems:
                problems.append(line)
    return problems or _semantic(doc)


def _check(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    doc, problems = _read(path)
    if doc is None:
        return None, problems
    problems = _problems(doc)
    return (None, problems) if problems else (doc, [])


def validate_file(path: str | Path) -> list[str]:
    """Every problem in the profile at *path*, each 'profile FILE: KEY: problem'; [] if valid."""
    p = Path(path)
    return [f"profile {_display(p)}: {problem}" for problem in _check(p)[1]]


# ---------------------------------------------------------------------------------------------
# Loading.


def _opt(section: Mapping[str, Any] | None, key: str) -> float | None:
    value = (section or {}).get(key)
    return None if value is None else float(value)


def _expectation(section: Mapping[str, Any], key: str) -> Expectation | None:
    item = section.get(key)
    return None if item is None else Expectation(float(item["value"]), float(item["tolerance_pct"]))


def _build(doc: Mapping[str, Any], source: Path) -> Profile:
    mem = doc["memory"]
    node = mem.get("node")
    device = mem.get("device")
    dm = dict(doc.get("device_model", {}))
    dm["latency_curve"] = tuple((float(u), float(m)) for u, m in dm.get("latency_curve", []))
    expected = doc.get("expected", {})
    targets = doc.get("targets", {})
    ratios, absolute = targets.get("ratios"), targets.get("absolute")
    return Profile(
        name=doc["name"],
        description=doc["description"],
        memory=MemoryConfig(
            backend=mem["backend"],
            size_mib=mem["size_mib"],
            device=None if device in (None, "auto") else device,
            node=None if node in (None, "auto") else int(node),
            path=mem.get("path"),
            hugepages=mem.get("hugepages", False),
            allow_destructive=mem.get("allow_destructive", False),
        ),
        coherence=doc["coherence"],
        device_model=DeviceModel(
            **dm, invalidate_flushes=doc["coherence"] == "noncoherent-hw",
            host_flush=mem["backend"] != "emulated"),
        expected=Expected(**{k: _expectation(expected, k) for k in expected}),
        targets=Targets(
            ratios=RatioTargets(**{k: _opt(ratios, k) for k in (ratios or {})}),
            absolute=AbsoluteTargets(**{k: _opt(absolute, k) for k in (absolute or {})}),
        ),
        workload=_workload(doc["workload"]),
        source=str(source),
        measurement=_measurement(doc.get("measurement", {}), source),
    )


def _workload(doc: Mapping[str, Any]) -> Workload:
    w = dict(doc)
    w["order5"] = Order5Workload(**w.get("order5", {}))
    return Workload(**w)


def _measurement(doc: Mapping[str, Any], source: Path) -> Measurement:
    m = Measurement(**doc)
    if m.max_pairs < m.min_pairs:
        raise ProfileError(f"profile {source}: measurement.max_pairs: {m.max_pairs} is below "
                           f"min_pairs {m.min_pairs} (set max_pairs >= min_pairs)")
    return m


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> Profile:
    """Load a shipped profile by name (``ci``) or any profile file by path.

    Raises :class:`ProfileError` for an unknown name, a missing file or an invalid profile
    (all of its problems in one message).
    """
    path = _resolve(name_or_path)
    doc, problems = _check(path)
    if doc is None:
        raise ProfileError(
            f"profile {_display(path)}: " + "; ".join(problems),
            f"fix the file; allowed keys and values are in {profile_dir() / SCHEMA_FILE}",
        )
    return _build(doc, path)
