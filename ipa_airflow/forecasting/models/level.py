"""`level`: the current rate plus a count-noise margin, no training beyond a few quantiles.

Per-second counts around a steady rate m spread like counts do: their standard deviation grows like
m**a (a = 0.5 for Poisson arrivals, towards 1 for bursty ones), so the next interval's peak sits at
about m + k * m**a. The model takes m as the mean rate of the last `level_bins` bins, picks a from the
training series, and reads k for each quantile off the training residuals. It is the baseline that
shows how much a learned model adds beyond knowing the current level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..base import FittedForecaster, fit_with_calibration
from ..loss import pinball_loss
from ..windows import MEAN, WindowSpec, samples
from .lstm import HEAD_QUANTILES

EXPONENTS = (0.5, 0.75, 1.0)  # Poisson ... proportional noise
_TINY = 1e-6


def recent_level(X: np.ndarray, level_bins: int) -> np.ndarray:
    """m: the mean rate of each decision's last `level_bins` bins."""
    return np.maximum(X[:, -level_bins:, MEAN].mean(axis=1), 0.0)


@dataclass(frozen=True)
class LevelMargins:
    """Quantile heads m + k * m**a, one margin k per level, m the mean rate of the last bins; the
    point is the head nearest the median."""

    kind: ClassVar[str] = "level"
    level_bins: int
    exponent: float
    margins: tuple[float, ...]
    levels: tuple[float, ...]

    def heads(self, X: np.ndarray) -> np.ndarray:
        m, k = recent_level(X, self.level_bins), np.asarray(self.margins)
        return np.maximum(m[:, None] + k[None, :] * np.maximum(m, _TINY)[:, None] ** self.exponent, 0.0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.heads(X)[:, int(np.argmin(np.abs(np.asarray(self.levels) - 0.5)))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level_bins": self.level_bins,
            "exponent": self.exponent,
            "margins": list(self.margins),
            "levels": list(self.levels),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> LevelMargins:
        return cls(
            int(d["level_bins"]),
            float(d["exponent"]),
            tuple(float(v) for v in d["margins"]),
            tuple(float(v) for v in d["levels"]),
        )


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

        def fit_point(train: np.ndarray):
            X, y = samples(train, self.window)
            m = recent_level(X, self.level_bins)

            def margins(a: float) -> np.ndarray:
                z = (y - m) / np.maximum(m, _TINY) ** a
                return np.quantile(z, qs) if len(z) else np.zeros(len(qs))

            # The exponent whose 0.95 margin fits the training peaks best.
            q95 = int(np.argmin(np.abs(qs - 0.95)))
            a = min(
                EXPONENTS,
                key=lambda e: float(
                    pinball_loss(m + margins(e)[q95] * np.maximum(m, _TINY) ** e, y, qs[q95])
                ),
            )
            k = np.maximum.accumulate(margins(a))  # quantiles never cross
            params = {
                "level_bins": self.level_bins,
                "exponent": a,
                "margins": [round(float(v), 4) for v in k],
                "head_quantiles": list(self.quantiles),
                "samples": len(X),
            }
            point = LevelMargins(self.level_bins, a, tuple(float(v) for v in k), tuple(self.quantiles))
            return point, params

        # Its heads are already empirical quantiles of its own errors, with a parameter each.
        return fit_with_calibration(self.name, self.window, series, fit_point, conformal=False)
