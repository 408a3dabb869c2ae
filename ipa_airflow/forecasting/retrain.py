"""Retrain the load forecaster and register it only if its backtest is better than the registered one."""

from __future__ import annotations

from .backtest import backtest
from .mlflow_store import load_forecaster, log_forecaster
from .registry import forecaster
from .sources import named_days, read_trace

OVERPROVISION_TOLERANCE = 0.01  # a new model may over-provision this much more if it under-predicts less


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
