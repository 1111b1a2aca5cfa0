"""The core's numbers come from the core: each enum of harness.native has exactly the
constants the compiled binding defines, and the limits match what the core accepts."""

from __future__ import annotations

import ast
from enum import Enum
from pathlib import Path

import pytest

from harness import native
from harness.checked import agent_name
from harness.errors import ConfigError
from harness.log import LogConfig, layout_size

ENUMS: list[tuple[type[Enum], str]] = [
    (native.Role, "CXL_ROLE_"), (native.Flag, "CXL_F_"), (native.Rec, "CXL_REC_"),
    (native.LossReason, "CXL_LOSS_"), (native.RoleKind, "CXL_KIND_"), (native.Backend, "CXL_BACKEND_"),
    (native.Severity, "CXL_SEVERITY_"), (native.GapPolicy, "CXL_GAP_"), (native.OrderKind, "CXL_ORDER_"),
]


@pytest.mark.parametrize(("enum", "prefix"), ENUMS, ids=lambda x: getattr(x, "__name__", x))
def test_enum_is_the_c_constants(enum: type[Enum], prefix: str) -> None:
    members = {m.name: int(m.value) for m in enum.__members__.values()}
    assert members == native.c_names(prefix)


def test_trace_ops_are_the_checked_builds() -> None:
    ops = native.op_codes()
    assert ops["store"] != ops["fence"] and len(set(ops.values())) == len(ops) >= 10
    assert {k.upper(): v for k, v in ops.items()} == native.c_names("CXL_OP_", checked=True)


def test_limits_are_what_the_core_enforces() -> None:
    lim = native.LIMITS
    assert layout_size(LogConfig(brokers=lim.max_brokers, subscribers=lim.max_subscribers, total_bytes=1 << 20))
    with pytest.raises(ConfigError):
        LogConfig(brokers=lim.max_brokers + 1)
    with pytest.raises(ConfigError):
        LogConfig(subscribers=lim.max_subscribers + 1)


def test_latency_buckets_are_increasing_and_exact_below_32() -> None:
    lows = [native.lat_bucket_low(i) for i in range(native.LIMITS.lat_buckets + 1)]
    assert lows[:32] == list(range(32))
    assert all(a < b for a, b in zip(lows, lows[1:]))
    assert lows[48] == 2 * lows[32]  # 16 buckets per power of two


def test_agent_names_from_the_core() -> None:
    assert agent_name(0) == "publisher 0"
    assert agent_name(65) == "scanner of broker 1"
    assert agent_name(96) == "sequencer"
    assert agent_name(101) == "subscriber 1"
    assert agent_name(99) == "agent 99" and agent_name(-1) == "unknown agent"


# ------------------------------------------------------------------------------------------
# harness.native is the one door to the C core

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = ("harness._core", "harness._core_checked")


def binding_uses(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` touches the cffi binding itself: imports cffi or a build of the core
    (also by name, as importlib or sys.modules would), names ``_core``/``_core_checked``, or
    reads the ``lib``/``ffi`` of anything (a Native, a loaded module), also through getattr.
    One line per use, ``file:line: what``."""
    out: list[str] = []

    def hit(node: ast.AST, what: str) -> None:
        out.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("cffi", "_cffi_backend") or a.name in CORE_MODULES:
                    hit(node, f"imports {a.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.split(".")[0] in ("cffi", "_cffi_backend") or mod in CORE_MODULES:
                hit(node, f"imports from {mod}")
            for a in node.names:
                if f"{mod}.{a.name}" in CORE_MODULES:
                    hit(node, f"imports {mod}.{a.name}")
        elif isinstance(node, ast.Attribute) and node.attr in ("lib", "ffi", "_core", "_core_checked"):
            hit(node, f"reads .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("_core", "_core_checked"):
            hit(node, f"names {node.id}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and any(m in node.value for m in CORE_MODULES) and len(node.value) < 40:
            hit(node, f"names the module {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in ("lib", "ffi"):
            hit(node, f"getattr(..., {node.args[1].value!r})")
    return out


def test_only_harness_native_touches_the_binding() -> None:
    """Every call into the C core, every C allocation goes through harness.native: no other
    harness module imports cffi or a build of the core, or reads a ``lib``/``ffi``."""
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("harness", "native"):
            continue
        found += binding_uses(path.read_text(encoding="utf-8"), str(rel))
    assert found == [], "direct use of the C binding outside harness/native/ (add a typed call " \
        "to the harness.native module of that concern instead):\n" + "\n".join(found)


PLANTED = '''
import importlib
import cffi
from harness._core import ffi
from harness import _core_checked
from harness.native import load

def f(region):
    n = load()
    n.lib.cxl_now_ns()
    buf = region.native.ffi.new("char[]", 8)
    lib = getattr(importlib.import_module("harness._core"), "lib")
    return getattr(n, "ffi")
'''


def test_the_binding_check_sees_each_kind_of_direct_use() -> None:
    uses = binding_uses(PLANTED, "planted.py")
    assert [u.split(": ", 1)[1] for u in uses if ":3:" in u] == ["imports cffi"]
    whats = "\n".join(uses)
    for want in ("planted.py:4: imports from harness._core", "planted.py:5: imports harness._core_checked",
                 "planted.py:10: reads .lib", "planted.py:11: reads .ffi",
                 "planted.py:12: names the module 'harness._core'", "planted.py:12: getattr(..., 'lib')",
                 "planted.py:13: getattr(..., 'ffi')"):
        assert want in whats, (want, uses)
    # what the harness does instead passes: a typed call of the native package
    assert binding_uses("from harness.native import bench\n\ndef f(r):\n"
                        "    return bench.now_ns(r.native)\n") == []
