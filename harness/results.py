"""The result model every producer and consumer shares: a Check (an invariant, a rule, a
planted fault, a loss accounting) and the groups it belongs to. Targets (measured figures
judged against a bound) are harness.benchmarks.TargetCheck, on harness.stats.Samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the summary's and the report's sections; a run's own checks (group "in-run" or "history")
# go into "ordering" there
CHECK_GROUPS: tuple[str, ...] = ("ordering", "flush-fence", "faults", "crash", "targets")


@dataclass
class Check:
    """One invariant checked on a run: passed, or the counterexample."""

    id: str
    name: str
    ok: bool
    detail: str
    counterexamples: list[dict[str, Any]] = field(default_factory=list)
    group: str = "ordering"

    def to_dict(self) -> dict[str, Any]:
        """The summary's shape of a check (summary.json, format 2)."""
        return {"id": self.id, "name": self.name, "group": self.group, "ok": bool(self.ok),
                "detail": self.detail, "counterexamples": list(self.counterexamples)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Check:
        return cls(str(d["id"]), str(d["name"]), bool(d["ok"]), str(d.get("detail", "")),
                   list(d.get("counterexamples", [])), str(d.get("group", "ordering")))
