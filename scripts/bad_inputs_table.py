#!/usr/bin/env python3
"""Run every bad-input case and print the table (input, message) that docs/bad-inputs.md holds.

The same cases are run by tests/test_bad_inputs.py, which also checks that each one is refused
with one clear line and a non-zero exit, and that nothing was created, truncated or
overwritten. Messages are the real ones, with the temporary directory shown as ``<tmp>``.

    python scripts/bad_inputs_table.py            # print the Markdown table
    python scripts/bad_inputs_table.py --write    # (re)write docs/bad-inputs.md
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
DOC = ROOT / "docs" / "bad-inputs.md"
# messages that name what this machine has (its NUMA nodes, its dax devices)
MACHINE_DEPENDENT = {"dax-missing", "numa-missing", "numa-not-number"}
sys.path.insert(0, str(ROOT))


@dataclass
class Case:
    name: str
    what: str                                  # the input, as a reader would describe it
    setup: Callable[[Path], list[str] | Callable[[], Any]]  # argv for the CLI, or an API call


@dataclass
class Observed:
    case: Case
    exit: int | str                            # CLI exit status, or the exception class
    lines: list[str]                           # stderr lines (CLI) or the exception text
    message: str                               # the one line the user reads


def _w(tmp: Path, name: str, text: str | bytes) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


VALID_PROFILE = (ROOT / "hw_profiles" / "ci.yaml").read_text()


def _profile(tmp: Path, name: str, old: str, new: str) -> str:
    assert old in VALID_PROFILE, old
    return str(_w(tmp, name, VALID_PROFILE.replace(old, new, 1)))


def _history(tmp: Path, name: str, text: str | bytes) -> str:
    return str(_w(tmp, name, text))


HEADER = '{"type":"header","format":"cxl-history","version":1,"order":2,"brokers":1,"drained":true}\n'


def _region_other_version(tmp: Path) -> Callable[[], Any]:
    import struct

    from harness.log import LogConfig, attach_check, format_region, layout_size
    from harness.region import Region

    cfg = LogConfig(brokers=1, msg_size=64, batch_bytes=256, total_bytes=4096, pbr_slots=4, goi_slots=16)
    size = (layout_size(cfg) + 4095) // 4096 * 4096
    path = tmp / "old-version.region"
    with Region.file(path, size) as r:
        format_region(r, cfg)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, 2)  # layout version 2
    path.write_bytes(bytes(data))

    def call() -> None:
        with Region.file(path, size, create=False) as r:
            attach_check(r, cfg)
    return call


def _region_other_geometry(tmp: Path) -> Callable[[], Any]:
    from harness.log import LogConfig, attach_check, format_region, layout_size
    from harness.region import Region

    cfg = LogConfig(brokers=2, msg_size=64, batch_bytes=256, total_bytes=4096, pbr_slots=4, goi_slots=16)
    size = (layout_size(cfg) + 4095) // 4096 * 4096
    path = tmp / "two-brokers.region"
    with Region.file(path, size) as r:
        format_region(r, cfg)

    def call() -> None:
        with Region.file(path, size, create=False) as r:
            attach_check(r, LogConfig(brokers=1, msg_size=64, batch_bytes=256, total_bytes=4096,
                                      pbr_slots=4, goi_slots=16))
    return call


def _api(fn: Callable[[Path], Any]) -> Callable[[Path], Callable[[], Any]]:
    return lambda tmp: (lambda: fn(tmp))


def _region():  # lazy import: the script's --help works without the C core
    from harness.region import Region
    return Region


SYSRAM = str(FIXTURES / "sysfs" / "system-ram")
DEVDAX = str(FIXTURES / "sysfs" / "devdax")

CASES: list[Case] = [
    # ---- CLI arguments
    Case("brokers-too-many", "`publish --brokers 9`", lambda t: ["publish", "--brokers", "9"]),
    Case("brokers-zero", "`publish --brokers 0`", lambda t: ["publish", "--brokers", "0"]),
    Case("ring-not-pow2", "`publish --ring-slots 3`", lambda t: ["publish", "--ring-slots", "3"]),
    Case("subscribers-too-many", "`publish --subscribers 9`", lambda t: ["publish", "--subscribers", "9"]),
    Case("msg-size-unit", "`publish --msg-size 12XB`", lambda t: ["publish", "--msg-size", "12XB"]),
    Case("msg-size-negative", "`publish --msg-size -5`", lambda t: ["publish", "--msg-size=-5"]),
    Case("batch-too-many-msgs", "`publish --msg-size 1 --batch-bytes 1M` (2^20 messages a batch)",
         lambda t: ["publish", "--msg-size", "1", "--batch-bytes", "1M"]),
    Case("order-level", "`publish --order 1`", lambda t: ["publish", "--order", "1"]),
    Case("epoch-zero", "`publish --epoch-us 0`", lambda t: ["publish", "--epoch-us", "0"]),
    Case("history-order", "`check-history --order 1 FILE`",
         lambda t: ["check-history", "--order", "1", str(FIXTURES / "histories" / "valid.jsonl")]),
    Case("history-examples", "`check-history --examples 0 FILE`",
         lambda t: ["check-history", "--examples", "0", str(FIXTURES / "histories" / "valid.jsonl")]),
    # ---- profiles
    Case("profile-unknown", "`publish --profile nosuch`", lambda t: ["publish", "--profile", "nosuch"]),
    Case("profile-missing-file", "`publish --profile <tmp>/missing.yaml`",
         lambda t: ["publish", "--profile", str(t / "missing.yaml")]),
    Case("profile-yaml-syntax", "profile file with a YAML syntax error",
         lambda t: ["publish", "--profile", str(_w(t, "broken.yaml", "name: x\nmemory: [unclosed\n"))]),
    Case("profile-empty", "empty profile file",
         lambda t: ["publish", "--profile", str(_w(t, "empty.yaml", ""))]),
    Case("profile-wrong-type", "profile with `size_mib: lots`",
         lambda t: ["publish", "--profile", _profile(t, "type.yaml", "size_mib: 256", "size_mib: lots")]),
    Case("profile-bad-backend", "profile with `backend: tape`",
         lambda t: ["publish", "--profile", _profile(t, "backend.yaml", "backend: emulated", "backend: tape")]),
    Case("profile-unknown-key", "profile with an unknown key `memroy:`",
         lambda t: ["publish", "--profile", _profile(t, "key.yaml", "memory:", "memroy:")]),
    Case("profile-binary", "profile file that is not text (invalid UTF-8)",
         lambda t: ["publish", "--profile", str(_w(t, "binary.yaml", b"\xff\xfe\x00name: \x80\x81"))]),
    Case("profiles-check", "`profiles --check` on a profile with a negative device-model cost",
         lambda t: ["profiles", "--check", _profile(t, "neg.yaml", "load_ns: 0", "load_ns: -5")]),
    # ---- history and trace files
    Case("history-missing", "`check-history <tmp>/missing.jsonl`",
         lambda t: ["check-history", str(t / "missing.jsonl")]),
    Case("history-directory", "`check-history` on a directory (unreadable as a file)",
         lambda t: ["check-history", str(t)]),
    Case("history-empty", "empty history file", lambda t: ["check-history", _history(t, "empty.jsonl", "")]),
    Case("history-bad-json", "history with a line that is not JSON",
         lambda t: ["check-history", _history(t, "bad.jsonl", HEADER + '{"type":"publish",\n')]),
    Case("history-no-header", "history without a header line",
         lambda t: ["check-history", _history(t, "nohdr.jsonl", '{"type":"commit","t":1,"committed_seq":0}\n')]),
    Case("history-version", "history header of another format version",
         lambda t: ["check-history", _history(t, "v9.jsonl", HEADER.replace('"version":1', '"version":9'))]),
    Case("history-binary", "history file of binary garbage",
         lambda t: ["check-history", _history(t, "garbage.jsonl", bytes(range(256)) * 4)]),
    Case("history-bad-field", "history event with a negative broker",
         lambda t: ["check-history", _history(t, "field.jsonl", HEADER + '{"type":"publish","t":1,"broker":-1,'
                                              '"client":0,"client_batch_seq":0,"pbr_index":0,"outcome":"ok",'
                                              '"msg_count":1,"size":64,"checksum":1}\n')]),
    Case("trace-missing", "`check-trace <tmp>/missing.jsonl`", lambda t: ["check-trace", str(t / "missing.jsonl")]),
    Case("trace-garbage", "trace file of binary garbage",
         lambda t: ["check-trace", _history(t, "trace.bin", bytes(range(256)) * 4)]),
    Case("report-missing", "`report <tmp>/no-such-run`", lambda t: ["report", str(t / "no-such-run")]),
    Case("report-corrupt-summary", "`report DIR` whose summary.json is not JSON",
         lambda t: ["report", str(_w(t, "run/summary.json", "{not json").parent)]),
    # ---- devices
    Case("dax-missing", "`publish --device /dev/dax9.9` (no such device)",
         lambda t: ["publish", "--device", "/dev/dax9.9"]),
    Case("dax-system-ram", "`detect --sysfs-root fixtures/sysfs/system-ram --device /dev/dax0.0` (kmem)",
         lambda t: ["detect", "--sysfs-root", SYSRAM, "--device", "/dev/dax0.0"]),
    Case("dev-not-dax", "`publish --device /dev/sda` (a block device, not devdax)",
         lambda t: ["publish", "--device", "/dev/sda"]),
    Case("numa-missing", "`publish --device node:99`", lambda t: ["publish", "--device", "node:99"]),
    Case("numa-not-number", "`publish --device node:x`", lambda t: ["publish", "--device", "node:x"]),
    Case("file-no-dir", "`publish --device <tmp>/nodir/region` (directory missing)",
         lambda t: ["publish", "--device", str(t / "nodir" / "region")]),
    Case("file-exists-no-consent", "`publish --device EXISTING_FILE` without --allow-destructive",
         lambda t: ["publish", "--device", str(_w(t, "precious.bin", b"user data " * 100))]),
    Case("file-too-small", "`publish --device SMALL_FILE --allow-destructive` (4 KiB file)",
         lambda t: ["publish", "--device", str(_w(t, "small.bin", b"\0" * 4096)), "--allow-destructive",
                    "--total-bytes", "1M"]),
    Case("sysfs-root-missing", "`detect --sysfs-root <tmp>/nowhere`",
         lambda t: ["detect", "--sysfs-root", str(t / "nowhere"), "--device", "/dev/dax0.0"]),
    Case("api-dax-no-consent", "`Region.devdax(...)` without allow_destructive",
         _api(lambda t: _region().devdax("/dev/dax0.0", 2 << 20, 2 << 20, allow_destructive=False))),
    Case("api-dax-not-dax-path", "`Region.devdax('<tmp>/dax0.0', ...)` (a fake /dev path)",
         lambda t: (lambda p=str(_w(t, "dax0.0", "")): _region().devdax(p, 2 << 20, 2 << 20,
                                                                        allow_destructive=True, sysfs_root=SYSRAM))),
    Case("api-dax-absent", "`Region.devdax('/dev/dax7.0', ...)` (missing device)",
         _api(lambda t: _region().devdax("/dev/dax7.0", 2 << 20, 2 << 20, allow_destructive=True))),
    Case("api-numa-missing", "`Region.numa(99, ...)`",
         _api(lambda t: _region().numa(99, 2 << 20, allow_destructive=True))),
    Case("api-file-exists", "`Region.file(EXISTING, create=True)`",
         lambda t: (lambda p=_w(t, "keep.bin", b"keep"): _region().file(p, 4096))),
    Case("api-file-too-small", "`Region.file(4 KiB file, 1 MiB, create=False)`",
         lambda t: (lambda p=_w(t, "tiny.bin", b"\0" * 4096): _region().file(p, 1 << 20, create=False))),
    Case("region-other-version", "region file of layout version 2, attached by this build",
         _region_other_version),
    Case("region-other-geometry", "region file made for 2 brokers, attached for 1", _region_other_geometry),
]


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: (size, mtime_ns, sha256) -- to prove nothing changed."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def run_case(case: Case, tmp: Path) -> Observed:
    return execute(case, case.setup(tmp), tmp)


def execute(case: Case, target: list[str] | Callable[[], Any], tmp: Path) -> Observed:
    """Run a prepared case: the CLI in-process (stderr captured), or the API call."""
    from harness.cli import main
    from harness.errors import HarnessError

    if callable(target):
        try:
            target()
        except HarnessError as exc:
            text = str(exc)
            return Observed(case, type(exc).__name__, text.splitlines(), _norm(text, tmp))
        raise AssertionError(f"{case.name}: no error raised")
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code: int | str = main(target)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    if not lines:  # profiles --check reports the problems on stdout
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    message = lines[-1].strip() if lines else ""
    return Observed(case, code, lines, _norm(message, tmp))


def _norm(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "<tmp>").replace(str(ROOT) + "/", "").replace("|", "\\|")


def observe_all() -> list[Observed]:
    out = []
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="cxl-bad-") as d:
            out.append(run_case(case, Path(d)))
    return out


def table(observed: list[Observed]) -> str:
    rows = ["| # | input | exit | message |", "|---|---|---|---|"]
    for i, o in enumerate(observed, 1):
        rows.append(f"| {i} | {o.case.what} | {o.exit} | `{o.message}` |")
    return "\n".join(rows)


def document(observed: list[Observed]) -> str:
    return (
        "# Bad inputs and what the harness says\n\n"
        "Generated by `python scripts/bad_inputs_table.py --write` from the real messages; "
        "`tests/test_bad_inputs.py` runs the same cases and checks that each one is refused with one\n"
        "clear line and a non-zero exit (CLI: exit 2; API: the exception named), and that nothing was "
        "created, truncated or overwritten.\n"
        "Temporary paths are shown as `<tmp>`. Usage errors from argparse also print the usage line "
        "above the message.\n\n" + table(observed) + "\n")


if __name__ == "__main__":
    obs = observe_all()
    if "--write" in sys.argv:
        DOC.write_text(document(obs))
        print(f"wrote {DOC} ({len(obs)} cases)")
    else:
        print(table(obs))
