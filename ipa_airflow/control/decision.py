"""A decision: the plan that should run next, what runs now, and why. A plain value with to/from dict,
so an Airflow task can hand it to the next through XCom.

`changed` is defined here and nowhere else: the plan differs from what runs (or nothing runs). Every
driver reconciles exactly when it is true, and every record reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..plans import Plan

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Decision:
    plan: Plan  # what should run next: what runs (kept) or the program's proposal
    previous_plan_id: str | None  # what ran when deciding; None when nothing known runs
    reason: str  # why kept or switched, one sentence
    proposal_id: str  # what the program proposed (differs from plan.plan_id when what runs is kept)
    # The load planned for: the forecast now at the quantile, or the rate measured now, or the highest
    # recent load the capacity hold keeps (capped at what runs carries).
    load_rps: float
    solve_s: float = 0.0  # the program's solve time
    # The model each stage of the plan runs ('models:/name/3', or 'zoo:<variant>' for a zoo model).
    models: Mapping[str, str] = field(default_factory=dict)
    # Where the pipeline came from (origin 'files', 'mlflow', 'cache', 'cache-fallback'), why (note), and
    # every registry version looked at with whether it may run (candidates).
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    # Observed against predicted p99 per stage (`control.drift`): {"measured", "note", "gaps", "events"}.
    drift: Mapping[str, Any] = field(default_factory=dict)
    # How load_rps came about: {"quantile", "point", "now" (this forecast at the quantile), "measured"
    # (the rate over the fast path's window; load_rps is the higher of the two unless the hold raised it),
    # "measured_peak", "recent" (the loads the capacity hold compared, oldest first)}.
    load_basis: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def changed(self) -> bool:
        return self.plan.plan_id != self.previous_plan_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "previous_plan_id": self.previous_plan_id,
            "reason": self.reason,
            "proposal_id": self.proposal_id,
            "load_rps": self.load_rps,
            "solve_s": self.solve_s,
            "models": dict(self.models),
            "pipeline": dict(self.pipeline),
            "drift": dict(self.drift),
            "load_basis": dict(self.load_basis),
            "changed": self.changed,  # for readers of the XCom; recomputed, never read back
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        version = d.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"decision schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
            )
        return cls(
            plan=Plan.from_dict(d["plan"], source="decision.plan"),
            previous_plan_id=d.get("previous_plan_id"),
            reason=str(d.get("reason", "")),
            proposal_id=str(d["proposal_id"]),
            load_rps=float(d["load_rps"]),
            solve_s=float(d.get("solve_s", 0.0)),
            models=dict(d.get("models") or {}),
            pipeline=dict(d.get("pipeline") or {}),
            drift=dict(d.get("drift") or {}),
            load_basis=dict(d.get("load_basis") or {}),
        )
