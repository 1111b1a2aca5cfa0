"""Patch mutants (issue: bound and order mutants beyond the seam): the protocol's decisions
changed in the C source, one rebuild each. The anchors are checked against the current
sources on every run, so a source change that moves the code a mutant patches fails here
instead of silently testing nothing; the whole family is built and run in
test_every_patch_mutant_has_its_pinned_outcome, marked slow: with the search stage the whole
family takes about 3 minutes on the quiet 2-core machine, and with it the CI run took 23
minutes, over the 20-minute bar for patch mutants in CI (run it with --run-slow or
CXL_SLOW=1)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.errors import ConfigError, HarnessError
from harness.patchmut import (PATCH_EQUIVALENT, PATCH_MUTANTS, Edit, PatchMutant, apply, by_name,
                              checksum_flip_failures, run_patches)

SRC = Path(__file__).resolve().parent.parent / "cffi_src" / "src"

# name -> (outcome, the check that must be among the killing ones). A survivor is never
# expected but for the open ones below, each explained in docs/validation.md.
OPEN_PATCH_FINDINGS: set[str] = set()
EXPECTED: dict[str, tuple[str, str]] = {
    "ring-reuse-bound": ("killed", "check:payload-checksums"),
    "ring-reuse-recheck": ("killed", "check:payload-checksums"),
    "ring-reuse-bound-shared": ("killed", "check:run-completed"),
    "committed-seq-plus-one": ("killed", "check:shared-memory-sane"),
    "order5-committed-seq-plus-one": ("killed", "check:shared-memory-sane"),
    "scanner-token-after-body": ("killed", "rule:record_read_without_token"),
    "goi-token-before-body": ("killed", "rule:body_after_token"),
    # no model run preempts inside scanner_enter; the search does, at the seal's atomics
    "seal-recheck-skipped": ("killed", "rule:push_after_seal"),
    "sub-checksum-range": ("killed", "check:payload-checksums"),
    "checksum-skips-last-byte": ("killed", "check:checksum-flips"),
    "sub-skips-last-message": ("killed", "check:payload-checksums"),
    "order0-frontier-before-fence": ("killed", "rule:unpersisted_at_end"),
    "order0-durable-with-frontier": ("equivalent", ""),
}


def test_every_patch_mutant_is_pinned_and_fits_the_current_source(tmp_path: Path) -> None:
    assert {m.name for m in PATCH_MUTANTS} == set(EXPECTED)
    assert len({m.name for m in PATCH_MUTANTS}) == len(PATCH_MUTANTS)
    assert set(PATCH_EQUIVALENT) == {n for n, (s, _) in EXPECTED.items() if s == "equivalent"}
    for m in PATCH_MUTANTS:
        for e in m.edits:
            assert (SRC / e.file).read_text().count(e.anchor) == 1, (m.name, e.anchor)
        # applied to a copy, every edit changes its file
        for f in {e.file for e in m.edits}:
            (tmp_path / f).write_text((SRC / f).read_text())
        apply(m, tmp_path)
        for f in {e.file for e in m.edits}:
            assert (tmp_path / f).read_text() != (SRC / f).read_text(), m.name


def test_an_anchor_that_no_longer_fits_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "x.c").write_text("int a;\nint a;\n")
    for anchor, times in (("int a;", "2 time(s)"), ("int b;", "0 time(s)")):
        m = PatchMutant("m", "test", (Edit("x.c", anchor, "int c;"),))
        with pytest.raises(HarnessError, match=re.escape(times)):
            apply(m, tmp_path)
    with pytest.raises(HarnessError, match="no file y.c"):
        apply(PatchMutant("m", "test", (Edit("y.c", "a", "b"),)), tmp_path)
    with pytest.raises(ConfigError, match="unknown patch mutant 'nope'"):
        by_name(["nope"])


def test_the_payload_hash_notices_every_flipped_bit() -> None:
    # publisher and subscriber share cxl_checksum_bytes: no model run would notice a hash that
    # ignores part of its input (the patch mutant checksum-skips-last-byte is killed by this)
    assert checksum_flip_failures() == []


def test_cli_mutate_patches_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["mutate", "--patches", "--list"]) == 0
    out = capsys.readouterr().out
    assert f"{len(PATCH_MUTANTS)} patch mutants" in out and "seal-recheck-skipped" in out
    assert main(["mutate", "--patches", "--list", "--json", "--only", "ring-reuse-bound"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["ring-reuse-bound"] and listed[0]["files"] == ["cxl_publisher.c"]
    for argv, msg in ((["--only", "nope"], "unknown patch mutant 'nope'"),
                      (["--counterexample"], "--counterexample is for site mutants only"),
                      (["--all"], "--all goes with --list")):
        assert main(["mutate", "--patches", *argv]) == 2, argv
        assert msg in capsys.readouterr().err, argv
    with pytest.raises(SystemExit) as exc:  # argparse's own usage error
        main(["mutate", "--patches", "--seeds", "0"])
    assert exc.value.code == 2 and "out of range" in capsys.readouterr().err


@pytest.mark.checker
def test_cli_mutate_patches_runs_one(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["mutate", "--patches", "--only", "sub-checksum-range", "--seeds", "1", "--json",
                 "--no-search"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mutants"] == 1 and d["killed"] == 1 and d["ok"] and d["seeds"] == [1]
    assert d["search_bound"] is None and d["control"]["searched"] == 0
    assert d["control"]["status"] == "survived" and d["control"]["runs"] == 2 * len(d["configs"])
    o = d["outcomes"][0]
    assert o["name"] == "sub-checksum-range" and "check:payload-checksums" in o["by"]
    assert o["build_seconds"] > 0 and o["seconds"] >= o["build_seconds"]


@pytest.mark.slow
@pytest.mark.checker
def test_every_patch_mutant_has_its_pinned_outcome() -> None:
    rep = run_patches()
    assert rep.control.status == "survived" and rep.control.runs > 0
    got = {o.name: o for o in rep.outcomes}
    wrong = {n: (got[n].status, got[n].by, want) for n, want in EXPECTED.items()
             if got[n].status != want[0] or (want[1] and want[1] not in got[n].by)}
    assert not wrong, f"patch mutant outcomes changed (got, pinned): {wrong}"
    assert {n for n, o in got.items() if o.status == "survived"} == OPEN_PATCH_FINDINGS
    killed = [o for o in got.values() if o.status == "killed"]
    assert all(o.by and o.seconds > 0 for o in killed)
    assert all(o.config for o in killed if not o.by[0].startswith("check:checksum"))
    # the control went through the whole bounded search of every scope, clean
    assert rep.search_bound == 1 and rep.control.searched > 1000
    seal = got["seal-recheck-skipped"]
    assert seal.searched > 0 and seal.config.startswith("search (bound 1)")
    # its counterexample: one preemption between the scanner's read of the epoch and its
    # announcement, the sequencer seals, the scanner pushes into the sealed buffer
    story = "\n".join(seal.story)
    assert seal.story[0].startswith("1 deviation(s)"), story
    assert re.search(r"scanner of broker \d is about to ctl-store at cxl_scanner\.c:\d+: sequencer runs "
                     r"instead", story), story
    assert "broken: push_after_seal" in story, story


@pytest.mark.checker
def test_the_search_stage_names_what_the_search_found() -> None:
    # the stage a mutant's child runs after the model runs, here in process with a site
    # mutant standing in for a patch: killed, by the rule the search's witness broke
    import time

    from harness.mutate import mutation, sites
    from harness.patchmut import _search_stage

    site = next(s for s in sites() if s.key == "cxl_layout_attach/invalidate#1")
    with mutation(site, "stale"):
        d = _search_stage(0, time.perf_counter())
    assert d["status"] == "killed" and d["config"].startswith("search (bound 1): ")
    assert d["by"] and all(b.startswith(("rule:", "check:")) for b in d["by"]), d["by"]
    assert d["diagnostic"].startswith(", ".join(d["by"]))
    assert d["searched"] >= 1 and any("deviation" in line for line in d["story"])
