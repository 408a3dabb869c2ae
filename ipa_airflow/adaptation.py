"""One adaptation step, split along the data-flow arrows so each part is one Airflow task:
forecast -> plan -> reconcile -> record. Every function takes and returns plain JSON-able dicts."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .cluster.desired import ANN_PLAN, deployment_name
from .cluster.reconcile import reconcile
from .decisions import DecisionRecord, explain
from .forecasting.base import Forecast
from .forecasting.registry import forecaster
from .forecasting.sources import read_trace
from .forecasting.step import forecast_step
from .optimizer import plan as solve_plan
from .pipelines import load_pipeline
from .plans import Plan

log = logging.getLogger(__name__)
HISTORY_S = 6 * 3600  # what a forecaster without a registered model is fitted on, before each decision


def forecast_from_trace(
    trace: str,
    *,
    damping: float,
    second: int,
    model: str = "exp-smoothing",
    last_good: dict | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Forecast at `second` of a replayed trace, from what a controller would have seen until then."""
    series = read_trace(trace, damping=damping)
    second = second % len(series)
    history = np.roll(series, -(second + 1))[-HISTORY_S:]  # the HISTORY_S seconds ending at `second`
    fitted = forecaster(model).fit(history)
    now = now or dt.datetime.now(dt.UTC)
    prev = Forecast.from_dict(last_good) if last_good else None
    f = forecast_step(lambda: history[-fitted.window.history_s :], fitted, now=now, last_good=prev)
    out = f.to_dict()
    out["trace_second"] = second
    out["observed_peak_next_20s"] = float(np.roll(series, -(second + 1))[:20].max())  # for the record only
    return out


def current_plan_id(spec_path: str, backend) -> str | None:
    """The plan the cluster runs now, read from the Deployments' annotations (None if mixed or absent)."""
    spec = load_pipeline(spec_path).spec
    ids = set()
    for stage in spec.stage_names:
        obj = backend.get(spec.namespace, deployment_name(spec.name, stage))
        ids.add(None if obj is None else obj["metadata"].get("annotations", {}).get(ANN_PLAN))
    return ids.pop() if len(ids) == 1 else None


def plan_step(
    spec_path: str,
    forecast: dict[str, Any],
    *,
    quantile: float | None = 0.95,
    policy: str = "ipa",
    registry=None,
) -> dict[str, Any]:
    pipeline = load_pipeline(spec_path, registry=registry)
    load = Forecast.from_dict({k: v for k, v in forecast.items() if k in Forecast.__dataclass_fields__}).at(
        quantile
    )
    return solve_plan(pipeline.spec, pipeline.profiles, load, policy=policy).to_dict()


def reconcile_step(spec_path: str, plan: dict[str, Any], backend, *, dry_run: bool = False, **kwargs) -> dict:
    pipeline = load_pipeline(spec_path)
    return reconcile(
        Plan.from_dict(plan), pipeline.spec, backend, dry_run=dry_run, base=Path(spec_path).parent, **kwargs
    ).to_dict()


def decision(
    spec_path: str,
    forecast: dict,
    plan: dict,
    previous_plan_id: str | None,
    reconciled: dict | None,
    *,
    now: dt.datetime | None = None,
) -> DecisionRecord:
    return DecisionRecord(
        pipeline=plan["pipeline"],
        decided_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        forecast=forecast,
        planned_load_rps=plan["load_rps"],
        plan=plan,
        previous_plan_id=previous_plan_id,
        reconcile=reconciled,
        why=explain(plan, previous_plan_id),
        extra={"spec": str(spec_path)},
    )
