"""The core's numbers come from the core: each enum of harness.native has exactly the
constants the compiled binding defines, and the limits match what the core accepts."""

from __future__ import annotations

from enum import Enum

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
