"""The paper's simple baselines: `reactive` (the last bin's max) and `max` (the max over the window)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..base import FittedForecaster, PointsOnly, fit_with_calibration
from ..windows import MAX, WindowSpec


@dataclass(frozen=True)
class LastBinPeak(PointsOnly):
    kind: ClassVar[str] = "last-bin-max"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X[:, -1, MAX]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> LastBinPeak:
        return cls()


@dataclass(frozen=True)
class WindowPeak(PointsOnly):
    kind: ClassVar[str] = "window-max"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X[:, :, MAX].max(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> WindowPeak:
        return cls()


@dataclass(frozen=True)
class Reactive:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "reactive"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        return fit_with_calibration(self.name, self.window, series, lambda _: (LastBinPeak(), {}))


@dataclass(frozen=True)
class WindowMax:
    window: WindowSpec = field(default_factory=WindowSpec)
    name: str = "max"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        return fit_with_calibration(self.name, self.window, series, lambda _: (WindowPeak(), {}))
