"""Simple exponential smoothing of the 10-s bin maxima (statsmodels fits the smoothing level once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..base import FittedForecaster, PointsOnly, fit_with_calibration
from ..windows import MAX, WindowSpec, bin_maxima


@dataclass(frozen=True)
class SmoothedPeak(PointsOnly):
    """The smoothed level of the window's bin maxima, as the next peak."""

    kind: ClassVar[str] = "exp-smoothing"
    smoothing_level: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        alpha = self.smoothing_level
        maxima = X[:, :, MAX]
        level = maxima[:, 0].copy()
        for j in range(1, maxima.shape[1]):
            level = alpha * maxima[:, j] + (1 - alpha) * level
        return level

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "smoothing_level": self.smoothing_level}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> SmoothedPeak:
        return cls(float(d["smoothing_level"]))


@dataclass(frozen=True)
class ExpSmoothing:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "exp-smoothing"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        def fit_point(train: np.ndarray):
            from statsmodels.tsa.holtwinters import SimpleExpSmoothing

            bins = bin_maxima(train, self.window.bin_s)
            alpha = float(
                SimpleExpSmoothing(bins, initialization_method="estimated").fit().params["smoothing_level"]
            )
            return SmoothedPeak(alpha), {"smoothing_level": alpha}

        return fit_with_calibration(self.name, self.window, series, fit_point)
