"""The forecaster comparison users ask for: every forecaster, point and upper quantiles, plus the paper's
LSTM with a fixed safety margin, backtested on the same days."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..catalog import FORECASTERS, forecaster
from ..sources import SECONDS_PER_DAY, days
from ..windows import WindowSpec, decision_seconds, samples
from .backtest import forecast_scores, held_out_series, score, walks
from .frontier import UNDER_RATES, around_mean, frontier, future_mean

QUANTILES = (0.9, 0.95, 0.99)
MARGINS = (0.1, 0.2)  # InfAdapter's 10 %, IPA's 20 %
# The quantile whose forecasts the trade-off curves scale: the one nearest the 5 % the target is set at.
FRONTIER_QUANTILE = 0.95
# The seconds on each side of the interval the two-sided reference knows (see frontier).
AROUND_S = 10


def compare(
    series: np.ndarray,
    *,
    train_days: tuple[int, int],
    test_days: tuple[int, int],
    models: Sequence[str] = tuple(FORECASTERS),
    quantiles: Sequence[float] = QUANTILES,
    seed: int = 0,
    on_model: Callable[[str], None] | None = None,
) -> dict:
    train, test = days(series, *train_days), days(series, *test_days)
    train_start, test_start = train_days[0] * SECONDS_PER_DAY, test_days[0] * SECONDS_PER_DAY
    rows = []
    curves: dict[str, list[float]] = {}
    for name in models:
        if on_model:
            on_model(name)
        fitted = forecaster(name).fit(train, seed=seed, start_s=train_start)
        walked = walks(
            fitted, train, test, quantiles=(None, *quantiles, FRONTIER_QUANTILE), test_start_s=test_start
        )
        rows += [score(fitted, walked[q], q).to_dict() for q in (None, *quantiles)]
        at_frontier = walked[FRONTIER_QUANTILE]
        curves[f"{name} (q{FRONTIER_QUANTILE:g} x constant)"] = frontier(
            at_frontier.forecast, at_frontier.actual
        )
        if name == "lstm":
            point = walked[None]
            curves["lstm (point x fixed margin)"] = frontier(point.forecast, point.actual)
            for m in MARGINS:
                scores = forecast_scores(point.forecast * (1 + m), point.actual, point.rising)
                row = {
                    "model": "lstm",
                    "quantile": None,
                    "margin": m,
                    "decisions": len(point.actual),
                    **{k: round(v, 5) for k, v in scores.items()},
                }
                rows.append(row)
    return {
        "train_days": list(train_days),
        "test_days": list(test_days),
        "rows": rows,
        "frontier": {"under_rates": list(UNDER_RATES), "curves": curves, "oracles": oracles(train, test)},
    }


def oracles(train: np.ndarray, test: np.ndarray, window: WindowSpec | None = None) -> dict[str, list[float]]:
    """The trade-off curves of forecasts that know the mean rate of each next interval, and of one that
    knows the load on both sides of it (see frontier)."""
    window = window or WindowSpec()
    series, reach = held_out_series(train, test, window)
    _, y = samples(series, window, first_decision_s=reach)
    decisions = decision_seconds(len(series), window, first_decision_s=reach)
    mean = future_mean(series, decisions, window.horizon_s)
    around = around_mean(series, decisions, window.horizon_s, AROUND_S)
    return {
        "oracle: next mean rate x constant": frontier(mean, y),
        "oracle: next mean rate + k * sqrt(rate)": frontier(mean + np.sqrt(mean), y, base=mean),
        f"oracle: mean of the {AROUND_S} s before and after + k * sqrt(rate)": frontier(
            around + np.sqrt(around), y, base=around
        ),
    }
