"""Patch mutants: the protocol's decisions (bounds, ordering, what is checked), changed in the
C source itself and rebuilt, one build per mutant.

The per-site mutants of :mod:`harness.mutate` switch a seam call off at run time. The
decisions around those calls -- a ring-reuse bound, the value committed, whether a token is
read before the body it guards, the epoch seal's re-check, what the checksum covers -- are
plain C and can only be changed in the source. Each :class:`PatchMutant` is data: the file,
an *anchor* (a snippet that must occur exactly once in the current source, so a source change
that moves it makes the run fail loudly instead of silently testing nothing) and its
replacement. :func:`run_patches` copies ``cffi_src/src`` to a temporary directory, applies one
mutant, builds the checked extension there (:class:`harness.native.patched.CheckedBuilder`:
only the patched files are recompiled), and runs, in a fresh process that loads that build,
the static checks (:data:`STATIC_CHECKS`) and then the model runs of :mod:`harness.mutate`
(every configuration, each seed with whole steps and with preemption) until a check fires.
An unpatched control build goes through the same first and must be clean.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError


@dataclass(frozen=True)
class Edit:
    """Replace ``anchor`` (exactly one occurrence) in ``file`` (under cffi_src/src)."""

    file: str
    anchor: str
    replacement: str


@dataclass(frozen=True)
class PatchMutant:
    name: str
    what: str
    edits: tuple[Edit, ...]


def _one(file: str, anchor: str, replacement: str) -> tuple[Edit, ...]:
    return (Edit(file, anchor, replacement),)


PATCH_MUTANTS: tuple[PatchMutant, ...] = (
    PatchMutant(
        "ring-reuse-bound", "a broker's only publisher: the ring-full test `>=` becomes `>`, so the "
        "slot one lap ahead of the reuse floor is claimed without reading the floor again",
        _one("cxl_publisher.c", "if (abs >= P->floor + slots && !FAULT(L, pub_reuse_early)) {",
             "if (abs > P->floor + slots && !FAULT(L, pub_reuse_early)) {")),
    PatchMutant(
        "ring-reuse-recheck", "a broker's only publisher: after reading the floor, the re-check "
        "`>=` becomes `>`, so a ring that is exactly full is claimed",
        _one("cxl_publisher.c", "if (abs >= P->floor + slots) return 0;",
             "if (abs > P->floor + slots) return 0;")),
    PatchMutant(
        "ring-reuse-bound-shared", "several publishers per broker: the ring-full test before the "
        "claim's compare-and-swap `>=` becomes `>`",
        _one("cxl_publisher.c", "if (c >= P->floor + slots && !FAULT(L, pub_reuse_early)) {",
             "if (c > P->floor + slots && !FAULT(L, pub_reuse_early)) {")),
    PatchMutant(
        "committed-seq-plus-one", "Order 2: the sequencer commits one position more than it wrote",
        _one("cxl_sequencer.c", "    seq_commit(L, hi, now);\n    if (FAULT(L, seq_commit_unflushed))",
             "    seq_commit(L, hi + 1, now);\n    if (FAULT(L, seq_commit_unflushed))")),
    PatchMutant(
        "order5-committed-seq-plus-one", "Order 5: the sequencer commits one position more than "
        "it wrote",
        _one("cxl_order5.c", "    seq_commit(L, hi, now);\n", "    seq_commit(L, hi + 1, now);\n")),
    PatchMutant(
        "scanner-token-after-body", "the scanner copies a slot's header before it checks the "
        "slot's token (and uses that copy), instead of after",
        (Edit("cxl_scanner.c", "    uint64_t tok = cxl_consume64(&h->token);\n",
              "    cxl_batch_hdr_t early;\n    cxl_invalidate(h, CXL_LINE);\n"
              "    cxl_copy_out(&early, h, sizeof early);\n"
              "    uint64_t tok = cxl_consume64(&h->token);\n"),
         Edit("cxl_scanner.c", "    if (!FAULT(L, scan_no_invalidate_body)) cxl_invalidate(h, CXL_LINE);\n"
              "    cxl_copy_out(&v, h, sizeof v);\n", "    v = early;\n"))),
    PatchMutant(
        "goi-token-before-body", "Order 2: the sequencer publishes each GOI entry's token before "
        "it writes the entry's body (and not again after the body's fence)",
        (Edit("cxl_sequencer.c", "        goi_write_body(g, &L->cur[i], order);\n",
              "        cxl_publish_token(g, &g->token, L->chunk_pos[i] + 1);\n"
              "        goi_write_body(g, &L->cur[i], order);\n"),
         Edit("cxl_sequencer.c", "        cxl_publish_token(g, &g->token, L->chunk_pos[i] + 1);\n"
              "        if (flush && !FAULT(L, seq_commit_unflushed)) cxl_flush(g);\n",
              "        if (flush && !FAULT(L, seq_commit_unflushed)) cxl_flush(g);\n"))),
    PatchMutant(
        "seal-recheck-skipped", "the scanner announces the epoch it read without re-reading it "
        "(the seal's Dekker-style re-check, scanner_enter)",
        _one("cxl_scanner.c", "== e) return e;", "== e || 1) return e;")),
    PatchMutant(
        "sub-checksum-range", "the subscriber hashes each message's payload one byte short",
        _one("cxl_subscriber.c", "cxl_checksum_bytes(v + off + sizeof h, h.size, 0)",
             "cxl_checksum_bytes(v + off + sizeof h, h.size - 1, 0)")),
    PatchMutant(
        "checksum-skips-last-byte", "the payload hash itself (shared by publisher and "
        "subscriber) leaves out the last byte of what it hashes",
        _one("cxl_log_common.c", "    uint64_t len = n;\n", "    uint64_t len = n;\n    if (n) n--;\n")),
    PatchMutant(
        "sub-skips-last-message", "the subscriber does not verify a batch's last message",
        _one("cxl_subscriber.c", "    for (uint32_t m = 0; m < msg_count; m++) {\n        cxl_msg_hdr_t h;",
             "    for (uint32_t m = 0; m + 1 < msg_count; m++) {\n        cxl_msg_hdr_t h;")),
    PatchMutant(
        "order0-frontier-before-fence", "Order 0: the acker fences before it publishes its "
        "frontier instead of after, so the ACK counts before the frontier is durable",
        _one("cxl_scanner.c",
             "    publish_frontier(L, S->broker, S->next, S->next, S->acked_msgs, S->lost);\n    cxl_sfence();\n",
             "    cxl_sfence();\n    publish_frontier(L, S->broker, S->next, S->next, S->acked_msgs, S->lost);\n")),
    PatchMutant(
        "order0-durable-with-frontier", "Order 0, ACK 2: the durable frontier is published "
        "together with the ordered one, before the fence that makes the ordered one durable",
        (Edit("cxl_scanner.c",
              "    publish_frontier(L, S->broker, S->next, S->next, S->acked_msgs, S->lost);\n    cxl_sfence();\n",
              "    publish_frontier(L, S->broker, S->next, S->next, S->acked_msgs, S->lost);\n"
              "    if (L->cfg.ack_level >= 2) publish_durable(L, S->broker, S->next, S->acked_msgs);\n"
              "    cxl_sfence();\n"),
         Edit("cxl_scanner.c",
              "    if (L->cfg.ack_level >= 2) {\n        publish_durable(L, S->broker, S->next, S->acked_msgs);\n"
              "        cxl_sfence();\n    }\n", ""))),
)

# Patch mutants that no check can kill because they change nothing the protocol relies on.
PATCH_EQUIVALENT: dict[str, str] = {
    "order0-durable-with-frontier": (
        "the durable frontier (durable_batches, durable_msgs) lives in the same cache line as "
        "the ordered one (cxl_seq_line_t): one flush writes both, and the fence after it makes "
        "both durable together. A publisher polling ACK 2 reads durable_batches from memory, so "
        "when it sees the new value the ordered frontier is durable too. One fence per Order 0 "
        "ACK 2 step could go"),
}


def by_name(names: Iterable[str] | None) -> list[PatchMutant]:
    """The patch mutants named (all without names); an unknown name is an error naming the known."""
    if not names:
        return list(PATCH_MUTANTS)
    known = {m.name: m for m in PATCH_MUTANTS}
    out = []
    for n in names:
        if n not in known:
            raise ConfigError(f"unknown patch mutant {n!r}",
                              f"list them with 'cxl-harness mutate --patches --list' (one of "
                              f"{', '.join(known)})")
        if known[n] not in out:
            out.append(known[n])
    return out


def apply(mutant: PatchMutant, src: Path) -> None:
    """Apply ``mutant`` to the source copy at ``src``. Every anchor must occur exactly once --
    in the file as it is when its edit is applied -- or the mutant no longer fits the source."""
    for e in mutant.edits:
        path = src / e.file
        if not path.is_file():
            raise HarnessError(f"patch mutant {mutant.name}: no file {e.file} in the C sources",
                               "update the mutant in harness/patchmut.py to the current sources")
        text = path.read_text()
        n = text.count(e.anchor)
        if n != 1:
            raise HarnessError(
                f"patch mutant {mutant.name}: its anchor {e.anchor.strip()[:60]!r} occurs {n} time(s) "
                f"in {e.file}, not once", "update the mutant's anchor in harness/patchmut.py to the "
                "current source (a change moved or duplicated the code it patches)")
        path.write_text(text.replace(e.anchor, e.replacement))


# ------------------------------------------------------------------------------------------
# The checks a patched build goes through (in the child process that loaded it)


def checksum_flip_failures(sizes: Iterable[int] = (*range(1, 70), 127, 128, 129, 255, 256, 257)) -> list[str]:
    """Byte strings whose hash (``cxl_checksum_bytes``, the payload checksum of publisher and
    subscriber alike) does not change when one bit of one byte is flipped: none for a sound
    hash. Publisher and subscriber share the function, so no model run would notice a hash
    that ignores part of its input; this does."""
    from harness.native import load
    from harness.native.patched import checksum_bytes

    native = load(True)
    bad = []
    for n in sizes:
        data = bytearray((i * 131 + n) & 0xFF for i in range(n))
        h = checksum_bytes(native, bytes(data))
        for i in range(n):
            for bit in (0x01, 0x80):
                data[i] ^= bit
                if checksum_bytes(native, bytes(data)) == h:
                    bad.append(f"{n} bytes, byte {i} bit {bit:#04x}")
                data[i] ^= bit
    return bad


STATIC_CHECKS: dict[str, Callable[[], list[str]]] = {"checksum-flips": checksum_flip_failures}
SEARCH_BOUND = 1  # deviations per execution in the search stage (bound 1 is complete in seconds)
# the Order 2 and Order 0 scopes of harness.explore.SCOPES: the Order 5 patch mutant is killed by
# the model runs, and the Order 5 scopes would double the stage's time for the control
SEARCH_SCOPES = 3


@dataclass
class PatchOutcome:
    name: str
    what: str
    status: str               # killed | survived | equivalent | crashed | hung | build-failed
    by: list[str] = field(default_factory=list)
    diagnostic: str = ""
    config: str = ""
    seed: int = 0
    preempt: float = 0.0
    runs: int = 0             # model runs + search executions
    searched: int = 0         # of which search executions (the search stage)
    events_to_detection: int = 0
    build_seconds: float = 0.0
    seconds: float = 0.0      # build + runs
    reason: str = ""
    story: list[str] = field(default_factory=list)  # the search's counterexample, when it killed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _child_run(seeds: tuple[int, ...], search: bool = True) -> dict[str, Any]:
    """In the child (the patched build loaded): static checks, then the model runs until one
    fires, then (``search``) the systematic search of every scope."""
    from harness.checked import run_checked
    from harness.mutate import MODEL_CONFIGS, _model, run_detections, schedules
    from harness.checked import ModelConfig

    t0 = time.perf_counter()
    runs = 0
    for name, check in STATIC_CHECKS.items():
        bad = check()
        if bad:
            return {"status": "killed", "by": [f"check:{name}"], "diagnostic": f"{len(bad)} case(s), "
                    f"e.g. {bad[0]}", "runs": 0, "seconds": time.perf_counter() - t0}
    for mc in MODEL_CONFIGS:
        for seed, pre in schedules(seeds):
            runs += 1
            try:
                run = run_checked(mc.config(seed), model=_model(ModelConfig(), pre))
            except HarnessError as exc:
                by, diag, first = ["check:attach"], f"attach refused: {exc}", 0
            else:
                by, diag, first = run_detections(run)
            if by:
                return {"status": "killed", "by": by, "diagnostic": diag, "config": mc.name,
                        "seed": seed, "preempt": pre, "runs": runs, "events_to_detection": first,
                        "seconds": time.perf_counter() - t0}
    if not search:
        return {"status": "survived", "runs": runs, "seconds": time.perf_counter() - t0}
    return _search_stage(runs, t0)


def _search_stage(runs: int, t0: float) -> dict[str, Any]:
    """What the model runs did not kill: the systematic search of the Order 2 and Order 0 scopes
    (bound 1, x86-TSO), which preempts inside role steps and at the seal's control atomics."""
    from harness.explore import SCOPES, search_scope, search_story

    searched = 0
    for scope in SCOPES[:SEARCH_SCOPES]:
        found = search_scope(scope, bound=SEARCH_BOUND, stop_at_first=True)
        searched += found.executions
        if found.violations:
            what = found.violations[0].split(": ", 1)[1]
            by = found.witness_by or []
            story = search_story(scope.config(1), found.witness or [])
            return {"status": "killed", "by": by, "diagnostic": what, "config": f"search (bound "
                    f"{SEARCH_BOUND}): {scope.name}", "runs": runs + searched, "searched": searched,
                    "story": story, "seconds": time.perf_counter() - t0}
    return {"status": "survived", "runs": runs + searched, "searched": searched,
            "seconds": time.perf_counter() - t0}


def child_main(argv: list[str]) -> int:
    """``python -c 'from harness.patchmut import child_main; ...' BUILD SEEDS``: one JSON line."""
    from harness.native.patched import use_checked_build

    use_checked_build(argv[0])
    seeds = tuple(int(s) for s in argv[1].split(","))
    print(json.dumps(_child_run(seeds, search=argv[2:] != ["--no-search"])))
    return 0


def _run_child(build: Path, seeds: tuple[int, ...], timeout_s: float, search: bool) -> dict[str, Any]:
    code = "import sys; from harness.patchmut import child_main; sys.exit(child_main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, str(build), ",".join(map(str, seeds))] + ([] if search else ["--no-search"])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "hung", "diagnostic": f"no result within {timeout_s:.0f} s"}
    if done.returncode < 0:
        sig = signal.Signals(-done.returncode).name
        return {"status": "crashed", "by": [f"process:{sig}"],
                "diagnostic": f"the run died of {sig}: {done.stderr.strip()[-300:]}"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise HarnessError(f"the mutant's run failed (exit {done.returncode}): {done.stderr.strip()[-600:]}",
                           "run it again with CXL_HARNESS_TRACEBACK=1; this is a bug in the harness")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


@dataclass
class PatchReport:
    control: PatchOutcome
    outcomes: list[PatchOutcome]
    seconds: float
    seeds: tuple[int, ...]
    search_bound: int | None = SEARCH_BOUND  # None: the model runs only

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.control.status == "survived" and all(
            o.status in ("killed", "equivalent") for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        from harness.mutate import MODEL_CONFIGS

        return {
            "ok": self.ok, "mutants": len(self.outcomes), "killed": self.count("killed"),
            "equivalent": self.count("equivalent"), "survived": self.count("survived"),
            "crashed": self.count("crashed"), "hung": self.count("hung"),
            "seconds": self.seconds, "seeds": list(self.seeds), "search_bound": self.search_bound,
            "configs": [m.name for m in MODEL_CONFIGS], "static_checks": list(STATIC_CHECKS),
            "control": self.control.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def run_patches(names: Iterable[str] | None = None, seeds: tuple[int, ...] | None = None,
                progress: Callable[[PatchOutcome], None] | None = None,
                timeout_s: float = 900.0, workdir: Path | None = None, search: bool = True) -> PatchReport:
    """Build and run every patch mutant named (all without names), after the unpatched control.
    With ``search``, what the model runs do not kill goes through the systematic search too."""
    from harness.mutate import SEEDS
    from harness.native.patched import CheckedBuilder

    chosen = by_name(names)
    seeds = seeds or SEEDS
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cxl-patchmut-", dir=workdir) as tmp:
        root = Path(tmp)
        builder = CheckedBuilder(root / "work")

        def one(m: PatchMutant | None) -> PatchOutcome:
            name = m.name if m else "control"
            out = PatchOutcome(name, m.what if m else "the unpatched sources", "survived")
            t = time.perf_counter()
            src = builder.copy_sources(root / name / "src")
            if m:
                apply(m, src)
            try:
                build = builder.build(src, root / name / "_core_checked.so")
            except HarnessError as exc:
                out.status, out.diagnostic = "build-failed", str(exc)
                return out
            out.build_seconds = time.perf_counter() - t
            got = _run_child(build, seeds, timeout_s, search)
            for k, v in got.items():
                if k != "seconds" and hasattr(out, k):
                    setattr(out, k, v)
            out.seconds = time.perf_counter() - t
            if m and out.status == "survived" and m.name in PATCH_EQUIVALENT:
                out.status, out.reason = "equivalent", PATCH_EQUIVALENT[m.name]
            return out

        # every anchor is checked before anything is built
        for m in chosen:
            apply(m, builder.copy_sources(root / "anchors" / m.name))
        control = one(None)
        if control.status != "survived":
            raise HarnessError(f"the unpatched control build is not clean: {control.status} "
                               f"{', '.join(control.by)}: {control.diagnostic}",
                               "fix the checks or the build before judging mutants")
        outcomes = []
        for m in chosen:
            o = one(m)
            outcomes.append(o)
            if progress:
                progress(o)
    return PatchReport(control, outcomes, time.perf_counter() - t0, tuple(seeds),
                       SEARCH_BOUND if search else None)


__all__ = ["Edit", "PATCH_EQUIVALENT", "PATCH_MUTANTS", "PatchMutant", "PatchOutcome", "PatchReport",
           "STATIC_CHECKS", "apply", "by_name", "checksum_flip_failures", "child_main", "run_patches"]

