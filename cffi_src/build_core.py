"""cffi build script (API mode, out of line) for the C core.

Two extension modules come from the same sources:

* ``harness._core``          -- the normal build: the seam compiles to plain accesses and
                                 the CPUID-chosen flush instruction;
* ``harness._core_checked``  -- the checked build (``-DCXL_CHECKED``): every shared-memory
                                 access is recorded and served by the non-coherent model.

``CXL_SANITIZE=address`` or ``CXL_SANITIZE=thread`` adds sanitizer flags (see
``cffi_src/Makefile`` for the standalone sanitizer drivers the test-suite runs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"


def _read_sources_mk() -> dict[str, list[str]]:
    """`NAME := words` lines of sources.mk, the list the Makefile includes too."""
    out: dict[str, list[str]] = {}
    for line in (HERE / "sources.mk").read_text().splitlines():
        m = re.fullmatch(r"([A-Z_]+)\s*:=\s*(.*)", line.strip())
        if m:
            out[m.group(1)] = m.group(2).split()
    return out


_MK = _read_sources_mk()
CORE_SOURCES = _MK["CORE_SOURCES"]
CHECKED_SOURCES = CORE_SOURCES + _MK["CHECKED_EXTRA"]
BASE_FLAGS = ["-O2"] + _MK["BASE_CFLAGS"]


def _strict() -> bool:
    """-Werror in CI and when asked (CXL_WERROR=1), not in a user's install."""
    return os.environ.get("CXL_WERROR") == "1" or os.environ.get("CI", "").lower() == "true"


def _cdef_text() -> str:
    """The API header with its preprocessor lines removed: cffi parses plain C only."""
    text = (SRC / "cxl_api.h").read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _extra_cdef() -> str:
    """Checked-build-only entry points (model, trace rules)."""
    text = (SRC / "cxl_check_api.h").read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _flags() -> list[str]:
    flags = list(BASE_FLAGS) + (_MK["STRICT_CFLAGS"] if _strict() else [])
    sanitize = os.environ.get("CXL_SANITIZE", "")
    if sanitize:
        if not re.fullmatch(r"[a-z,]+", sanitize):
            raise ValueError(f"CXL_SANITIZE={sanitize!r}: expected e.g. 'address,undefined' or 'thread'")
        flags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
    return flags


def _make(module: str, sources: list[str], defines: list[tuple[str, str | None]], checked: bool) -> FFI:
    ffi = FFI()
    cdef = _cdef_text() + ("\n" + _extra_cdef() if checked else "")
    ffi.cdef(cdef)
    header = '#include "cxl_api.h"\n' + ('#include "cxl_check_api.h"\n' if checked else "")
    ffi.set_source(
        module,
        header,
        sources=[str((SRC / s).relative_to(Path.cwd())) if SRC.is_relative_to(Path.cwd())
                 else str(SRC / s) for s in sources],
        include_dirs=[str(SRC)],
        define_macros=defines,
        extra_compile_args=_flags(),
        extra_link_args=["-pthread"] + ([f"-fsanitize={os.environ['CXL_SANITIZE']}"]
                                         if os.environ.get("CXL_SANITIZE") else []),
    )
    return ffi


ffi = _make("harness._core", CORE_SOURCES, [], checked=False)
ffi_checked = _make("harness._core_checked", CHECKED_SOURCES, [("CXL_CHECKED", "1")], checked=True)

if __name__ == "__main__":
    ffi.compile(verbose=False)
    ffi_checked.compile(verbose=False)
