"""The one door to the compiled C core (cffi API mode): the normal and the checked build.

Only this package touches the cffi binding (``harness._core``, ``harness._core_checked``,
their ``ffi`` and ``lib``); tests/test_native.py fails on any other harness module that does.
Every other module calls the typed functions of its submodules and holds the handles they
return as opaque values:

- :mod:`harness.native._build`: loading a build (:func:`load`), the flush instruction, C
  strings and numpy copies of C arrays;
- :mod:`harness.native.enums`: the core's numbers (role masks, flags, record kinds, ...),
  read from the compiled module, never re-declared in Python;
- :mod:`harness.native.region`: mapping regions, their device model, the seam's copies;
- :mod:`harness.native.devmodel`: the device model's channels shared between processes, and
  writers released together (the two-writer figure);
- :mod:`harness.native.log`: the layout and a log run (``cxl_log_*``, ``cxl_layout_*``);
- :mod:`harness.native.bench`: the characterisation kernels (``cxl_bench_*``);
- :mod:`harness.native.check`: the checked build's event stream, faults and check sites.

Importing this package loads the normal build's module for its constants only (about a
millisecond); the checked build, numpy and the start-up calibration load on first use.
"""

from __future__ import annotations

from harness.native._build import (
    FLUSH_IDS,
    FLUSH_NAMES,
    Native,
    as_array,
    flush_instruction,
    load,
    select_flush,
    supported_flushes,
)
from harness.native.enums import (
    LIMITS,
    RESUME_KIND,
    Backend,
    Flag,
    GapPolicy,
    Limits,
    LossReason,
    OrderKind,
    Rec,
    Role,
    RoleKind,
    Severity,
    agent_kind,
    c_names,
    lat_bucket_low,
    op_codes,
)

__all__ = [
    "FLUSH_IDS", "FLUSH_NAMES", "LIMITS", "RESUME_KIND", "Backend", "Flag", "GapPolicy", "Limits",
    "LossReason", "Native", "OrderKind", "Rec", "Role", "RoleKind", "Severity", "agent_kind",
    "as_array", "c_names", "flush_instruction", "lat_bucket_low", "load", "op_codes",
    "select_flush", "supported_flushes",
]
