"""Bad inputs everywhere: CLI arguments, profile files, history and trace files, devices,
region files of another layout. Each one: one clear line, a non-zero exit (or the named
exception from the API), and nothing created, truncated or overwritten.

The cases live in scripts/bad_inputs_table.py, which also writes docs/bad-inputs.md from the
observed messages; this test checks the document still says what the harness says.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bad_inputs_table", ROOT / "scripts" / "bad_inputs_table.py")
assert _spec and _spec.loader
bad = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs_table"] = bad
_spec.loader.exec_module(bad)

CASES = {c.name: c for c in bad.CASES}


def _listing(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def test_at_least_80_cases() -> None:
    assert len(CASES) >= 80
    assert len({c.what for c in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_refused_cleanly(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)  # a stray file in the working directory would show up here
    target = case.setup(tmp_path)
    before = bad.tree(tmp_path)
    fixtures_before = bad.tree(ROOT / "fixtures")
    shm_before, repo_before = _listing(Path("/dev/shm")), _listing(ROOT)
    obs = bad.execute(case, target, tmp_path)
    # refused: non-zero exit (CLI) or a harness exception (API)
    if isinstance(obs.exit, int):
        assert obs.exit != 0
        # one clear line: the message; argparse may print its usage line(s) above it
        error_lines = [ln for ln in obs.lines if "error:" in ln.lower() or ln.startswith("    profile ")]
        assert len(error_lines) == 1, obs.lines
        assert obs.lines[-1] == error_lines[0]
        assert not any(ln.startswith("Traceback") for ln in obs.lines)
    else:
        assert obs.exit.endswith("Error")
        assert len(obs.lines) == 1
    assert obs.message and len(obs.message) < 400
    assert "(fix:" in obs.message or obs.case.name == "profiles-check" or "invalid choice" in obs.message
    # nothing created, truncated or overwritten
    assert bad.tree(tmp_path) == before
    assert bad.tree(ROOT / "fixtures") == fixtures_before
    assert _listing(Path("/dev/shm")) == shm_before
    assert _listing(ROOT) == repo_before


def _doc_rows() -> dict[str, str]:
    text = bad.DOC.read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| \d+ \| (.*) \| (\S+) \| `(.*)` \|$", line)
        if m:
            rows[m.group(1)] = m.group(3)
    return rows


def test_doc_table_is_the_observed_messages(tmp_path: Path) -> None:
    rows = _doc_rows()
    assert set(rows) == {c.what for c in CASES.values()}, "regenerate: python scripts/bad_inputs_table.py --write"
    for name, case in CASES.items():
        if name in bad.MACHINE_DEPENDENT:
            continue
        d = tmp_path / name
        d.mkdir()
        obs = bad.run_case(case, d)
        observed = bad._norm(obs.lines[-1].strip(), d) if isinstance(obs.exit, int) else obs.message
        assert rows[case.what] == observed, f"{name}: docs/bad-inputs.md is stale"
