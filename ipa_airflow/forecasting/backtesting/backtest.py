"""Backtesting a forecaster on a trace with the paper's cadence (decide every 10 s, horizon 20 s)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..base import FittedForecaster
from ..loss import pinball_loss
from ..windows import WindowSpec, decision_seconds
from .frontier import future_mean

# A rise: the next interval's mean rate is this much above the mean of the last interval's length.
# Rises are rare and are where SLA violations come from, so they are scored on their own.
RISE = 1.2


@dataclass(frozen=True)
class BacktestResult:
    model: str
    quantile: float | None
    decisions: int
    mape: float  # mean |forecast - actual| / actual
    rmse: float
    under_prediction_rate: float  # share of intervals whose true peak exceeded the forecast
    mean_over_provisioning: float  # mean of forecast / actual - 1
    rises: int  # decisions before a rise (see RISE)
    under_prediction_rate_on_rises: float  # share of those whose true peak exceeded the forecast
    fit_s: float
    predict_us_per_decision: float
    quantile_loss: float | None = None  # at `quantile`, for quantile forecasts (see quantile_loss)

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def metrics(self) -> dict[str, float]:
        """The scores as MLflow metrics, named by what was scored: point_mape, q099_quantile_loss, ..."""
        tag = "point" if self.quantile is None else f"q{self.quantile:g}".replace(".", "")
        names = ("mape", "under_prediction_rate", "mean_over_provisioning", "under_prediction_rate_on_rises")
        out = {f"{tag}_{k}": float(getattr(self, k)) for k in names}
        if self.quantile_loss is not None:
            out[f"{tag}_quantile_loss"] = self.quantile_loss
        return out


def misses(forecasts: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Which intervals' true peak exceeded the forecast (an under-prediction)."""
    return actual > forecasts + 1e-9


def quantile_loss(forecasts: np.ndarray, actual: np.ndarray, q: float) -> float:
    """The mean pinball loss (loss.py) of `forecasts` as the q quantile of the peaks, relative to each
    peak: the proper score of a quantile forecast, lowest for forecasts that cover the q share of peaks
    and sit as close above them as they can, so two calibrated forecasters are told apart by how sharp
    they are. Intervals without load are left out, as in the over-provisioning."""
    ok = actual > 0
    return float(pinball_loss(forecasts[ok], actual[ok], q, scale=actual[ok]))


def forecast_scores(forecasts: np.ndarray, actual: np.ndarray, rising: np.ndarray | None = None) -> dict:
    """The backtest's scores; `rising` marks the decisions before a rise (see `rises`)."""
    ok = actual > 0
    f, a = forecasts[ok], actual[ok]
    rising = np.zeros(len(actual), dtype=bool) if rising is None else rising
    missed = misses(forecasts, actual)
    return {
        "mape": float(np.mean(np.abs(f - a) / a)),
        "rmse": float(np.sqrt(np.mean((forecasts - actual) ** 2))),
        "under_prediction_rate": float(np.mean(missed)),
        "mean_over_provisioning": float(np.mean(f / a - 1)),
        "rises": int(rising.sum()),
        "under_prediction_rate_on_rises": float(np.mean(missed[rising])) if rising.any() else 0.0,
    }


def held_out_series(history: np.ndarray, test: np.ndarray, window: WindowSpec) -> tuple[np.ndarray, int]:
    """`test` preceded by the part of `history` its first windows reach back into, and the length of
    that part: the first decision, so every decision is one of `test`'s bin boundaries."""
    reach = min(len(history), window.history_s)
    return np.concatenate([history[len(history) - reach :], test]), reach


def held_out_inputs(fitted: FittedForecaster, history: np.ndarray, test: np.ndarray, test_start_s: int):
    """(series, X, y, decision times, first decision) of held_out_series for a fitted model, where X is
    what the model reads (a seasonal model's has its season divided out) and `test` starts at time
    `test_start_s`."""
    series, reach = held_out_series(history, test, fitted.window)
    X, y, decisions = fitted.inputs(series, start_s=test_start_s - reach, first_decision_s=reach)
    return series, X, y, decisions, reach


def rises(series: np.ndarray, window: WindowSpec, *, first_decision_s: int) -> np.ndarray:
    """Which of samples()' decisions come before a rise of the mean rate by RISE or more."""
    decisions = decision_seconds(len(series), window, first_decision_s=first_decision_s)
    before = future_mean(series, decisions - window.horizon_s, window.horizon_s)
    return future_mean(series, decisions, window.horizon_s) > RISE * np.maximum(before, 1e-9)


@dataclass(frozen=True)
class Walk:
    """Every decision of a backtest: its time (the test's start plus its second), the forecast, the true
    peak that followed, and whether a rise followed (see `rises`)."""

    decision_s: np.ndarray
    forecast: np.ndarray
    actual: np.ndarray
    rising: np.ndarray
    predict_s: float

    @property
    def missed(self) -> np.ndarray:
        return misses(self.forecast, self.actual)


def walks(
    fitted: FittedForecaster,
    history: np.ndarray,
    test: np.ndarray,
    *,
    quantiles: Sequence[float | None],
    test_start_s: int | None = None,
) -> dict[float | None, Walk]:
    """`walk` for each of `quantiles` (None: the point), building the inputs and the rises once."""
    start = len(history) if test_start_s is None else test_start_s
    series, X, y, decisions, reach = held_out_inputs(fitted, history, test, start)
    rising = rises(series, fitted.window, first_decision_s=reach)
    out = {}
    for q in dict.fromkeys(quantiles):
        t0 = time.perf_counter()
        f = fitted.predict(X, decisions) if q is None else fitted.quantile(X, q, decisions)
        out[q] = Walk(decisions, f, y, rising, time.perf_counter() - t0)
    return out


def walk(
    fitted: FittedForecaster,
    history: np.ndarray,
    test: np.ndarray,
    *,
    quantile: float | None = None,
    test_start_s: int | None = None,
) -> Walk:
    """Decisions at every bin boundary of `test`; the window may reach back into `history`. `test`
    starts at time `test_start_s` (default: right after a `history` that starts at 0)."""
    return walks(fitted, history, test, quantiles=(quantile,), test_start_s=test_start_s)[quantile]


def backtest(
    fitted: FittedForecaster,
    history: np.ndarray,
    test: np.ndarray,
    *,
    quantile: float | None = None,
    test_start_s: int | None = None,
) -> BacktestResult:
    """The scores of `walk` (same arguments)."""
    w = walk(fitted, history, test, quantile=quantile, test_start_s=test_start_s)
    return score(fitted, w, quantile)


def score(fitted: FittedForecaster, w: Walk, quantile: float | None) -> BacktestResult:
    return BacktestResult(
        model=fitted.name,
        quantile=quantile,
        decisions=len(w.actual),
        fit_s=fitted.fit_s,
        predict_us_per_decision=w.predict_s / max(len(w.actual), 1) * 1e6,
        quantile_loss=None if quantile is None else quantile_loss(w.forecast, w.actual, quantile),
        **forecast_scores(w.forecast, w.actual, w.rising),
    )
