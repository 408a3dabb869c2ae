"""ARIMA(1,0,0) on the 10-s bin maxima, as in the paper's artifact, fitted once with statsmodels.

Forecasting uses the fitted parameters in closed form (mu + phi^h (y_t - mu)) so a backtest of
hundreds of thousands of decisions does not re-run the state-space filter each time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..base import FittedForecaster, PointsOnly, fit_with_calibration
from ..windows import MAX, WindowSpec, bin_maxima


@dataclass(frozen=True)
class Ar1Peak(PointsOnly):
    """The highest of the AR(1) forecasts over the horizon's bins, from the last bin's max."""

    kind: ClassVar[str] = "ar1"
    mu: float
    phi: float
    horizon_bins: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        steps = np.arange(1, self.horizon_bins + 1)
        last = X[:, -1:, MAX]
        return (self.mu + self.phi ** steps[None, :] * (last - self.mu)).max(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mu": self.mu, "phi": self.phi, "horizon_bins": self.horizon_bins}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> Ar1Peak:
        return cls(float(d["mu"]), float(d["phi"]), int(d["horizon_bins"]))


@dataclass(frozen=True)
class Arima:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "arima"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        def fit_point(train: np.ndarray):
            from statsmodels.tsa.arima.model import ARIMA

            bins = bin_maxima(train, self.window.bin_s)
            result = ARIMA(bins, order=(1, 0, 0), trend="c").fit()
            mu, phi = float(result.params[0]), float(result.params[1])
            params = {"order": [1, 0, 0], "mu": mu, "phi": phi, "aic": float(result.aic)}
            return Ar1Peak(mu, phi, self.window.horizon_bins), params

        return fit_with_calibration(self.name, self.window, series, fit_point)
