"""The report's Mutation section: the score of the site mutants (``cxl-harness mutate``), of
the patch mutants (``mutate --patches``) and the shortest counterexample of each caught
catalogue fault, from the summary's ``mutation`` section or, when the run did not compute it,
from ``mutation.json`` beside the summary (the JSON of ``cxl-harness mutate --json``,
``mutate --patches --json``, or the run's own file). Plain data in, plain data out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

MUTATION_FILENAME = "mutation.json"
FORMAT = "cxl-mutation/1"
# What the section says when nothing was computed.
NOT_COMPUTED = (
    "Not computed in this run: quick runs leave it out (a full run computes the site mutants "
    "and the counterexamples; 'cxl-harness run --mutation all' adds the patch mutants). To add "
    "it to this report, write 'cxl-harness mutate --json' (or 'mutate --patches --json') to "
    f"{MUTATION_FILENAME} in the run directory and re-render with 'cxl-harness report DIR'.")


def _sites(d: dict[str, Any]) -> dict[str, Any]:
    outs = d.get("outcomes", [])
    return {
        "sites": int(d["sites"]), "mutants": int(d["mutants"]), "killed": int(d["killed"]),
        "equivalent": int(d["equivalent"]), "fault_only": int(d.get("fault_only", 0)),
        "survived": int(d["survived"]), "unreached": int(d.get("unreached", 0)),
        "score": float(d["score"]), "seconds": float(d["seconds"]),
        "configs": len(d.get("baseline", {}).get("configs", [])),
        "baseline_runs": int(d.get("baseline", {}).get("runs", 0)),
        "survivors": [{"name": f"{o['site']}:{o['mutation']}", "location": o["location"],
                       "status": o["status"]} for o in outs if o["status"] in ("survived", "unreached")],
        "equivalents": [{"name": f"{o['site']}:{o['mutation']}", "location": o["location"],
                         "reason": o.get("reason", "")} for o in outs if o["status"] == "equivalent"],
    }


def _patches(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "mutants": int(d["mutants"]), "killed": int(d["killed"]), "equivalent": int(d["equivalent"]),
        "survived": int(d["survived"]), "crashed": int(d.get("crashed", 0)), "hung": int(d.get("hung", 0)),
        "seconds": float(d["seconds"]),
        "outcomes": [{"name": o["name"], "what": o.get("what", ""), "status": o["status"],
                      "by": ", ".join(o.get("by", [])[:3]), "config": o.get("config", ""),
                      "seed": int(o.get("seed", 0)), "seconds": float(o.get("seconds", 0.0)),
                      "reason": o.get("reason", ""), "searched": int(o.get("searched", 0)),
                      "story": [str(x) for x in o.get("story", [])]} for o in d.get("outcomes", [])],
    }


def _cx(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # a fault the catalogue caught whose run did not show it again stays in the table, marked
    return [{"fault": r["fault"], "target": r["target"], "steps": int(r["steps"]),
             "original_steps": int(r["original_steps"]), "then": r["then"],
             "reproduced": bool(r.get("caught", True)),
             "story": [str(x) for x in r.get("story", [])]} for r in rows]


def mutation_section(sites: dict[str, Any] | None = None, patches: dict[str, Any] | None = None,
                     counterexamples: list[dict[str, Any]] | None = None,
                     source: str = "run") -> dict[str, Any]:
    """The summary's ``mutation`` section from the commands' JSON (any part may be missing)."""
    return {"source": source,
            "sites": _sites(sites) if sites else None,
            "patches": _patches(patches) if patches else None,
            "counterexamples": _cx(counterexamples or [])}


def raw_file(sites: dict[str, Any] | None, patches: dict[str, Any] | None,
             counterexamples: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What a run writes to ``mutation.json``: the commands' own JSON, together."""
    return {"format": FORMAT, "sites": sites, "patches": patches, "counterexamples": counterexamples or []}


def from_file(path: Path) -> dict[str, Any]:
    """The section from ``mutation.json``: a run's file, or one command's ``--json`` output."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot be read as JSON ({exc})",
                           "write it with 'cxl-harness mutate --json > mutation.json'") from None
    src = path.name
    try:
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return mutation_section(data.get("sites"), data.get("patches"), data.get("counterexamples"), src)
        if isinstance(data, dict) and "control" in data:
            return mutation_section(None, data, None, src)
        if isinstance(data, dict) and "sites" in data:
            return mutation_section(data, None, None, src)
        if isinstance(data, list):  # scripts/counterexamples.py --json
            return mutation_section(None, None, data, src)
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: not the output of 'cxl-harness mutate --json' (missing {exc})",
                           "write it with 'cxl-harness mutate --json > mutation.json'") from None
    raise HarnessError(f"{path}: not the output of 'cxl-harness mutate --json'",
                       "write it with 'cxl-harness mutate --json > mutation.json'")


__all__ = ["FORMAT", "MUTATION_FILENAME", "NOT_COMPUTED", "from_file", "mutation_section", "raw_file"]
