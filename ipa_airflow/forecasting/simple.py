"""The paper's simple baselines: `reactive` (the last bin's max) and `max` (the max over the window)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import FittedForecaster, fit_with_calibration
from .windows import MAX, WindowSpec


@dataclass(frozen=True)
class Reactive:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "reactive"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        return fit_with_calibration(self.name, self.window, series, lambda _: (lambda X: X[:, -1, MAX], {}))


@dataclass(frozen=True)
class WindowMax:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "max"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        return fit_with_calibration(
            self.name, self.window, series, lambda _: (lambda X: X[:, :, MAX].max(axis=1), {})
        )
