"""Building the checked core from a patched copy of its sources, and loading such a build.

The patch mutants (:mod:`harness.patchmut`) change the C sources themselves, so each needs its
own build of ``harness._core_checked``. :class:`CheckedBuilder` compiles the sources listed in
``cffi_src/sources.mk`` (the list the Makefile and ``cffi_src/build_core.py`` read) once into
object files, and for each patched copy recompiles only the files the patch changed, then
links. The cffi wrapper comes from ``build_core.py``'s own ``ffi_checked`` (``emit_c_code``),
so the patched module has the very binding of the installed one. :func:`use_checked_build`
makes a process load such a file as ``harness._core_checked``; call it before anything loads
the checked build.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError

MODULE = "harness._core_checked"
REPO = Path(__file__).resolve().parents[2]
CFFI_SRC = REPO / "cffi_src"


def _build_core() -> Any:
    """``cffi_src/build_core.py`` as a module (its source list, flags and ``ffi_checked``)."""
    path = CFFI_SRC / "build_core.py"
    if not path.is_file():
        raise ConfigError(f"the C sources are not here ({path} is missing)",
                          "run patch mutation from a source checkout of the project")
    spec = importlib.util.spec_from_file_location("_cxl_build_core", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a broken checkout only
        raise ConfigError(f"cannot load {path}", "check the source checkout")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class CheckedBuilder:
    """Compiles patched copies of ``cffi_src/src`` into checked builds under ``workdir``.

    ``opt`` is the optimisation level: the mutants are judged on the seam's recorded events
    and the checks' results, which do not depend on it (the unpatched control build, run
    through the same model runs, must be clean); -O1 compiles about twice as fast as -O2."""

    workdir: Path
    opt: str = "-O1"
    compiler: str = field(default_factory=lambda: os.environ.get("CC", "cc"))
    _base: dict[str, Path] = field(default_factory=dict)
    _wrapper: Path | None = None
    _flags: list[str] = field(default_factory=list)
    _sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        bc = _build_core()
        self._sources = list(bc.CHECKED_SOURCES)
        strict = bc._MK["STRICT_CFLAGS"] if bc._strict() else []
        self._flags = [self.opt, *bc._MK["BASE_CFLAGS"], *strict, "-fPIC", "-DCXL_CHECKED=1"]
        self._ffi = bc.ffi_checked
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def sources(self) -> list[str]:
        return list(self._sources)

    def copy_sources(self, dest: Path) -> Path:
        """A fresh copy of ``cffi_src/src`` at ``dest``; returns it."""
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(CFFI_SRC / "src", dest)
        return dest

    def _cc(self, src: Path, obj: Path, include: Path, extra: list[str] | None = None) -> None:
        # __FILE__ (the sites' and the rules' locations) as in the installed build
        where = f"-fmacro-prefix-map={src.parent}=cffi_src/src"
        cmd = [self.compiler, "-c", *self._flags, *(extra or []), where, f"-I{include}", str(src), "-o", str(obj)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(f"compiling {src.name} failed: {done.stderr.strip()[-2000:]}",
                               "fix the C source (or the patch that changed it)")

    def _prepare(self) -> None:
        """The unpatched objects and the cffi wrapper, compiled once."""
        if self._wrapper is not None:
            return
        src = self.copy_sources(self.workdir / "base-src")
        objs = self.workdir / "base-obj"
        objs.mkdir(exist_ok=True)
        wrapper_c = self.workdir / "_core_checked.c"
        with contextlib.redirect_stdout(io.StringIO()):  # cffi says "generating ..."
            self._ffi.emit_c_code(str(wrapper_c))
        py_inc = sysconfig.get_paths()["include"]
        jobs: list[tuple[Path, Path, list[str]]] = [(src / s, objs / (s[:-2] + ".o"), []) for s in self._sources]
        jobs.append((wrapper_c, objs / "_core_checked.o", [f"-I{py_inc}", "-Wno-unused-parameter"]))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            for f in [pool.submit(self._cc, s, o, src, x) for s, o, x in jobs]:
                f.result()
        self._base = {s: objs / (s[:-2] + ".o") for s in self._sources}
        self._wrapper = objs / "_core_checked.o"

    def build(self, src: Path, out: Path) -> Path:
        """Build ``src`` (a patched copy) into the extension file ``out``: the files that differ
        from the unpatched sources are recompiled (all of them when a header changed)."""
        self._prepare()
        assert self._wrapper is not None
        base_src = self.workdir / "base-src"
        changed = sorted(p.name for p in src.iterdir()
                         if not (base_src / p.name).is_file() or _digest(p) != _digest(base_src / p.name))
        headers = any(not n.endswith(".c") for n in changed)
        objdir = out.parent / (out.stem + "-obj")
        objdir.mkdir(parents=True, exist_ok=True)
        objs = []
        for s in self._sources:
            if headers or s in changed:
                o = objdir / (s[:-2] + ".o")
                self._cc(src / s, o, src)
                objs.append(o)
            else:
                objs.append(self._base[s])
        wrapper = self._wrapper
        if headers:  # the wrapper includes cxl_api.h and cxl_check_api.h
            wrapper = objdir / "_core_checked.o"
            self._cc(self.workdir / "_core_checked.c", wrapper, src,
                     [f"-I{sysconfig.get_paths()['include']}", "-Wno-unused-parameter"])
        cmd = [self.compiler, "-shared", "-pthread", *map(str, objs), str(wrapper), "-o", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(f"linking {out.name} failed: {done.stderr.strip()[-2000:]}",
                               "check the compiler installation")
        return out


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def use_checked_build(path: str | os.PathLike[str]) -> None:
    """Make this process load the extension file ``path`` as ``harness._core_checked``.
    Must come before anything loads the checked build (then it would be too late)."""
    if MODULE in sys.modules:
        raise HarnessError(f"{MODULE} is already loaded in this process",
                           "load the patched build first, in a fresh process")
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, str(path), loader=loader)
    if spec is None:  # pragma: no cover - only for a path that is no file
        raise HarnessError(f"cannot load {path} as {MODULE}", "build it first")
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[MODULE] = mod


def checksum_bytes(native: Any, data: bytes, seed: int = 0) -> int:
    """The core's payload hash (``cxl_checksum_bytes``) of ``data``."""
    buf = native.ffi.new("unsigned char[]", data or b"\0")
    return int(native.lib.cxl_checksum_bytes(buf, len(data), seed))


__all__ = ["CFFI_SRC", "CheckedBuilder", "MODULE", "checksum_bytes", "use_checked_build"]
