"""One adaptation step, split along the data-flow arrows so each part is one Airflow task:
forecast -> plan -> reconcile -> record. Every function takes and returns plain JSON-able dicts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .cluster.desired import ANN_BATCH, ANN_SHAPE, ANN_VARIANT, deployment_name
from .cluster.reconcile import reconcile
from .decisions import DecisionRecord, explain
from .forecasting.base import FittedForecaster, Forecast
from .forecasting.mlflow_store import load_forecaster
from .forecasting.registry import forecaster
from .forecasting.sources import read_trace
from .forecasting.step import forecast_for
from .optimizer import ConfigError, policy_for, score_config
from .optimizer import plan as solve_plan
from .pipelines import load_pipeline
from .plans import Plan, config_id
from .spec import Adaptation, load_spec
from .switching import choose, held_load

log = logging.getLogger(__name__)
HISTORY_S = 6 * 3600  # what a forecaster without a registered model is fitted on, before each decision


def adaptation_of(spec_path: str | None) -> Adaptation | None:
    """The spec's adaptation settings (None without a spec: a forecast with no look-back)."""
    return load_spec(spec_path).adaptation if spec_path else None


def forecaster_for(
    model: str,
    read_history: Callable[[], np.ndarray],
    *,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
) -> tuple[FittedForecaster, str]:
    """The registered forecaster at `model_uri` when given and loadable, else `model` fitted on the
    history `read_history` returns. The second value says why a fallback was used ("" when none was)."""
    if model_uri:
        try:
            return load_forecaster(model_uri, tracking_uri=tracking_uri), ""
        except Exception as exc:  # MLflow down or the model gone: adapt anyway, on a local fit
            log.warning(
                "cannot load the forecaster %s (%s); fitting %s on recent load", model_uri, exc, model
            )
            why = f"fallback: {model} fitted on recent load; {model_uri}: {exc}"
            return forecaster(model).fit(read_history()), why
    return forecaster(model).fit(read_history()), ""


def forecast_from_trace(
    trace: str,
    *,
    damping: float,
    second: int,
    model: str = "exp-smoothing",
    last_good: dict | None = None,
    now: dt.datetime | None = None,
    spec_path: str | None = None,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Forecast at `second` of a replayed trace, from what a controller would have seen until then."""
    series = read_trace(trace, damping=damping)
    second = second % len(series)
    history = np.roll(series, -(second + 1))[-HISTORY_S:]  # the HISTORY_S seconds ending at `second`
    fitted, why = forecaster_for(model, lambda: history, model_uri=model_uri, tracking_uri=tracking_uri)
    now = now or dt.datetime.now(dt.UTC)
    f = forecast_for(
        lambda window_s: history[-window_s:],
        fitted,
        now=now,
        adaptation=adaptation_of(spec_path),
        last_good=Forecast.from_dict(last_good) if last_good else None,
        note=why,
    )
    out = f.to_dict()
    out["trace_second"] = second
    out["observed_peak_next_20s"] = float(np.roll(series, -(second + 1))[:20].max())  # for the record only
    return out


def current_plan_id(spec_path: str, backend) -> str | None:
    """The id of the configuration the cluster runs now (see `running`)."""
    return running(spec_path, backend)[1]


def running(spec_path: str, backend) -> tuple[list[tuple] | None, str | None]:
    """What runs (`running_config`) and its id, as a Plan with that configuration would have it; (None,
    None) when a stage has no Deployment of ours. The id is computed from what each stage runs rather
    than read from the plan-id annotation, which only stages that changed carry forward."""
    config = running_config(spec_path, backend)
    return config, None if config is None else config_id(load_spec(spec_path).name, config)


def running_config(spec_path: str, backend) -> list[tuple] | None:
    """What each stage runs now, as `StagePlan.config_key`s read from the Deployments (None when a stage
    has no Deployment or one without the annotations the reconciler writes)."""
    spec = load_spec(spec_path)
    config = []
    for stage in spec.stage_names:
        obj = backend.get(spec.namespace, deployment_name(spec.name, stage))
        ann = (obj or {}).get("metadata", {}).get("annotations", {})
        if obj is None or not all(k in ann for k in (ANN_VARIANT, ANN_BATCH, ANN_SHAPE)):
            return None
        hardware, resources, dtype = ann[ANN_SHAPE].split(" ")
        replicas = int(obj.get("spec", {}).get("replicas") or 0)
        config.append((stage, ann[ANN_VARIANT], hardware, resources, dtype, int(ann[ANN_BATCH]), replicas))
    return config


def plan_step(
    spec_path: str,
    forecast: dict[str, Any],
    *,
    running: list | None = None,
    quantile: float | None = None,
    policy: str = "ipa",
    registry=None,
) -> dict[str, Any]:
    """Solve for the load the spec's adaptation settings plan for, then keep what runs (`running`, config
    keys) or switch, as `switching.choose` decides. `quantile` overrides the spec's."""
    pipeline = load_pipeline(spec_path, registry=registry)
    spec, a = pipeline.spec, pipeline.spec.adaptation
    f = Forecast.from_dict({k: v for k, v in forecast.items() if k in Forecast.__dataclass_fields__})
    load = held_load(f.held(quantile or a.quantile, a.stabilisation), a.stabilisation)
    proposal = solve_plan(spec, pipeline.profiles, load, policy=policy)
    current = None
    if running:
        try:
            current = score_config(spec, pipeline.profiles, load, running, policy=policy)
        except ConfigError as exc:  # the spec changed under a running pipeline: replace what runs
            log.warning("the running configuration is not one the spec offers (%s); switching", exc)
    switch = choose(current, proposal, load, spec, policy_for(policy, spec).budget_shares)
    return {
        "plan": switch.plan.to_dict(),
        "proposal_id": proposal.plan_id,
        "changed": switch.changed,
        "reason": switch.reason,
    }


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
    reason: str | None = None,
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
        why=explain(plan, previous_plan_id) + (f"; {reason}" if reason else ""),
        extra={"spec": str(spec_path)},
    )
