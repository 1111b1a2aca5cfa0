"""Loading the compiled C core (cffi API mode), the normal and the checked build, and the
few helpers every binding module of this package shares (flush choice, C strings, arrays).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import numpy as np

FLUSH_NAMES = {0: "none", 1: "clflush", 2: "clflushopt", 3: "clwb"}
FLUSH_IDS = {name: fid for fid, name in FLUSH_NAMES.items()}


@dataclass(frozen=True)
class Native:
    """One build of the core: its ``ffi`` and ``lib``, and whether it is the checked one."""

    ffi: Any
    lib: Any
    checked: bool


@lru_cache(maxsize=2)
def load(checked: bool = False) -> Native:
    name = "harness._core_checked" if checked else "harness._core"
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - only on a broken install
        raise HarnessError(
            f"the C core {name} is not built ({exc})",
            "run 'pip install -e .' (or the README's setup command) to compile it",
        ) from exc
    native = Native(mod.ffi, mod.lib, checked)
    native.lib.cxl_select_flush(0)
    native.lib.cxl_calibrate_tsc(20)
    return native


def select_flush(name: str = "auto") -> str:
    """Choose the flush instruction for both builds; returns the one chosen."""
    if name != "auto" and name not in FLUSH_IDS:
        raise HarnessError(f"unknown flush instruction {name!r}", f"use one of auto, {', '.join(FLUSH_IDS)}")
    chosen = ""
    for checked in (False, True):
        lib = load(checked).lib
        rc = lib.cxl_select_flush(0 if name == "auto" else FLUSH_IDS[name])
        if rc < 0:
            raise HarnessError(
                f"flush instruction {name!r} is not supported by this CPU",
                f"supported: {', '.join(supported_flushes())}",
            )
        chosen = FLUSH_NAMES[rc]
    return chosen


def supported_flushes() -> list[str]:
    mask = load().lib.cxl_cpu_flush_support()
    return [FLUSH_NAMES[k] for k in (3, 2, 1) if mask & (1 << k)]


def flush_instruction() -> str:
    return FLUSH_NAMES[load().lib.cxl_flush_kind()]


def as_array(native: Native, ptr: Any, count: int, ctype: str) -> np.ndarray[Any, Any]:
    """Copy ``count`` C structs of ``ctype`` at ``ptr`` into a numpy structured array."""
    import numpy as np

    ffi = native.ffi
    dtype = _dtype(native, ctype)
    if count == 0 or ptr == ffi.NULL:
        return np.zeros(0, dtype=dtype)
    buf = ffi.buffer(ffi.cast(f"{ctype} *", ptr), count * ffi.sizeof(ctype))
    return np.frombuffer(buf, dtype=dtype).copy()


_DTYPES: dict[tuple[bool, str], np.dtype[Any]] = {}


def _dtype(native: Native, ctype: str) -> np.dtype[Any]:
    import numpy as np

    key = (native.checked, ctype)
    if key not in _DTYPES:
        ffi = native.ffi
        fields = ffi.typeof(ctype).fields
        names, formats, offsets = [], [], []
        for fname, field in fields:
            names.append(fname)
            formats.append(_np_type(field.type.cname))
            offsets.append(field.offset)
        _DTYPES[key] = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": ffi.sizeof(ctype)}
        )
    return _DTYPES[key]


def _np_type(cname: str) -> str:
    return {"uint64_t": "<u8", "uint32_t": "<u4", "int32_t": "<i4", "int16_t": "<i2", "uint16_t": "<u2"}[cname]




def constants_core() -> Any:
    """The normal build's module (``ffi`` and ``lib``) without the start-up calibration: for
    the core's numbers only (enums, limits), which a command line may read while it starts."""
    try:
        return importlib.import_module("harness._core")
    except ImportError as exc:  # pragma: no cover - only on a broken install
        raise HarnessError(f"the C core harness._core is not built ({exc})",
                           "run the README's setup command to compile it") from exc


def c_string(native: Native, ptr: Any) -> str:
    """A NUL-terminated C string (``char *`` or ``char[]``) as text; '' for NULL."""
    if ptr == native.ffi.NULL:
        return ""
    return str(native.ffi.string(ptr).decode(errors="replace"))


def at(native: Native, base: Any, offset: int) -> Any:
    """The ``char *`` ``offset`` bytes into a mapping (an opaque pointer for other calls)."""
    return native.ffi.cast("char *", base) + offset
