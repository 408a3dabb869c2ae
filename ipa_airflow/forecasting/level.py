"""`level`: the current rate plus a count-noise margin, no training beyond a few quantiles.

Per-second counts around a steady rate m spread like counts do: their standard deviation grows like
m**a (a = 0.5 for Poisson arrivals, towards 1 for bursty ones), so the next interval's peak sits at
about m + k * m**a. The model takes m as the mean rate of the last `level_bins` bins, picks a from the
training series, and reads k for each quantile off the training residuals. It is the baseline that
shows how much a learned model adds beyond knowing the current level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import FittedForecaster, fit_with_calibration
from .lstm import HEAD_QUANTILES
from .windows import MEAN, WindowSpec, samples

EXPONENTS = (0.5, 0.75, 1.0)  # Poisson ... proportional noise
_TINY = 1e-6


def _pinball(forecast: np.ndarray, actual: np.ndarray, q: float) -> float:
    err = actual - forecast
    return float(np.mean(np.maximum(q * err, (q - 1) * err)))


@dataclass(frozen=True)
class Level:
    window: WindowSpec = field(default_factory=WindowSpec)
    level_bins: int = 2  # 20 s: as long as the horizon
    quantiles: tuple[float, ...] = HEAD_QUANTILES
    name: str = "level"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        if not 1 <= self.level_bins <= self.window.bins:
            raise ValueError(f"level_bins must be between 1 and {self.window.bins}, got {self.level_bins}")
        qs = np.asarray(self.quantiles)
        median = int(np.argmin(np.abs(qs - 0.5)))

        def level(X: np.ndarray) -> np.ndarray:
            return np.maximum(X[:, -self.level_bins :, MEAN].mean(axis=1), 0.0)

        def fit_predict(train: np.ndarray):
            X, y = samples(train, self.window)
            m = level(X)

            def margins(a: float) -> np.ndarray:
                z = (y - m) / np.maximum(m, _TINY) ** a
                return np.quantile(z, qs) if len(z) else np.zeros(len(qs))

            # The exponent whose 0.95 margin fits the training peaks best.
            q95 = int(np.argmin(np.abs(qs - 0.95)))
            a = min(
                EXPONENTS,
                key=lambda e: _pinball(m + margins(e)[q95] * np.maximum(m, _TINY) ** e, y, qs[q95]),
            )
            k = np.maximum.accumulate(margins(a))  # quantiles never cross

            def heads(X: np.ndarray) -> np.ndarray:
                m = level(X)
                return np.maximum(m[:, None] + k[None, :] * np.maximum(m, _TINY)[:, None] ** a, 0.0)

            params = {
                "level_bins": self.level_bins,
                "exponent": a,
                "margins": [round(float(v), 4) for v in k],
                "head_quantiles": list(self.quantiles),
                "samples": len(X),
            }
            return (lambda X: heads(X)[:, median]), params, (qs, heads), None

        return fit_with_calibration(self.name, self.window, series, fit_predict, conformal=False)
