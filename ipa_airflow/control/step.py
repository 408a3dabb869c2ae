"""What every driver does around the decision: read what runs, decide, and reconcile when it changed.

The drivers (the Airflow tasks, the loop operator, the simulator) differ only in where the load, the
clock and the cluster come from; these functions are the part they share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cluster.desired import observe
from ..cluster.reconcile import ReconcileResult, reconcile
from ..forecasting.base import Forecast
from ..pipelines import Pipeline
from ..spec import PipelineSpec
from .context import Context
from .decision import Decision

# A policy: the planner's `decide`, or another (the simulator's HPA), over the same context.
Policy = Callable[[Context], tuple[Decision, Any]]


def context(
    pipeline: Pipeline,
    forecast: Forecast,
    backend,
    *,
    now: dt.datetime,
    policy: str = "ipa",
    quantile: float | None = None,
    state: Any = None,
    measured_rps: float | None = None,
    measured_peak_rps: float | None = None,
) -> Context:
    """The context of a decision now: what runs is read from the cluster's Deployments."""
    running = observe(pipeline.spec, backend)
    return Context(now, forecast, running, pipeline, policy, quantile, state, measured_rps, measured_peak_rps)


def apply(
    decision: Decision,
    spec: PipelineSpec,
    backend,
    *,
    base: Path | None = None,
    dry_run: bool = False,
    **waits: Any,
) -> ReconcileResult | None:
    """Reconcile the decision's plan when it changes what runs (None when it does not). `base` is the
    spec's folder (a template_file is read from it); `waits` go to `reconcile` (clock, sleep, poll_s,
    holder, lock_wait_s): a reconcile that adds capacity waits for the rollout, on the driver's clock."""
    if not decision.changed:
        return None
    return reconcile(decision.plan, spec, backend, dry_run=dry_run, base=base, **waits)


def next_tick(tick: float, interval_s: float, now: float) -> float:
    """When to decide next after the decision due at `tick` ended at `now`: one interval on, or at once
    when a reconcile outlasted the interval. Ticks missed while a reconcile waited are not made up one
    after another: one decision stands for them all."""
    return max(tick + interval_s, now)
