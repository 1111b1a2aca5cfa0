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
    setup: Callable[[Path], list[str] | Callable[[], Any] | Pytest]  # CLI argv, an API call, a pytest run


@dataclass
class Pytest:
    """A pytest session with the harness's plugin, run on a one-test file in the case's tmp."""

    args: list[str]


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
    Case("seed-negative", "`publish --seed -1`", lambda t: ["publish", "--seed", "-1"]),
    Case("seed-huge", "`publish --seed 99999999999999999999999`",
         lambda t: ["publish", "--seed", "99999999999999999999999"]),
    Case("ring-slots-huge", "`publish --ring-slots 4294967296`", lambda t: ["publish", "--ring-slots", "4294967296"]),
    Case("brokers-huge", "`publish --brokers 99999999999999999999`",
         lambda t: ["publish", "--brokers", "99999999999999999999"]),
    Case("epoch-not-number", "`publish --epoch-us fast`", lambda t: ["publish", "--epoch-us", "fast"]),
    Case("msg-larger-than-batch", "`publish --msg-size 128KiB --batch-bytes 64KiB` (a message larger than the batch)",
         lambda t: ["publish", "--msg-size", "128KiB", "--batch-bytes", "64KiB"]),
    Case("total-too-large", "`publish --total-bytes 2000TiB`", lambda t: ["publish", "--total-bytes", "2000TiB"]),
    Case("long-run-no-tty", "`publish --total-bytes 100TiB` without a terminal and without --yes (hours)",
         lambda t: ["publish", "--total-bytes", "100TiB"]),
    Case("device-empty", "`publish --device ''`", lambda t: ["publish", "--device", ""]),
    Case("json-dir-missing", "`publish --json <tmp>/nodir/result.json` (checked before the run)",
         lambda t: ["publish", "--json", str(t / "nodir" / "result.json")]),
    Case("json-is-dir", "`publish --json <tmp>` (a directory)", lambda t: ["publish", "--json", str(t)]),
    Case("json-unwritable", "`publish --json /proc/result.json` (a directory nothing can be created in)",
         lambda t: ["publish", "--json", "/proc/result.json"]),
    Case("history-out-unwritable", "`publish --history /proc/xx/h.jsonl`",
         lambda t: ["publish", "--history", "/proc/xx/h.jsonl"]),
    Case("crash-role-typo", "`publish --crash publsher@50% --slot-timeout 50`",
         lambda t: ["publish", "--crash", "publsher@50%", "--slot-timeout", "50"]),
    Case("crash-sequencer", "`publish --crash sequencer@50% --slot-timeout 50`",
         lambda t: ["publish", "--crash", "sequencer@50%", "--slot-timeout", "50"]),
    Case("crash-no-when", "`publish --crash scanner:1`", lambda t: ["publish", "--crash", "scanner:1"]),
    Case("crash-index-range", "`publish --crash scanner:7@50% --slot-timeout 50` (4 brokers)",
         lambda t: ["publish", "--crash", "scanner:7@50%", "--slot-timeout", "50"]),
    Case("crash-when-percent-range", "`publish --crash publisher@100% --slot-timeout 50`",
         lambda t: ["publish", "--crash", "publisher@100%", "--slot-timeout", "50"]),
    Case("crash-when-count-range", "`publish --crash publisher@99999 --slot-timeout 50` (more than the publisher has)",
         lambda t: ["publish", "--crash", "publisher@99999", "--slot-timeout", "50"]),
    Case("crash-no-slot-timeout", "`publish --crash publisher@50%` (no --slot-timeout)",
         lambda t: ["publish", "--crash", "publisher@50%"]),
    Case("crash-scanner-order0", "`publish --order 0 --crash scanner@50% --slot-timeout 50`",
         lambda t: ["publish", "--order", "0", "--crash", "scanner@50%", "--slot-timeout", "50"]),
    Case("crash-subscriber-none", "`publish --subscribers 0 --crash subscriber@50% --slot-timeout 50`",
         lambda t: ["publish", "--subscribers", "0", "--crash", "subscriber@50%", "--slot-timeout", "50"]),
    Case("crash-on-model", "`publish --profile emulated-noncoherent --crash publisher@50% --slot-timeout 50`",
         lambda t: ["publish", "--profile", "emulated-noncoherent", "--crash", "publisher@50%",
                    "--slot-timeout", "50"]),
    Case("slot-timeout-zero", "`publish --slot-timeout 0`", lambda t: ["publish", "--slot-timeout", "0"]),
    Case("watchdog-nan", "`publish --watchdog nan`", lambda t: ["publish", "--watchdog", "nan"]),
    Case("layout-too-large", "`publish --ring-slots 1048576 --batch-bytes 64MiB --msg-size 64KiB --total-bytes 1GiB` (a 256 TiB layout)",
         lambda t: ["publish", "--ring-slots", "1048576", "--batch-bytes", "64MiB", "--msg-size", "64KiB",
                    "--total-bytes", "1GiB"]),
    Case("bench-only-typo", "`bench --only order2_vs_ordr0` (and no output directory is made)",
         lambda t: ["bench", "--only", "order2_vs_ordr0"]),
    Case("bench-precision-zero", "`bench --precision 0`", lambda t: ["bench", "--precision", "0"]),
    Case("bench-budget-negative", "`bench --budget -1`", lambda t: ["bench", "--budget", "-1"]),
    Case("bench-out-unwritable", "`bench --out /proc/xx`", lambda t: ["bench", "--out", "/proc/xx"]),
    Case("characterize-runs-negative", "`characterize --runs -3`", lambda t: ["characterize", "--runs", "-3"]),
    Case("characterize-runs-zero", "`characterize --runs 0`", lambda t: ["characterize", "--runs", "0"]),
    Case("faults-seeds-zero", "`faults --seeds 0`", lambda t: ["faults", "--seeds", "0"]),
    Case("faults-clean-runs-negative", "`faults --clean-runs -1`", lambda t: ["faults", "--clean-runs", "-1"]),
    Case("faults-only-typo", "`faults --only pub_no_payload_flsh`",
         lambda t: ["faults", "--only", "pub_no_payload_flsh"]),
    Case("run-out-unwritable", "`run --out /proc/xx` (checked before any work)",
         lambda t: ["run", "--out", "/proc/xx"]),
    Case("run-out-is-file", "`run --out FILE` (an existing file)",
         lambda t: ["run", "--out", str(_w(t, "not-a-dir", "x"))]),
    Case("run-plant-fault-typo", "`run --plant-fault seq_dup_identty`",
         lambda t: ["run", "--plant-fault", "seq_dup_identty"]),
    Case("run-rounds-zero", "`run --rounds 0`", lambda t: ["run", "--rounds", "0"]),
    Case("run-device-empty", "`run --device ''`", lambda t: ["run", "--device", ""]),
    Case("detect-sysfs-typo", "`detect --sysfs-root /typo`", lambda t: ["detect", "--sysfs-root", "/typo"]),
    Case("detect-sysfs-no-sys", "`detect --sysfs-root <tmp>` (a directory without sys/)",
         lambda t: ["detect", "--sysfs-root", str(t)]),
    Case("detect-device-empty", "`detect --device ''`", lambda t: ["detect", "--device", ""]),
    Case("history-no-events", "history with a header and no events",
         lambda t: ["check-history", _history(t, "header-only.jsonl", HEADER)]),
    Case("plugin-hw-profile-typo", "`pytest --hw-profile typo` (the pytest plugin)",
         lambda t: Pytest(["--hw-profile", "typo"])),
    Case("plugin-sysfs-root-typo", "`pytest --cxl-sysfs-root /typo` (the pytest plugin)",
         lambda t: Pytest(["--cxl-sysfs-root", "/typo"])),
    Case("history-order", "`check-history --order 1 FILE`",
         lambda t: ["check-history", "--order", "1", str(FIXTURES / "histories" / "valid.jsonl")]),
    Case("history-examples", "`check-history --examples 0 FILE`",
         lambda t: ["check-history", "--examples", "0", str(FIXTURES / "histories" / "valid.jsonl")]),
    # ---- profiles
    Case("profile-unknown", "`publish --profile nosuch`", lambda t: ["publish", "--profile", "nosuch"]),
    Case("profile-devnull", "`publish --profile /dev/null` (a character device)",
         lambda t: ["publish", "--profile", "/dev/null"]),
    Case("profile-directory", "`publish --profile <tmp>` (a directory)", lambda t: ["publish", "--profile", str(t)]),
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
    Case("trace-devnull", "`check-trace /dev/null` (a character device)", lambda t: ["check-trace", "/dev/null"]),
    Case("trace-directory", "`check-trace <tmp>` (a directory)", lambda t: ["check-trace", str(t)]),
    Case("trace-unreadable", "`check-trace /proc/self/mem` (a file that cannot be read)",
         lambda t: ["check-trace", "/proc/self/mem"]),
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
    """Every file under root: (size, mtime_ns, sha256), and every directory -- to prove
    nothing changed and nothing was made, not even an empty directory."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = (0, 0, "directory")
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def run_case(case: Case, tmp: Path) -> Observed:
    return execute(case, case.setup(tmp), tmp)


def execute(case: Case, target: list[str] | Callable[[], Any] | Pytest, tmp: Path) -> Observed:
    """Run a prepared case: the CLI in-process (stderr captured, stdin not a terminal), the
    API call, or a pytest session in a subprocess."""
    from harness.cli import main
    from harness.errors import HarnessError

    if isinstance(target, Pytest):
        return _run_pytest(case, target, tmp)
    if callable(target):
        try:
            target()
        except HarnessError as exc:
            text = str(exc)
            return Observed(case, type(exc).__name__, text.splitlines(), _norm(text, tmp))
        raise AssertionError(f"{case.name}: no error raised")
    err, out = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO("")  # no terminal: a question would be refused, never waited on
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code: int | str = main(target)
            except SystemExit as exc:  # argparse usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = stdin
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    if not lines:  # profiles --check reports the problems on stdout
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    message = lines[-1].strip() if lines else ""
    return Observed(case, code, lines, _norm(message, tmp))


def _run_pytest(case: Case, target: Pytest, tmp: Path) -> Observed:
    import subprocess

    test = tmp / "test_uses_profile.py"
    test.write_text("def test_profile(hw_profile):\n    assert hw_profile.name\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *target.args, str(test)],
                       cwd=tmp, capture_output=True, text=True, timeout=120)
    test.unlink()
    lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    message = lines[-1].strip() if lines else ""
    return Observed(case, r.returncode, lines, _norm(message, tmp))


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
        "clear line and a non-zero exit (CLI: exit 2; the pytest plugin: exit 4, a usage error at "
        "start-up; API: the exception named), and that nothing was created, truncated or overwritten "
        "(not even an empty output directory).\n"
        "Besides these, every command stays quiet when its reader goes away (`cxl-harness ... | head`: "
        "exit 141, no traceback; tests/test_cli_pipes.py), and Ctrl-C or SIGTERM stops a run cleanly "
        "with one line and exit 130 or 143 (tests/test_ctrl_c.py, tests/test_supervision.py).\n"
        "Temporary paths are shown as `<tmp>`. Usage errors from argparse also print the usage line "
        "above the message.\n\n" + table(observed) + "\n")


if __name__ == "__main__":
    obs = observe_all()
    if "--write" in sys.argv:
        DOC.write_text(document(obs))
        print(f"wrote {DOC} ({len(obs)} cases)")
    else:
        print(table(obs))
