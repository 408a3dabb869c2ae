"""What a reconcile did, per stage and for the run: typed, with to/from dict for XCom and MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OK_STATUSES = ("unchanged", "dry-run", "applied")
# Which plan a stage is on after the run: both (it did not need to change), new, old, or unknown.
ON_BOTH, ON_NEW, ON_OLD, ON_UNKNOWN = "both", "new", "old", "unknown"


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    name: str
    action: str
    # unchanged | dry-run | applied | rolled-back | failed | conflict | skipped | rollback-failed
    # | abandoned (not restored: the pipeline's lock was lost to another writer)
    status: str
    message: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    on: str = ON_BOTH

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "action": self.action,
            "status": self.status,
            "on": self.on,
            "message": self.message,
            "changes": self.changes,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageOutcome:
        return cls(
            d["stage"],
            d["name"],
            d["action"],
            d["status"],
            d.get("message", ""),
            dict(d.get("changes") or {}),
            d.get("on", ON_BOTH),
        )


@dataclass(frozen=True)
class ReconcileResult:
    pipeline: str
    plan_id: str
    dry_run: bool
    outcomes: tuple[StageOutcome, ...]
    cause: str = ""  # the first failure, when the run did not complete

    @property
    def ok(self) -> bool:
        return all(o.status in OK_STATUSES for o in self.outcomes)

    @property
    def changed(self) -> bool:
        return any(o.status == "applied" for o in self.outcomes)

    @property
    def consistent(self) -> bool:
        """Every stage on the same plan: all on the new one, or all back on the old one."""
        on = {o.on for o in self.outcomes} - {ON_BOTH}
        return on in (set(), {ON_NEW}, {ON_OLD})

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "plan_id": self.plan_id,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "changed": self.changed,
            "consistent": self.consistent,
            "cause": self.cause,
            "stages": [o.to_dict() for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReconcileResult:
        return cls(
            d["pipeline"],
            d["plan_id"],
            bool(d["dry_run"]),
            tuple(StageOutcome.from_dict(o) for o in d["stages"]),
            d.get("cause", ""),
        )

    def summary(self) -> str:
        """One line for a log or an error: what failed, and where every stage is now."""
        if self.ok:
            return f"plan {self.plan_id} {'previewed' if self.dry_run else 'running'}"
        on = {o.on for o in self.outcomes} - {ON_BOTH}
        unknown = [o.stage for o in self.outcomes if o.on == ON_UNKNOWN]
        if unknown:
            where = (
                f"stages {unknown} are in an unknown state (a write got no answer, or the pipeline's lock "
                "was lost); the next reconcile reads what runs and converges"
            )
        elif on <= {ON_OLD}:
            where = "every stage is on its previous plan"
        elif on == {ON_NEW}:
            where = "every changed stage is still on the new plan (the rollback could not restore it)"
        else:
            where = "stages are on different plans: " + ", ".join(f"{o.stage}={o.on}" for o in self.outcomes)
        return f"plan {self.plan_id} not applied: {self.cause}; {where}"
