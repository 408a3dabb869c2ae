"""One adaptation step, split along the data-flow arrows so each part is one Airflow task:
forecast -> plan -> reconcile -> record. Every function takes and returns plain JSON-able dicts (what
XCom carries); inside, the typed values of `control` (Forecast, Decision, ReconcileResult,
DecisionRecord) and the decision the loop operator and the simulator make too."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import control
from .cluster.reconcile import ReconcileResult
from .forecasting.base import FittedForecaster, Forecast
from .forecasting.catalog import forecaster
from .forecasting.mlflow_store import load_forecaster
from .forecasting.sources import read_trace
from .forecasting.step import forecast_for
from .pipeline_cache import cache_file, live_pipeline
from .pipelines import Pipeline, with_registry_variants
from .settings import DriftSettings, load_settings
from .spec import Adaptation, load_spec
from .whole_files import write_whole

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
            if not tracking_uri:
                raise ValueError("a registered forecaster needs the MLflow tracking URI")
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


def plan_task(
    spec_path: str,
    forecast: dict[str, Any],
    backend,
    *,
    quantile: float | None = None,
    policy: str = "ipa",
    registry=None,
    home: Path | None = None,
    profiles_changed_at: dt.datetime | None = None,
    read_observed: Callable[[Pipeline], Mapping[str, float | None]] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Decide on the forecast and what the cluster runs: `control.decide` on the live pipeline. With a
    registry, the pipeline is read from MLflow (registry stages, profiles no file covers) and kept under
    `home` between decisions (`pipeline_cache.live_pipeline`); MLflow down -> the kept one, said in the
    decision. `read_observed(pipeline)` gives each stage's observed p99 (ms) for the drift check (None:
    not measured). Returns the Decision's dict; `quantile` overrides the spec's."""
    now = now or dt.datetime.now(dt.UTC)
    settings = load_settings()
    pipeline = live_pipeline(
        spec_path,
        registry=registry,
        home=home or settings.home,
        now=now,
        max_age_s=settings.registry.pipeline_max_age_s,
        profiles_changed_at=profiles_changed_at,
    )
    ctx = control.context(pipeline, forecast_of(forecast), backend, now=now, policy=policy, quantile=quantile)
    decision, _ = control.decide(ctx)  # the planner keeps no state between runs
    home = home or settings.home
    drift = (
        drift_check(ctx, decision, read_observed, home=home, settings=settings.drift)
        if read_observed
        else {"measured": False}
    )
    return replace(decision, drift=drift).to_dict()


def drift_file(home: Path, spec_path: str | Path) -> Path:
    """Where a spec's drift streaks live between decisions: one file per spec file, as the kept pipeline
    (two specs may name the same pipeline in two namespaces)."""
    kept = cache_file(home, spec_path)
    return kept.parent.parent / "drift" / kept.name


def drift_check(ctx, decision, read_observed, *, home: Path, settings: DriftSettings) -> dict[str, Any]:
    """What ran while the p99 was observed, against its profile: the gaps, and the re-profiling events
    of gaps that persisted (`control.drift`). The streaks live in a small file under `home` between the
    DAG's runs. A metric that cannot be read is said, never a failed decision."""
    from .control.decide import running_plan
    from .control.drift import DriftState, assess, reprofile_events
    from .forecasting.sources import LoadSourceError
    from .forecasting.stage_latency import MLSERVER_BUCKETS_MS

    ran = running_plan(ctx, decision.load_rps)
    if ran is None:
        return {"measured": False, "note": "nothing of ours ran: no drift to measure"}
    try:
        observed = read_observed(ctx.pipeline)
    except LoadSourceError as exc:
        log.warning("drift not measured: %s", exc)
        return {"measured": False, "note": f"not measured: {exc}"}
    path = drift_file(home, ctx.pipeline.source)
    try:
        state = DriftState.from_dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        state = None
    gaps, state = assess(
        ran,
        ctx.pipeline,
        observed,
        state,
        threshold=settings.threshold,
        persist=settings.persist,
        buckets_ms=MLSERVER_BUCKETS_MS,
    )
    write_whole(path, json.dumps(state.to_dict()))
    return {
        "measured": True,
        "gaps": [g.to_dict() for g in gaps],
        "events": reprofile_events(gaps),
    }


def reconcile_task(
    spec_path: str,
    decision: dict[str, Any],
    backend,
    *,
    dry_run: bool = False,
    home: Path | None = None,
    **waits,
) -> dict | None:
    """Apply the decision's plan when it changes what runs; None when it does not (nothing to do). The
    registry variants the plan runs come with the decision (the spec file does not list them), so this
    needs nothing the plan task kept on its own disk."""
    the_decision = control.Decision.from_dict(decision)
    spec = with_registry_variants(load_spec(spec_path), the_decision.pipeline.get("variants") or {})
    result = control.apply(
        the_decision,
        spec,
        backend,
        base=Path(spec_path).parent,
        dry_run=dry_run,
        **waits,
    )
    return None if result is None else result.to_dict()


def record_task(
    spec_path: str,
    forecast: dict[str, Any],
    decision: dict[str, Any],
    reconciled: dict | None,
    *,
    now: dt.datetime | None = None,
) -> control.DecisionRecord:
    """The record of a decision from what the three tasks before handed on (`reconciled` None or a
    skip marker when the reconcile was skipped)."""
    result = None
    if isinstance(reconciled, dict) and not reconciled.get("skipped"):
        result = ReconcileResult.from_dict(reconciled)
    extra = {k: v for k, v in forecast.items() if k not in Forecast.__dataclass_fields__}
    return control.DecisionRecord(
        decided_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        forecast=forecast_of(forecast),
        decision=control.Decision.from_dict(decision),
        reconcile=result,
        extra={"spec": str(spec_path), **extra},
    )


def forecast_of(d: dict[str, Any]) -> Forecast:
    """The Forecast in a forecast task's dict, which may carry more (a replayed trace's second)."""
    return Forecast.from_dict({k: v for k, v in d.items() if k in Forecast.__dataclass_fields__})
