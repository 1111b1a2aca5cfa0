"""The shortest counterexample of each caught catalogue fault: the first seeded run that
catches it, reduced (:func:`harness.explore.shrink`: shortest violating prefix, then delta
debugging over the role steps) for the first rule or check that fired, told as a story.
Used by ``scripts/counterexamples.py`` and by ``cxl-harness run`` for the report's Mutation
section."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.checked import fault_names, run_checked
from harness.faults import detections, fault_config


@dataclass
class FaultCounterexample:
    fault: str
    caught: bool
    seed: int = 0
    target: str = ""            # the rule or check the reduction kept
    steps: int = 0              # role steps of the reduced schedule
    original_steps: int = 0
    then: str = ""              # how the replay ends after the steps (stop | round-robin | seeded)
    replays: int = 0
    seconds: float = 0.0
    story: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.fault, "caught": self.caught, "seed": self.seed, "target": self.target,
                "steps": self.steps, "original_steps": self.original_steps, "then": self.then,
                "replays": self.replays, "seconds": self.seconds, "story": list(self.story)}


def fault_counterexample(name: str, seeds: tuple[int, ...] = (1, 2, 3)) -> FaultCounterexample:
    from harness.explore import shrink

    t0 = time.perf_counter()
    for seed in seeds:
        by, _ = detections(run_checked(fault_config(name, seed), fault=name))
        if by:
            break
    else:
        return FaultCounterexample(name, False, seconds=time.perf_counter() - t0)
    # the most specific detection: a trace rule when one fired, else the first check
    cx = shrink(fault_config(name, seed), by[0], fault=name)
    return FaultCounterexample(name, True, seed, by[0], cx.length, cx.original_steps, cx.after,
                               cx.runs, time.perf_counter() - t0, list(cx.story))


def fault_counterexamples(names: Iterable[str] | None = None,
                          progress: Callable[[FaultCounterexample], None] | None = None
                          ) -> list[FaultCounterexample]:
    out = []
    for name in names or fault_names():
        cx = fault_counterexample(name)
        out.append(cx)
        if progress:
            progress(cx)
    return out


__all__ = ["FaultCounterexample", "fault_counterexample", "fault_counterexamples"]
