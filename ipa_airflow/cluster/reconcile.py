"""The reconciler: compute desired state, diff it against the cluster, apply it in an order that never
dips capacity, wait for rollouts, and roll back what does not become available in time.

Order: stages that are created, switch variant, scale up or otherwise change are applied first and waited
for; only when all are available do stages scale down. If one rollout misses its deadline, every stage
this run changed is restored to what it was, and nothing is scaled down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plans import Plan
from ..spec import PipelineSpec
from .backends import ClusterBackend, ClusterError, FieldConflict, RolloutStatus
from .desired import desired_state
from .diff import CREATE, UNCHANGED, StageChange, diff


class GuardrailError(ValueError):
    """The plan breaks the spec's guardrails; nothing was applied."""


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    name: str
    action: str
    status: str  # unchanged | dry-run | applied | rolled-back | failed | conflict | skipped
    message: str = ""
    changes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "changes": self.changes,
        }


@dataclass(frozen=True)
class ReconcileResult:
    pipeline: str
    plan_id: str
    dry_run: bool
    outcomes: tuple[StageOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.status in ("unchanged", "dry-run", "applied") for o in self.outcomes)

    @property
    def changed(self) -> bool:
        return any(o.status == "applied" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "plan_id": self.plan_id,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "changed": self.changed,
            "stages": [o.to_dict() for o in self.outcomes],
        }


def check_guardrails(plan: Plan, spec: PipelineSpec) -> None:
    problems = []
    for s in plan.stages:
        if s.replicas < 1:
            problems.append(
                f"stage '{s.stage}' would run {s.replicas} replicas (a stage is never scaled to zero)"
            )
        if s.replicas > spec.limits.max_replicas:
            problems.append(
                f"stage '{s.stage}' wants {s.replicas} replicas, over limits.max_replicas "
                f"({spec.limits.max_replicas})"
            )
    if {s.stage for s in plan.stages} != set(spec.stage_names):
        problems.append(
            f"the plan's stages {[s.stage for s in plan.stages]} are not the spec's {spec.stage_names}"
        )
    if spec.limits.max_cost is not None and plan.cost > spec.limits.max_cost + 1e-9:
        problems.append(f"the plan costs {plan.cost:g}, over limits.max_cost ({spec.limits.max_cost:g})")
    if problems:
        raise GuardrailError("plan refused: " + "; ".join(problems))


def _restorable(observed: dict[str, Any]) -> dict[str, Any]:
    """The applyable part of an object as it was before this run."""
    meta = observed["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": observed["spec"],
    }


def reconcile(
    plan: Plan,
    spec: PipelineSpec,
    backend: ClusterBackend,
    *,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 2.0,
    base: Path | None = None,
) -> ReconcileResult:
    check_guardrails(plan, spec)
    manifests = desired_state(plan, spec, base=base)  # invalid templates fail here, before any apply
    by_name = {m["metadata"]["name"]: m for m in manifests}
    observed = {name: backend.get(spec.namespace, name) for name in by_name}
    changes = diff(manifests, observed)
    force = spec.deployment.force_conflicts
    outcomes: dict[str, StageOutcome] = {}

    def record(c: StageChange, status: str, message: str = "") -> None:
        outcomes[c.name] = StageOutcome(
            c.stage, c.name, c.action, status, message, {k: [b, a] for k, (b, a) in c.changes.items()}
        )

    for c in changes:
        if c.action == UNCHANGED:
            record(c, "unchanged")
    pending = [c for c in changes if c.action != UNCHANGED]
    if dry_run:
        for c in pending:
            backend.apply(
                by_name[c.name], dry_run=True, force=force
            )  # the server validates, nothing persists
            record(c, "dry-run", c.describe())
        return _result(plan, spec, True, changes, outcomes)

    first = [c for c in pending if c.adds_capacity]
    later = [c for c in pending if not c.adds_capacity]
    applied: list[StageChange] = []
    failure = ""
    for c in first:
        try:
            backend.apply(by_name[c.name], force=force)
        except FieldConflict as exc:
            record(c, "conflict", str(exc))
            failure = str(exc)
            break
        except ClusterError as exc:
            record(c, "failed", str(exc))
            failure = str(exc)
            break
        applied.append(c)
    if not failure:
        deadline = clock() + spec.deployment.rollout_deadline_s
        for c in applied:
            if not _wait(backend, spec.namespace, c.name, deadline, clock, sleep, poll_s):
                failure = (
                    f"rollout of {c.name} did not become available within "
                    f"{spec.deployment.rollout_deadline_s:g} s"
                )
                record(c, "failed", failure)
                break
    if failure:
        for c in applied:
            before = observed[c.name]
            if before is None:
                if c.name not in outcomes:
                    record(
                        c,
                        "failed",
                        f"created, but the plan was abandoned: {failure}; it has no earlier state",
                    )
                continue
            backend.apply(_restorable(before), force=True)
            record(c, "rolled-back", f"restored {c.name} to its previous state: {failure}")
        for c in pending:
            if c.name not in outcomes:
                record(c, "skipped", f"not applied: {failure}")
        return _result(plan, spec, False, changes, outcomes)
    for c in applied:
        record(c, "applied", c.describe())
    for c in later:
        try:
            backend.apply(by_name[c.name], force=force)
            record(c, "applied", c.describe())
        except ClusterError as exc:
            record(c, "conflict" if isinstance(exc, FieldConflict) else "failed", str(exc))
    return _result(plan, spec, False, changes, outcomes)


def _wait(backend, namespace, name, deadline, clock, sleep, poll_s) -> bool:
    while True:
        obj = backend.get(namespace, name)
        if obj is not None and RolloutStatus.of(obj).complete:
            return True
        if clock() >= deadline:
            return False
        sleep(poll_s)


def _result(plan, spec, dry_run, changes, outcomes) -> ReconcileResult:
    return ReconcileResult(plan.pipeline, plan.plan_id, dry_run, tuple(outcomes[c.name] for c in changes))


__all__ = ["CREATE", "GuardrailError", "ReconcileResult", "StageOutcome", "check_guardrails", "reconcile"]
