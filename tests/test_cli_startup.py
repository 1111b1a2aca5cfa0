"""The command line starts light: building every sub-command's parser imports neither the
checked build nor numpy, matplotlib or jinja2 (the normal build's constants only), and the
package's module-level imports form no circle."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The normal build's module may load (the parsers' limits are its constants: about a
# millisecond); the checked build and the start-up calibration (native.load) must not.
HEAVY = ("numpy", "matplotlib", "jinja2", "scipy", "pyarrow", "harness._core_checked", "execnet")


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys; from harness.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules) + "
            "(['native.load'] if 'harness.native' in sys.modules and "
            "sys.modules['harness.native'].load.cache_info().currsize else []))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_python_dash_m_harness_is_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("usage: cxl-harness")


def _module_graph() -> dict[str, set[str]]:
    """harness module -> harness modules it imports at module level (not inside functions or
    under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "harness").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("harness"))
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_circle() -> None:
    graph = _module_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            circle = visit(m)
            assert circle is None, " -> ".join(circle)


def test_every_package_is_listed_for_installation() -> None:
    """A package missing from pyproject's explicit list is absent from a non-editable install."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "harness").rglob("__init__.py")}
    assert found - listed == set()


def test_no_doubled_percent_in_any_help() -> None:
    """argparse formats argument help with %, never a description: a '%%' there shows as is."""
    from harness.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        assert "%%" not in sub.format_help(), name
