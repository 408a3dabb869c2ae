"""Simple exponential smoothing of the 10-s bin maxima (statsmodels fits the smoothing level once)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import FittedForecaster, fit_with_calibration
from .windows import MAX, WindowSpec, bin_maxima


@dataclass(frozen=True)
class ExpSmoothing:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "exp-smoothing"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        def fit_predict(train: np.ndarray):
            from statsmodels.tsa.holtwinters import SimpleExpSmoothing

            bins = bin_maxima(train, self.window.bin_s)
            alpha = float(
                SimpleExpSmoothing(bins, initialization_method="estimated").fit().params["smoothing_level"]
            )

            def predict(X: np.ndarray) -> np.ndarray:
                maxima = X[:, :, MAX]
                level = maxima[:, 0].copy()
                for j in range(1, maxima.shape[1]):
                    level = alpha * maxima[:, j] + (1 - alpha) * level
                return level

            return predict, {"smoothing_level": alpha}

        return fit_with_calibration(self.name, self.window, series, fit_predict)
