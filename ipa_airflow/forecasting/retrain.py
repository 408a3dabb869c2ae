"""Train a load forecaster and register it in MLflow, only if its backtest is better than the registered
one's: the one rule `ipa forecast train` and the weekly `ipa_train_forecaster` DAG both follow, on a
trace file or on the last days of live load in Prometheus.

Better means a lower quantile loss at the planner's quantile (see backtesting/backtest.quantile_loss).
Comparing under-prediction rates would not do: two calibrated forecasters both miss about the
quantile's share, and which one misses a little less is noise; the loss also rewards the one that
needs less margin.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..registry.mlflow_profiles import MlflowUnreachable, RegistryError, check_reachable
from ..settings import ForecasterSettings, check_tracking_uri, load_settings
from ..spec import Adaptation
from .backtesting.backtest import BacktestResult, backtest, score, walks
from .backtesting.misses import MissProfile
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
# The quantiles every trained forecaster is backtested at and logged with (None: the point forecast);
# the planner's quantile is added when it is not one of them.
SCORED = (None, 0.9, 0.95, 0.99)
# Where the forecasts missed, by minute and hour, is logged beside the metrics at this quantile.
MISSES_AT = 0.95


@dataclass(frozen=True)
class TrainOutcome:
    """What `train_and_register` did: the new forecaster's backtest, the registered one's (when there
    was one to compare with) and, when the new one was better, where it was registered."""

    model: str
    registered_name: str
    quantile: float  # the planner's quantile, at which the new and the registered forecaster compete
    fit_s: float
    metrics: dict[str, float]  # the new forecaster's backtest, point and every SCORED quantile
    current: dict[str, float] | None  # the registered version's backtest at `quantile`; None: none usable
    registered: bool
    run_id: str | None = None
    version: str | None = None
    load: dict[str, Any] | None = field(default=None)  # the Prometheus days trained on, if any

    @property
    def loss_metric(self) -> str:
        """The metric the rule compares: the quantile loss at `quantile`, named as BacktestResult.metrics
        names it (q099_quantile_loss)."""
        return f"q{self.quantile:g}".replace(".", "") + "_quantile_loss"

    @property
    def model_uri(self) -> str | None:
        return None if self.version is None else f"models:/{self.registered_name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (what the DAG's task hands on through XCom)."""
        out: dict[str, Any] = {
            "model": self.model,
            "registered_name": self.registered_name,
            "quantile": self.quantile,
            "fit_s": round(self.fit_s, 2),
            "new": self.metrics,
            "registered": self.registered,
        }
        if self.current is not None:
            out["current"] = self.current
        if self.registered:
            out.update(run_id=self.run_id, version=self.version, model_uri=self.model_uri)
        if self.load is not None:
            out["load"] = self.load
        return out


def train_and_register(
    trace: str,
    *,
    tracking_uri: str,
    train_days: str,
    test_days: str,
    model: str = ForecasterSettings.model,
    registered_name: str = "ipa-load-forecaster",
    damping: float = 8.0,
    seed: int = 0,
    quantile: float = Adaptation().quantile,
) -> TrainOutcome:
    """Fit `model` on the train days of `trace` and register it, with its backtest on the test days
    (metrics and where it missed), when its quantile loss at `quantile` (the planner's) is at least
    MIN_GAIN lower than the registered latest version's, or when none can be read.

    Everything that can be refused is refused before the fit, which takes minutes: a forecaster MLflow
    cannot keep and an unusable tracking URI before the trace is read, a bad trace or day range before
    MLflow is asked, and an MLflow that does not answer before the fit."""
    if model not in REGISTRABLE:
        raise ValueError(
            f"cannot register a '{model}' forecaster in MLflow; choose one of {', '.join(REGISTRABLE)}"
        )
    check_tracking_uri(tracking_uri)
    series = read_trace(trace, damping=damping)
    (train, train_start), (test, test_start) = named_days(series, train_days), named_days(series, test_days)
    check_reachable(tracking_uri)  # the fit's result would have nowhere to go
    fitted = forecaster(model).fit(train, seed=seed, start_s=train_start)
    walked = walks(fitted, train, test, quantiles=(*SCORED, quantile), test_start_s=test_start)
    metrics: dict[str, float] = {}
    for q, w in walked.items():
        metrics.update(score(fitted, w, q).metrics())
    new = score(fitted, walked[quantile], quantile)
    old = _registered_backtest(registered_name, tracking_uri, train, test, quantile, test_start)
    outcome = TrainOutcome(
        model=model,
        registered_name=registered_name,
        quantile=quantile,
        fit_s=fitted.fit_s,
        metrics=metrics,
        current=None if old is None else old.metrics(),
        registered=old is None or better(new, old),
    )
    if not outcome.registered:
        return outcome
    # Where the forecasts missed goes beside the metrics, for people browsing the run in MLflow.
    from ..reports.forecast_plot import plot_misses

    misses = MissProfile.of(walked[MISSES_AT])
    with tempfile.TemporaryDirectory(prefix="ipa-train-") as tmp:
        summary = Path(tmp) / "backtest_misses.json"
        summary.write_text(json.dumps(misses.to_dict(), indent=1))
        plot = plot_misses(
            walked[MISSES_AT], misses, Path(tmp) / "backtest_misses.png", title=f"{fitted.name} q{MISSES_AT}"
        )
        run_id, version = log_forecaster(
            fitted,
            tracking_uri=tracking_uri,
            experiment=load_settings(tracking_uri=tracking_uri).mlflow.forecasts_experiment,
            registered_name=registered_name,
            metrics=metrics,
            train_series=train,
            tags={"ipa.trace": str(trace), "ipa.train_days": train_days, "ipa.test_days": test_days},
            artifacts=(summary, plot),
        )
    return replace(outcome, run_id=run_id, version=version)


def retrain_on_recent_load(
    source: PrometheusSource, *, days: int, now: float, train_days: str, test_days: str, **kwargs
) -> TrainOutcome:
    """`train_and_register` on the last `days` whole UTC days of `source` (day 0 the oldest), undamped;
    the other arguments are train_and_register's."""
    start, end = last_whole_days(now, days)
    history = source.history(start, end).require(MIN_COVERED, what="to retrain the load forecaster")
    with tempfile.TemporaryDirectory(prefix="ipa-load-") as tmp:
        trace = write_trace(Path(tmp) / "load.txt.gz", history.rates)
        out = train_and_register(
            str(trace), train_days=train_days, test_days=test_days, damping=1.0, **kwargs
        )
    load = {"start": start, "end": end, "covered": round(history.covered, 5)}
    return replace(out, load=load)


def _registered_backtest(name, tracking_uri, train, test, quantile, test_start) -> BacktestResult | None:
    """The latest registered version's backtest on the same days, or None when none can be read."""
    uri = f"models:/{name}/latest"
    try:
        current = load_forecaster(uri, tracking_uri=tracking_uri)
    except MlflowUnreachable:
        raise  # nothing to compare with and nowhere to register: fail, and the registered version stays
    except (RegistryError, KeyError, ValueError) as exc:  # none registered yet, or one this code cannot read
        log.warning("no usable %s to compare with (%s); registering the new forecaster", uri, exc)
        return None
    return backtest(current, train, test, quantile=quantile, test_start_s=test_start)


def better(new: BacktestResult, old: BacktestResult) -> bool:
    """Whether `new`'s quantile loss is at least MIN_GAIN lower than `old`'s, on the same days."""
    if new.quantile_loss is None or old.quantile_loss is None:
        raise ValueError("retraining compares quantile forecasts: both backtests need a quantile")
    return new.quantile_loss < (1 - MIN_GAIN) * old.quantile_loss
