"""Reconciling a fleet: every pipeline's decision applied by `reconcile`, in an order that keeps the
cluster within the fleet's quota between pipelines.

A pipeline's reconcile is a transaction (reconcile.py): make-before-break inside the pipeline, rolled
back on failure. Across pipelines the order is what matters: a fleet plan that fits the quota can still
overrun it on the way, when a pipeline that grows is applied before the one that shrinks to make room.
So:

1. What runs is read from the cluster (each stage's Deployment) and priced per quota pool, as the
   decision's plan is (a replica draws its shape's cores or devices from every pool named by its
   resource kind or its hardware, the rule of `fleet.spec`).
2. Pipelines whose change frees capacity (uses less of some pool and more of none) go first, then
   changes that use the same (a new batch size, a variant on the same shape), then the ones that take
   capacity.
3. Before each capacity-taking change, the running total (what every pipeline of the fleet runs now,
   after the changes so far) plus what it adds must fit the quota in every pool it grows; when it does
   not (a freeing change before it failed, and its pipeline still runs the old plan), it is held back,
   said so, and left to the next decision. A change already over a quota nobody freed is never made.
4. A pipeline whose reconcile fails is reported with its result (`reconcile` has rolled it back) or
   with the error raised before it wrote anything; the others still go, in order.

Within a pipeline, a change that switches a stage's variant or shape runs the new pods beside the old
ones until they are ready (`reconcile` never dips capacity): the quota holds between pipelines, not
during that overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..control.decision import Decision
from ..control.step import apply
from ..spec import PipelineSpec, deployment_name
from .backends import ClusterError
from .desired import decode_stage
from .result import ON_BOTH, ON_OLD, ReconcileResult

_TOL = 1e-9
# How a change moves the pipeline's usage of the quota; the apply order is this tuple's.
UNCHANGED, FREES, SAME, TAKES = "unchanged", "frees", "same", "takes"
_ORDER = {FREES: 0, SAME: 1, TAKES: 2, UNCHANGED: 3}


def stage_usage(hardware: str, resources: str, replicas: int, pools: Sequence[str]) -> dict[str, float]:
    """What `replicas` replicas of a shape take of each pool: resources 'cpu=2' on 'epyc' draws 2 cores
    per replica from pool 'cpu' and from pool 'epyc', whichever the quota names."""
    kind, _, units = resources.partition("=")
    return {p: replicas * float(units or 0) if p in (kind, hardware) else 0.0 for p in pools}


def _total(parts: Sequence[Mapping[str, float]], pools: Sequence[str]) -> dict[str, float]:
    return {p: sum(u.get(p, 0.0) for u in parts) for p in pools}


def plan_usage(decision: Decision, pools: Sequence[str]) -> dict[str, float]:
    """What the decision's plan takes of each pool."""
    return _total(
        [stage_usage(s.hardware, s.resources, s.replicas, pools) for s in decision.plan.stages], pools
    )


def running_usage(spec: PipelineSpec, backend, pools: Sequence[str]) -> dict[str, float]:
    """What the pipeline's Deployments take of each pool now. A stage without a Deployment of ours
    (or without the annotations the reconciler writes) counts as nothing. Raises ClusterError."""
    parts = []
    for stage in spec.stage_names:
        key = decode_stage(stage, backend.get(spec.namespace, deployment_name(spec.name, stage)))
        if key is not None:  # (stage, variant, hardware, resources, dtype, batch, replicas)
            parts.append(stage_usage(key[2], key[3], key[6], pools))
    return _total(parts, pools)


def kind_of(before: Mapping[str, float], after: Mapping[str, float], changed: bool) -> str:
    if not changed:
        return UNCHANGED
    if any(after[p] > before[p] + _TOL for p in before):
        return TAKES  # growing any pool needs room there, whatever it gives back elsewhere
    if any(after[p] < before[p] - _TOL for p in before):
        return FREES
    return SAME


@dataclass(frozen=True)
class PipelineApply:
    """What reconciling one pipeline of the fleet did."""

    pipeline: str
    kind: str  # unchanged | frees | same | takes
    before: Mapping[str, float]  # what ran, per pool
    after: Mapping[str, float]  # what the decision's plan takes, per pool
    step: int | None = None  # its place in the order the fleet was applied in (None: not attempted)
    result: ReconcileResult | None = None  # None: nothing to apply, held back, or refused before writing
    error: str = ""  # raised before anything was written: a refused plan, a busy or unreadable cluster
    held: str = ""  # not attempted: it would have taken the fleet over its quota

    @property
    def ok(self) -> bool:
        return not self.error and not self.held and (self.result is None or self.result.ok)

    @property
    def now(self) -> dict[str, float]:
        """What the pipeline takes of each pool after this run: the new plan's usage when it landed (or
        was previewed), the old one's when it did not, and the larger of the two per pool when the
        rollback could not say (a stage on an unknown or on the new plan after a failure)."""
        if self.result is None or self.error or self.held:
            return dict(self.after if self.kind == UNCHANGED else self.before)
        if self.result.ok:
            return dict(self.after)
        if {o.on for o in self.result.outcomes} <= {ON_OLD, ON_BOTH}:
            return dict(self.before)
        return {p: max(self.before[p], self.after[p]) for p in self.before}

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "kind": self.kind,
            "step": self.step,
            "ok": self.ok,
            "before": dict(self.before),
            "after": dict(self.after),
            "error": self.error,
            "held": self.held,
            "reconcile": None if self.result is None else self.result.to_dict(),
        }


@dataclass(frozen=True)
class FleetReconcile:
    pipelines: tuple[PipelineApply, ...]  # in the order they were applied (unchanged ones last)
    quota: Mapping[str, float]
    # The most each pool held between two pipelines' reconciles (from what ran and what each did).
    peak: Mapping[str, float] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pipelines)

    @property
    def order(self) -> tuple[str, ...]:
        """The pipelines that were reconciled, in order."""
        return tuple(p.pipeline for p in sorted(self.attempted, key=lambda p: p.step or 0))

    @property
    def attempted(self) -> tuple[PipelineApply, ...]:
        return tuple(p for p in self.pipelines if p.step is not None)

    def of(self, pipeline: str) -> PipelineApply:
        for p in self.pipelines:
            if p.pipeline == pipeline:
                return p
        raise KeyError(pipeline)

    def summary(self) -> str:
        """One line: what went in which order, and what did not."""
        done = (
            ", ".join(f"{p.pipeline} ({p.kind})" for p in self.pipelines if p.step is not None) or "nothing"
        )
        bad = [
            f"{p.pipeline}: {p.held or p.error or (p.result.summary() if p.result else '')}"
            for p in self.pipelines
            if not p.ok
        ]
        return f"applied in order: {done}" + (f"; not applied: {'; '.join(bad)}" if bad else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "order": list(self.order),
            "quota": dict(self.quota),
            "peak": dict(self.peak),
            "pipelines": [p.to_dict() for p in self.pipelines],
        }


def _fits(now: Mapping[str, float], before, after, quota: Mapping[str, float]) -> str:
    """'' when growing from `before` to `after` keeps every pool it grows within the quota; else why not."""
    over = [
        f"{p} {now[p] - before[p] + after[p]:g} of {quota[p]:g}"
        for p in quota
        if after[p] > before[p] + _TOL
        and now[p] - before[p] + after[p] > quota[p] + _TOL * max(1.0, quota[p])
    ]
    if not over:
        return ""
    return (
        f"held back: it would take the fleet to {', '.join(over)} (what runs now, after the changes "
        "before it); the next decision tries again"
    )


def reconcile_fleet(
    decisions: Mapping[str, Decision],
    specs: Mapping[str, PipelineSpec],
    backend,
    *,
    quota: Mapping[str, float],
    bases: Mapping[str, Path | None] | None = None,
    dry_run: bool = False,
    **waits: Any,
) -> FleetReconcile:
    """Apply each pipeline's decision (`control.apply`, so `reconcile`) in the order that frees capacity
    before taking it, holding back a capacity-taking change that would overrun `quota` given what then
    runs. `specs` holds every pipeline of the fleet (their usage counts towards the quota even without a
    decision here); `bases` each spec's folder (template files); `waits` go to `reconcile` (clock, sleep,
    poll_s, holder, lock_wait_s). Raises ClusterError only when what runs cannot be read (nothing was
    written then); a pipeline's own failure is in its `PipelineApply`."""
    unknown = [n for n in decisions if n not in specs]
    if unknown:
        raise ValueError(f"decisions for pipelines the fleet does not have: {', '.join(unknown)}")
    pools = tuple(quota)
    running = {name: running_usage(spec, backend, pools) for name, spec in specs.items()}
    now = _total(list(running.values()), pools)
    peak = dict(now)
    planned = []
    for i, (name, d) in enumerate(decisions.items()):
        after = plan_usage(d, pools)
        planned.append((_ORDER[kind_of(running[name], after, d.changed)], i, name, after))
    out: list[PipelineApply] = []
    step = 0
    for _, _, name, after in sorted(planned):
        d, before = decisions[name], running[name]
        kind = kind_of(before, after, d.changed)
        if kind == UNCHANGED:
            out.append(PipelineApply(name, kind, before, after))
            continue
        held = _fits(now, before, after, quota) if kind == TAKES else ""
        if held:
            out.append(PipelineApply(name, kind, before, after, held=held))
            continue
        base, step = (bases or {}).get(name), step + 1
        try:
            result = apply(d, specs[name], backend, base=base, dry_run=dry_run, **waits)
            done = PipelineApply(name, kind, before, after, step=step, result=result)
        # Raised before anything was written: a busy or unreadable cluster, a refused plan (guardrails, a
        # plan the spec does not allow, a bad template: all ValueErrors).
        except (ClusterError, ValueError) as exc:
            done = PipelineApply(name, kind, before, after, step=step, error=str(exc))
        out.append(done)
        now = {p: now[p] - before[p] + done.now[p] for p in pools}
        peak = {p: max(peak[p], now[p]) for p in pools}
    return FleetReconcile(tuple(out), dict(quota), peak, dry_run)


__all__ = [
    "FREES",
    "SAME",
    "TAKES",
    "UNCHANGED",
    "FleetReconcile",
    "PipelineApply",
    "plan_usage",
    "reconcile_fleet",
    "running_usage",
    "stage_usage",
]
