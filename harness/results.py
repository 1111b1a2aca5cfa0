"""The result model every producer and consumer shares: a Check (an invariant, a rule, a
planted fault, a test) and a TargetCheck (a measured figure's samples judged against a bound:
MET / MISSED / INCONCLUSIVE, DESIGN.md 6b). The benchmarks, the main job, the plugin, the
hosts runner and the CLI make these; the summary writes them with ``to_dict``/``to_summary``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harness.stats import Samples, Verdict

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


@dataclass
class TargetCheck:
    """A performance target judged on the 95% interval of its figure (DESIGN.md 6b)."""

    id: str
    description: str
    kind: Literal["ratio", "absolute"]
    bound: float
    comparison: Literal["min", "max"]
    source: str  # where the bound comes from
    result: str | None  # the benchmark result it reads
    samples: Samples | None  # None: asked for and not measured
    verdict: Verdict
    reason: str
    unit: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.MET

    def fails(self, strict: bool = False) -> bool:
        """MISSED fails a run; INCONCLUSIVE only with ``--strict``."""
        return self.verdict is Verdict.MISSED or (strict and self.verdict is Verdict.INCONCLUSIVE)

    @property
    def measured(self) -> float | None:
        return self.samples.median if self.samples is not None else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.samples.interval if self.samples is not None else None

    @property
    def detail(self) -> str:
        return f"{self.verdict.value}: {self.reason}"

    def to_summary(self) -> dict[str, Any]:
        """The summary's ``targets`` item (with the samples it was judged on)."""
        d = self.to_dict()
        item = {k: d[k] for k in ("name", "kind", "verdict", "reason", "measured", "interval",
                                  "n", "bound", "comparison", "ok", "unit", "description")}
        if self.samples is not None:
            item["samples"] = list(self.samples.values)
        return item

    def to_dict(self) -> dict[str, Any]:
        iv = self.interval
        return {"name": self.id, "description": self.description, "kind": self.kind,
                "verdict": self.verdict.value, "reason": self.reason,
                "measured": self.measured, "interval": list(iv) if iv else None,
                "n": self.samples.n if self.samples else 0, "bound": self.bound,
                "comparison": ">=" if self.comparison == "min" else "<=",
                "source": self.source, "result": self.result, "unit": self.unit,
                "ok": self.ok}
