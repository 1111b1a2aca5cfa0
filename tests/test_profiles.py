"""Hardware profiles: shipped ones validate and load; malformed ones fail with precise messages."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import ProfileError
from harness.profiles import (
    DEFAULT_PROFILE,
    Expectation,
    list_profiles,
    load_profile,
    profile_dir,
    validate_file,
)

SHIPPED = ["ci", "cxl-devdax", "cxl-numa", "emulated-cxl", "emulated-cxl-pooled", "emulated-cxl-switch",
           "emulated-noncoherent"]


def base() -> dict[str, Any]:
    doc = yaml.safe_load((profile_dir() / "ci.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def write(tmp_path: Path, doc: Any, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_profile_dir_and_listing() -> None:
    assert (profile_dir() / "schema.json").is_file()
    assert list_profiles() == SHIPPED
    assert DEFAULT_PROFILE in list_profiles()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_valid(name: str) -> None:
    path = profile_dir() / f"{name}.yaml"
    assert validate_file(path) == []
    profile = load_profile(name)
    assert profile.name == name  # names match file names
    assert profile.source == str(path)
    json.dumps(profile.to_dict())


def test_ci_profile_contents() -> None:
    p = load_profile()
    assert p.name == "ci"
    assert (p.memory.backend, p.coherence, p.memory.allow_destructive) == ("emulated", "coherent", False)
    assert not p.device_model.any and p.device_model.latency_curve == ()
    assert p.targets.ratios.order2_vs_order0 == 0.97
    assert p.targets.ratios.fence_amortisation == 1.8
    assert p.targets.absolute.order2_mib_s is None
    assert 1 <= p.workload.brokers <= 8


def test_emulated_cxl_costs() -> None:
    m = load_profile("emulated-cxl").device_model
    assert (m.load_ns, m.flush_fence_ns, m.write_bw_gbps, m.read_bw_gbps) == (250, 300, 21, 26)
    assert m.any and not m.host_flush and not m.invalidate_flushes and m.tolerance_pct == 10
    # one fence closing k flushes: the first line's latency, then 64 B per further line at
    # the write bandwidth
    assert m.fence_ns(1) == 300 and m.fence_ns(4) == pytest.approx(300 + 3 * 64 / 21)
    assert m.latency_curve[0] == (0.0, 1.0) and m.latency_curve[-1][1] > 1


def test_emulated_profiles_state_device_costs() -> None:
    direct, switch, pooled = (load_profile(n).device_model for n in
                              ("emulated-cxl", "emulated-cxl-switch", "emulated-cxl-pooled"))
    assert direct.load_ns < switch.load_ns < pooled.load_ns  # each hop and the pool cost more
    assert direct.flush_fence_ns < switch.flush_fence_ns < pooled.flush_fence_ns
    assert pooled.write_bw_gbps == pooled.read_bw_gbps == 9.5
    assert load_profile("emulated-cxl-pooled").coherence == "noncoherent-model"
    for name in ("emulated-cxl", "emulated-cxl-switch", "emulated-cxl-pooled"):
        text = (profile_dir() / f"{name}.yaml").read_text()
        assert "Sources" in text  # every figure says where it comes from


def test_device_model_on_a_real_device_is_refused(tmp_path: Path) -> None:
    doc = base()
    doc["memory"] = {"backend": "numa", "node": 1, "size_mib": 64}
    doc["device_model"] = {"load_ns": 250}
    problems = validate_file(write(tmp_path, doc, "real.yaml"))
    assert any("device_model: a 'numa' device costs what it costs" in p for p in problems), problems
    doc["device_model"] = {"load_ns": 250, "latency_curve": [[0.5, 1.0], [0.2, 2.0]]}
    doc["memory"] = base()["memory"]
    problems = validate_file(write(tmp_path, doc, "curve.yaml"))
    assert any("latency_curve: utilisations [0.5, 0.2] are not strictly ascending" in p
               for p in problems), problems


def test_device_profiles() -> None:
    devdax = load_profile("cxl-devdax")
    assert devdax.memory.backend == "devdax"
    assert devdax.memory.device is None  # "auto": discovery chooses
    assert devdax.memory.allow_destructive is False
    assert devdax.targets.absolute.p99_commit_latency_us == 500
    numa = load_profile("cxl-numa")
    assert (numa.memory.backend, numa.memory.node) == ("numa", None)
    assert numa.targets.absolute.order2_mib_s is not None
    assert load_profile("emulated-noncoherent").coherence == "noncoherent-model"


def test_load_by_path_and_explicit_values(tmp_path: Path) -> None:
    doc = base()
    doc["name"] = "lab7"
    doc["memory"] = {"backend": "devdax", "device": "/dev/dax1.0", "size_mib": 64,
                     "allow_destructive": True}
    doc["expected"] = {"load_latency_ns": {"value": 300, "tolerance_pct": 10}}
    p = load_profile(write(tmp_path, doc, "lab7.yaml"))
    assert (p.memory.device, p.memory.allow_destructive, p.memory.hugepages) == ("/dev/dax1.0", True, False)
    assert p.expected.load_latency_ns == Expectation(300.0, 10.0)
    assert p.expected.copy_bw_gbps is None
    # The same file by its string path.
    assert load_profile(str(tmp_path / "lab7.yaml")) == p


def test_expectation_within() -> None:
    e = Expectation(250.0, 20.0)
    assert e.within(250) and e.within(300) and e.within(200)
    assert not e.within(301) and not e.within(199)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ProfileError) as exc:
        load_profile("h100")
    assert "unknown profile 'h100'" in str(exc.value)
    assert "available: " + ", ".join(SHIPPED) in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="profile file .*nope.yaml not found"):
        load_profile(tmp_path / "nope.yaml")


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def apply(doc: dict[str, Any]) -> None:
        for p in parents:
            doc = doc.setdefault(p, {})
        doc[leaf] = value

    return apply


def deleter(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def apply(doc: dict[str, Any]) -> None:
        for p in parents:
            doc = doc[p]
        del doc[leaf]

    return apply


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing-nested-key", deleter("memory.size_mib"), "memory.size_mib: required key is missing"),
    ("missing-top-key", deleter("coherence"), "coherence: required key is missing"),
    ("wrong-type", setter("memory.size_mib", "big"), "memory.size_mib: expected integer, got string 'big'"),
    ("bool-not-int", setter("workload.brokers", True), "workload.brokers: expected integer, got boolean True"),
    ("section-not-mapping", setter("device_model", "none"), "device_model: expected mapping, got string 'none'"),
    ("negative-latency", setter("device_model.load_ns", -5), "device_model.load_ns: -5 is below the minimum 0"),
    ("bad-curve-point", setter("device_model.latency_curve", [[0.5, 0.2]]),
     "device_model.latency_curve.0.1: 0.2 is below the minimum 1"),
    (
        "unknown-backend",
        setter("memory.backend", "dram"),
        "memory.backend: 'dram' is not one of ['emulated', 'file', 'devdax', 'numa', 'auto']",
    ),
    (
        "bad-device-path",
        setter("memory.device", "/dev/sda"),
        "memory.device: '/dev/sda' is not valid, expected a devdax path /dev/daxN.M, 'auto' or null",
    ),
    (
        "unknown-coherence",
        setter("coherence", "mesi"),
        "coherence: 'mesi' is not one of ['coherent', 'noncoherent-model', 'noncoherent-hw']",
    ),
    ("brokers-0", setter("workload.brokers", 0), "workload.brokers: 0 is below the minimum 1"),
    ("brokers-9", setter("workload.brokers", 9), "workload.brokers: 9 is above the maximum 8"),
    ("size-0", setter("memory.size_mib", 0), "memory.size_mib: 0 must be greater than 0"),
    ("negative-node", setter("memory.node", -1), "memory.node: -1 is below the minimum 0"),
    (
        "extra-nested-key",
        setter("memory.colour", "blue"),
        "memory.colour: unknown key (allowed here: allow_destructive, backend, device, hugepages,",
    ),
    ("extra-top-key", setter("turbo", True), "turbo: unknown key (allowed here: coherence, description,"),
    (
        "expectation-incomplete",
        setter("expected.load_latency_ns", {"value": 250}),
        "expected.load_latency_ns.tolerance_pct: required key is missing",
    ),
    ("ratio-zero", setter("targets.ratios.order2_vs_order0", 0), "targets.ratios.order2_vs_order0: 0 must be greater than 0"),
    ("file-without-path", setter("memory.backend", "file"), "memory.path: required when memory.backend is 'file'"),
    (
        "path-with-emulated",
        setter("memory.path", "/dev/shm/x"),
        "memory.path: '/dev/shm/x' is only used with backend 'file', not 'emulated'",
    ),
    (
        "batch-smaller-than-message",
        setter("workload.batch_bytes", 512),
        "workload.batch_bytes: 512 is smaller than workload.msg_size 1024",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_profile(tmp_path: Path, case: str, mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    doc = copy.deepcopy(base())
    mutate(doc)
    path = write(tmp_path, doc, f"{case}.yaml")
    problems = validate_file(path)
    assert problems, "expected the profile to be rejected"
    assert all(p.startswith(f"profile {path}: ") for p in problems)
    assert any(expected in p for p in problems), problems
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert expected in str(exc.value)
    assert "schema.json" in str(exc.value)  # the fix points at the schema


RAW: list[tuple[str, str, str]] = [
    ("yaml-syntax", "name: ci\nmemory: {backend: emulated\n", "YAML syntax error at line 3, column 1"),
    ("empty", "", "(top level): file is empty"),
    ("comment-only", "# nothing\n", "(top level): file is empty"),
    ("list-top", "- name: ci\n", "(top level): expected a mapping of profile keys, got list"),
    ("scalar-top", "just text\n", "(top level): expected a mapping of profile keys, got string"),
]


@pytest.mark.parametrize(("case", "text", "expected"), RAW, ids=[r[0] for r in RAW])
def test_unparseable_profile(tmp_path: Path, case: str, text: str, expected: str) -> None:
    path = write(tmp_path, text, f"{case}.yaml")
    problems = validate_file(path)
    assert len(problems) == 1 and expected in problems[0]
    assert problems[0].startswith(f"profile {path}: ")
    with pytest.raises(ProfileError, match="profile .*" + case):
        load_profile(path)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    doc = base()
    doc["memory"]["backend"] = "dram"
    doc["workload"]["brokers"] = 12
    del doc["description"]
    problems = validate_file(write(tmp_path, doc))
    assert len(problems) == 3
    joined = "\n".join(problems)
    for key in ("description: required key is missing", "memory.backend: 'dram'", "workload.brokers: 12"):
        assert key in joined


def test_message_uses_relative_path_inside_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hw").mkdir()
    doc = base()
    doc["coherence"] = "mesi"
    write(tmp_path / "hw", doc)
    monkeypatch.chdir(tmp_path)
    (problem,) = validate_file("hw/x.yaml")
    assert problem.startswith("profile hw/x.yaml: coherence: 'mesi' is not one of")
