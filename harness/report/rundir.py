"""Run directories: ``<out>/<name>/`` with the raw files, ``summary.json`` and ``index.html``,
the ``<out>/latest`` pointer, and reading an earlier run back for ``--compare``."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.report.render import render_report
from harness.report.summary import SUMMARY_FILENAME, Summary, load_summary, write_summary

LATEST = "latest"


def jsonable(value: Any) -> Any:
    """A JSON-safe copy (numpy scalars and tuples become plain values; NaN/inf become None)."""
    return json.loads(json.dumps(value, default=_json_default, allow_nan=True),
                      parse_constant=lambda _c: None)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _unique_dir(root: Path, name: str) -> Path:
    path, n = root / name, 2
    while path.exists():
        path, n = root / f"{name}-{n}", n + 1
    return path


def point_latest(out_root: Path, run_dir: Path) -> Path:
    """``out_root/latest`` -> ``run_dir`` (a relative symlink, replaced atomically; a text file
    holding the directory name where symlinks cannot be made)."""
    link = out_root / LATEST
    tmp = out_root / f".{LATEST}.{os.getpid()}"
    target = os.path.relpath(run_dir, out_root)
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp, target_is_directory=True)
        if link.is_dir() and not link.is_symlink():
            raise OSError(f"{link} is a directory")
        os.replace(tmp, link)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        if link.is_symlink():
            link.unlink()
        if link.is_dir():
            raise HarnessError(f"{link} is a directory, cannot point it at the newest run",
                               f"remove or rename {link}") from None
        link.write_text(target + "\n", encoding="utf-8")
    return link


def resolve_latest(path: Path) -> Path:
    """A run directory given as itself, or as ``latest`` (symlink or pointer file)."""
    if path.is_file() and path.name == LATEST:
        return path.parent / path.read_text(encoding="utf-8").strip()
    return path


def write_run_dir(summary: dict[str, Any], out_root: Path, *, run_name: str | None = None,
                  raw: dict[str, tuple[str, Any]] | None = None, previous: Summary | None = None,
                  ) -> tuple[Path, Path, Path]:
    """Write ``out_root/<run_name>/`` with the raw files (role -> (file name, JSON value or
    text)), ``summary.json`` and ``index.html``; point ``out_root/latest`` at it. Returns
    (run directory, report path, latest pointer)."""
    out_root.mkdir(parents=True, exist_ok=True)
    name = run_name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = _unique_dir(out_root, name)
    run_dir.mkdir(parents=True)
    files = {"summary": SUMMARY_FILENAME}
    for role, (filename, value) in (raw or {}).items():
        text = value if isinstance(value, str) else json.dumps(jsonable(value), indent=2) + "\n"
        (run_dir / filename).write_text(text, encoding="utf-8")
        files[role] = filename
    summary = {**summary, "files": files}
    write_summary(summary, run_dir / SUMMARY_FILENAME)
    report = render_report(summary, run_dir, dict(previous) if previous is not None else None)
    latest = point_latest(out_root, run_dir)
    return run_dir, report, latest


def load_previous(path: Path | None) -> Summary | None:
    if path is None:
        return None
    path = resolve_latest(path)
    summary_path = path / SUMMARY_FILENAME if path.is_dir() else path
    return load_summary(summary_path)
