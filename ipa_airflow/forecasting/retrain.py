"""Retrain the load forecaster and register it only if its backtest is better than the registered one,
on a trace file or on the last days of live load in Prometheus."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .backtest import backtest
from .mlflow_store import load_forecaster, log_forecaster
from .registry import forecaster
from .sources import PrometheusSource, last_whole_days, named_days, read_trace, write_trace

OVERPROVISION_TOLERANCE = 0.01  # a new model may over-provision this much more if it under-predicts less
# The least share of seconds Prometheus must hold a sample for: zeros where it kept nothing would be
# learned as load that never came.
MIN_COVERED = 0.9


def retrain_on_recent_load(
    source: PrometheusSource, *, days: int, now: float, train_days: str, test_days: str, **kwargs
) -> dict:
    """`retrain` on the last `days` whole UTC days of `source` (day 0 the oldest), undamped; the other
    arguments are retrain's."""
    start, end = last_whole_days(now, days)
    history = source.history(start, end).require(MIN_COVERED, what="to retrain the load forecaster")
    with tempfile.TemporaryDirectory(prefix="ipa-load-") as tmp:
        trace = write_trace(Path(tmp) / "load.txt.gz", history.rates)
        out = retrain(str(trace), train_days=train_days, test_days=test_days, damping=1.0, **kwargs)
    return {**out, "load": {"start": start, "end": end, "covered": round(history.covered, 5)}}


def retrain(
    trace: str,
    *,
    tracking_uri: str,
    train_days: str,
    test_days: str,
    model: str = "lstm-quantile",
    registered_name: str = "ipa-load-forecaster",
    damping: float = 8.0,
    seed: int = 0,
) -> dict:
    series = read_trace(trace, damping=damping)
    (train, train_start), (test, test_start) = named_days(series, train_days), named_days(series, test_days)
    fitted = forecaster(model).fit(train, seed=seed, start_s=train_start)
    new = backtest(fitted, train, test, quantile=0.95, test_start_s=test_start)
    current = None
    try:
        old = load_forecaster(f"models:/{registered_name}/latest", tracking_uri=tracking_uri)
        current = backtest(old, train, test, quantile=0.95, test_start_s=test_start)
    except Exception:  # nothing registered yet (or unloadable): the new model wins by default
        current = None
    better = current is None or (
        new.under_prediction_rate < current.under_prediction_rate
        and new.mean_over_provisioning <= current.mean_over_provisioning + OVERPROVISION_TOLERANCE
    )
    out = {"new": new.to_dict(), "current": current.to_dict() if current else None, "registered": better}
    if better:
        metrics = {
            "q095_under_prediction_rate": new.under_prediction_rate,
            "q095_mean_over_provisioning": new.mean_over_provisioning,
            "q095_mape": new.mape,
        }
        run_id, version = log_forecaster(
            fitted,
            tracking_uri=tracking_uri,
            experiment="ipa-forecasters",
            registered_name=registered_name,
            metrics=metrics,
            train_series=train,
        )
        out.update(run_id=run_id, model_uri=f"models:/{registered_name}/{version}")
    return out
