"""A forecaster that knows the load's clock: any base model, fitted on the series with its hourly
profile divided out, its forecasts multiplied back by the profile over each horizon (the profile,
`Season`, is in clock.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ...spec import PLAN_QUANTILES
from ..base import ClockLayer, FittedForecaster
from ..calibration import calibration_cut
from ..clock import MIN_PERIODS, Season


@dataclass(frozen=True)
class Seasonal(ClockLayer):
    """Any base model, fitted on the rates with their profile of the period divided out."""

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        t0 = time.perf_counter()
        season = Season.measure(series, start_s, self.period_s)
        if season is None:  # too short to tell the hour's bursts from noise: the base model alone
            fitted = self.base.fit(series, seed=seed, start_s=start_s)
            why = f"none: fewer than {MIN_PERIODS} periods of {self.period_s} s to measure"
            return replace(fitted, name=self.name, params={**fitted.params, "season": why})
        fitted = replace(
            self.base.fit(season.adjust(series, start_s), seed=seed), name=self.name
        ).with_calibration(season=season)
        # The base model calibrated its quantiles on the adjusted series; scale each once more so it
        # covers the raw peaks of the same held-out tenth.
        X, y, decisions = fitted.inputs(
            series, start_s=start_s, first_decision_s=calibration_cut(len(series), self.window)
        )
        corrections = {
            f"{q:g}": float(np.quantile(y / np.maximum(fitted.quantile(X, q, decisions), 1e-9), q))
            for q in PLAN_QUANTILES
        }
        return replace(
            fitted.with_calibration(season=replace(season, corrections=corrections)),
            fit_s=time.perf_counter() - t0,
            params={
                **fitted.params,
                "season_period_s": self.period_s,
                "season_peak": round(float(season.profile.max()), 3),
                "season_corrections": {k: round(v, 4) for k, v in corrections.items()},
            },
        )
