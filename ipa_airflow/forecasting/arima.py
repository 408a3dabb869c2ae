"""ARIMA(1,0,0) on the 10-s bin maxima, as in the paper's artifact, fitted once with statsmodels.

Forecasting uses the fitted parameters in closed form (mu + phi^h (y_t - mu)) so a backtest of
hundreds of thousands of decisions does not re-run the state-space filter each time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import FittedForecaster, fit_with_calibration
from .windows import MAX, WindowSpec, bin_maxima


@dataclass(frozen=True)
class Arima:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "arima"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        def fit_predict(train: np.ndarray):
            from statsmodels.tsa.arima.model import ARIMA

            bins = bin_maxima(train, self.window.bin_s)
            result = ARIMA(bins, order=(1, 0, 0), trend="c").fit()
            mu, phi = float(result.params[0]), float(result.params[1])
            steps = np.arange(1, self.window.horizon_bins + 1)

            def predict(X: np.ndarray) -> np.ndarray:
                last = X[:, -1:, MAX]
                return (mu + phi ** steps[None, :] * (last - mu)).max(axis=1)

            return predict, {"order": [1, 0, 0], "mu": mu, "phi": phi, "aic": float(result.aic)}

        return fit_with_calibration(self.name, self.window, series, fit_predict)
