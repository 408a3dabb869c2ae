"""Retrain the load forecaster and register it only if its backtest is better than the registered one,
on a trace file or on the last days of live load in Prometheus.

Better means a lower quantile loss at the planner's quantile (see backtesting/backtest.quantile_loss).
Comparing under-prediction rates would not do: two calibrated forecasters both miss about the
quantile's share, and which one misses a little less is noise; the loss also rewards the one that
needs less margin.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ..registry.mlflow_profiles import MlflowUnreachable, RegistryError
from ..settings import load_settings
from ..spec import Adaptation
from .backtesting.backtest import BacktestResult, backtest
from .catalog import forecaster
from .mlflow_store import REGISTRABLE, load_forecaster, log_forecaster
from .sources import PrometheusSource, last_whole_days, named_days, read_trace, write_trace

log = logging.getLogger(__name__)
# How much lower the new forecaster's quantile loss must be to replace the registered one: less is the
# noise of one more training run, and every new version is a change in production.
MIN_GAIN = 0.01
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
    quantile: float = Adaptation().quantile,
) -> dict:
    """Fit `model` on the train days and register it when, on the test days, its quantile loss at
    `quantile` (the planner's) is at least MIN_GAIN lower than the registered version's."""
    if model not in REGISTRABLE:
        raise ValueError(
            f"cannot register a '{model}' forecaster in MLflow; choose one of {', '.join(REGISTRABLE)}"
        )
    series = read_trace(trace, damping=damping)
    (train, train_start), (test, test_start) = named_days(series, train_days), named_days(series, test_days)
    fitted = forecaster(model).fit(train, seed=seed, start_s=train_start)
    new = backtest(fitted, train, test, quantile=quantile, test_start_s=test_start)
    uri = f"models:/{registered_name}/latest"
    try:
        current = load_forecaster(uri, tracking_uri=tracking_uri)
    except MlflowUnreachable:
        raise  # nothing to compare with and nowhere to register: fail, and the registered version stays
    except (RegistryError, KeyError, ValueError) as exc:  # none registered yet, or one this code cannot read
        log.warning("no usable %s to compare with (%s); registering the new forecaster", uri, exc)
        current = None
    metrics = new.metrics()
    out: dict[str, Any] = {"new": metrics, "quantile": quantile, "registered": True}
    if current is not None:
        old = backtest(current, train, test, quantile=quantile, test_start_s=test_start)
        out["current"] = old.metrics()
        out["registered"] = better(new, old)
    if out["registered"]:
        run_id, version = log_forecaster(
            fitted,
            tracking_uri=tracking_uri,
            experiment=load_settings(tracking_uri=tracking_uri).mlflow.forecasts_experiment,
            registered_name=registered_name,
            metrics=metrics,
            train_series=train,
            tags={"ipa.trace": trace, "ipa.train_days": train_days, "ipa.test_days": test_days},
        )
        out.update(run_id=run_id, model_uri=f"models:/{registered_name}/{version}")
    return out


def better(new: BacktestResult, old: BacktestResult) -> bool:
    """Whether `new`'s quantile loss is at least MIN_GAIN lower than `old`'s, on the same days."""
    if new.quantile_loss is None or old.quantile_loss is None:
        raise ValueError("retraining compares quantile forecasts: both backtests need a quantile")
    return new.quantile_loss < (1 - MIN_GAIN) * old.quantile_loss
