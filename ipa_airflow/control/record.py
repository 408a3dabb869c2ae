"""The record of one decision: the forecast, the decision (with its plan) and what the reconcile did.

Typed on the inside, a dict on the outside: `to_dict` is what goes to MLflow as `decision.json` and what
an XCom would carry; `from_dict` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..cluster.reconcile import ReconcileResult
from ..forecasting.base import Forecast
from ..plans import Plan
from .decision import Decision

# 2: the forecast, the decision's fields and the reconcile result are typed values (1 held plain dicts;
# a forecast's extra keys, such as a replayed trace's second, now go to `extra`).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class DecisionRecord:
    decided_at: str
    forecast: Forecast
    decision: Decision
    reconcile: ReconcileResult | None  # None when the plan did not change (reconcile skipped)
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def pipeline(self) -> str:
        return self.plan.pipeline

    @property
    def plan(self) -> Plan:
        return self.decision.plan

    @property
    def previous_plan_id(self) -> str | None:
        return self.decision.previous_plan_id

    @property
    def planned_load_rps(self) -> float:
        return self.decision.load_rps

    @property
    def changed(self) -> bool:
        return self.decision.changed

    @property
    def why(self) -> str:
        """One sentence a person can read in the MLflow UI."""
        return explain(self.decision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "decided_at": self.decided_at,
            "forecast": self.forecast.to_dict(),
            "planned_load_rps": self.planned_load_rps,
            "plan": self.plan.to_dict(),
            "previous_plan_id": self.previous_plan_id,
            "proposal_id": self.decision.proposal_id,
            "reason": self.decision.reason,
            "solve_s": self.decision.solve_s,
            "models": dict(self.decision.models),
            "pipeline_source": dict(self.decision.pipeline),
            "drift": dict(self.decision.drift),
            "load_basis": dict(self.decision.load_basis),
            "reconcile": None if self.reconcile is None else self.reconcile.to_dict(),
            "why": self.why,
            "changed": self.changed,
            "schema_version": self.schema_version,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DecisionRecord:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"decision record schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
            )
        decision = Decision(
            plan=Plan.from_dict(d["plan"], source="decision record plan"),
            previous_plan_id=d.get("previous_plan_id"),
            reason=str(d.get("reason", "")),
            proposal_id=str(d["proposal_id"]),
            load_rps=float(d["planned_load_rps"]),
            solve_s=float(d.get("solve_s", 0.0)),
            models=dict(d.get("models") or {}),
            pipeline=dict(d.get("pipeline_source") or {}),
            drift=dict(d.get("drift") or {}),
            load_basis=dict(d.get("load_basis") or {}),
        )
        return cls(
            decided_at=str(d["decided_at"]),
            forecast=Forecast.from_dict(d["forecast"]),
            decision=decision,
            reconcile=None if d.get("reconcile") is None else ReconcileResult.from_dict(d["reconcile"]),
            extra=dict(d.get("extra") or {}),
        )


def explain(decision: Decision) -> str:
    """What runs next and why, in words: the plan's stages, figures and binding constraints, then the
    reason it was kept or chosen."""
    plan = decision.plan
    stages = ", ".join(f"{s.stage}={s.variant} b{s.batch} x{s.replicas}" for s in plan.stages)
    if not plan.feasible:
        text = f"no configuration meets the SLA ({plan.message}); best effort: {stages}"
    else:
        binding = ", ".join(plan.binding) or "none (slack in every constraint)"
        verb = "chose" if decision.changed else "kept"
        text = (
            f"{verb} {stages} for {plan.load_rps:.1f} req/s{_load_basis(decision)}: "
            f"accuracy {plan.accuracy:.4f}, cost "
            f"{plan.cost:g}, latency {plan.latency_s * 1000:.0f} of {plan.sla_s * 1000:.0f} ms; "
            f"binding: {binding}"
        )
    text = f"{text}; {decision.reason}" if decision.reason else text
    note = decision.pipeline.get("note") if decision.pipeline.get("origin") == "cache-fallback" else ""
    return f"{text}; {note}" if note else text


def _load_basis(decision: Decision) -> str:
    """Where the planned load came from, when the decision knows: the forecast's quantile now, the rate
    measured now when that was higher, and the load the capacity hold kept when that was."""
    b = decision.load_basis
    if not b:
        return ""
    q, now, point, measured = b.get("quantile"), b.get("now"), b.get("point"), b.get("measured")
    if q is None or now is None:
        return ""
    text = f" (q{q:g} of the forecast: {now:.1f} now"
    if measured is not None and measured > now:
        text += f"; {measured:.1f} measured now, planned for instead"
    recent = b.get("recent") or []
    if decision.load_rps > max(now, measured or 0.0) + 1e-9:
        text += f"; {decision.load_rps:.1f} held for the last {len(recent)} loads"
    return f"{text}; point forecast {point:.1f})" if point is not None else f"{text})"
