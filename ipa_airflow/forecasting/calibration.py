"""What held-out data teaches a point model about the peaks it misses: the calibration half of a fitted
forecaster (base.FittedForecaster is a point model plus its calibration).

Upper quantiles come from the forecaster's own errors on held-out data (the last tenth of the training
series): the ratio actual / predicted, grouped by predicted level (errors are relatively larger at low
load), so the planner can provision for the 90th or 95th percentile of the next peak instead of a fixed
margin. A model with quantile heads gets one multiplicative, split-conformal correction per head instead.
Clock-aware models add what repeats with the hour (clock.py), with their own held-out corrections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .clock import Onsets, Season
from .windows import WindowSpec, samples

if TYPE_CHECKING:
    from .base import PointModel

_LEVELS = 5  # groups of predicted level for the residual quantiles
_CALIBRATION_SHARE = 0.1  # the last tenth of the training series calibrates the quantiles


@dataclass(frozen=True)
class ResidualQuantiles:
    """Quantiles of actual / predicted, per group of predicted level."""

    edges: np.ndarray  # upper edges of the level groups (last is +inf)
    ratios: tuple[np.ndarray, ...]  # sorted ratios per group

    @classmethod
    def calibrate(cls, predicted: np.ndarray, actual: np.ndarray) -> ResidualQuantiles:
        ok = predicted > 0
        predicted, actual = predicted[ok], actual[ok]
        if len(predicted) < _LEVELS * 20:
            return cls(np.array([np.inf]), (np.sort(actual / predicted) if len(predicted) else np.ones(1),))
        edges = np.quantile(predicted, np.linspace(0, 1, _LEVELS + 1)[1:-1])
        edges = np.append(edges, np.inf)
        group = np.searchsorted(edges, predicted, side="left")
        ratios = tuple(np.sort(actual[group == g] / predicted[group == g]) for g in range(len(edges)))
        return cls(edges, ratios)

    def factor(self, predicted: np.ndarray, q: float) -> np.ndarray:
        group = np.minimum(np.searchsorted(self.edges, predicted, side="left"), len(self.ratios) - 1)
        per_group = np.array([np.quantile(r, q) if len(r) else 1.0 for r in self.ratios])
        return np.maximum(per_group[group], 0.0)


@dataclass(frozen=True)
class Calibration:
    """The residual quantiles every model has; the conformal correction of each quantile head, for a
    model with heads (`head_levels` as its point model's, `head_corrections` aligned with them); and
    the clock's tables, for a clock-aware model."""

    residuals: ResidualQuantiles
    head_levels: np.ndarray | None = None
    head_corrections: np.ndarray | None = None
    season: Season | None = None
    onsets: Onsets | None = None

    def head(self, q: float) -> tuple[int, float] | None:
        """Which head answers quantile `q` (a column of the point model's heads) and its correction;
        None when none does, or the model has no heads."""
        if self.head_levels is None or self.head_corrections is None:
            return None
        hit = np.flatnonzero(np.isclose(self.head_levels, q))
        return None if len(hit) == 0 else (int(hit[0]), self.head_corrections[hit[0]])

    def to_dict(self) -> dict[str, Any]:
        """The keys MLflow's calibration.json has always had, so every registered version still loads."""
        d: dict[str, Any] = {
            "residual_edges": [float(e) for e in self.residuals.edges],
            "residual_ratios": [r.tolist() for r in self.residuals.ratios],
        }
        if self.head_levels is not None and self.head_corrections is not None:
            d["head_levels"] = self.head_levels.tolist()
            d["head_corrections"] = self.head_corrections.tolist()
        if self.season is not None:
            d["season"] = self.season.to_dict()
        if self.onsets is not None:
            d["onsets"] = self.onsets.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], window: WindowSpec) -> Calibration:
        """`window`: the fitted model's, which the onset table reads its inputs with."""
        residuals = ResidualQuantiles(
            np.asarray(d["residual_edges"]), tuple(np.asarray(r) for r in d["residual_ratios"])
        )
        heads = "head_levels" in d
        return cls(
            residuals,
            np.asarray(d["head_levels"]) if heads else None,
            np.asarray(d["head_corrections"]) if heads else None,
            Season.from_dict(d["season"]) if "season" in d else None,
            Onsets.from_dict(d["onsets"], window) if "onsets" in d else None,
        )


def calibration_cut(n_s: int, window: WindowSpec) -> int:
    """Where the held-out tenth of a training series of `n_s` seconds begins."""
    cut = int(n_s * (1 - _CALIBRATION_SHARE))
    return cut - cut % window.bin_s


def calibrate(
    point: PointModel, window: WindowSpec, series: np.ndarray, *, conformal: bool = True
) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of `point` on the held-out tenth of `series`, and what it found, as parameters.

    The residual quantiles always; for a model with heads, a split-conformal, multiplicative correction
    per head so its held-out coverage equals its level, unless `conformal` is off: a model whose heads
    are already empirical quantiles of its own errors, with too few parameters to overfit, keeps them
    (a one-tenth calibration split would only make them noisier).
    """
    X, y = samples(series, window, first_decision_s=calibration_cut(len(series), window))
    residuals = ResidualQuantiles.calibrate(np.maximum(point.predict(X), 0.0), y)
    if not point.levels:
        return Calibration(residuals), {}
    levels = np.asarray(point.levels)
    corrections = np.ones(len(levels))
    found: dict[str, Any] = {}
    if conformal:
        out = np.maximum(point.heads(X), 1e-9)
        corrections = np.array([np.quantile(y / out[:, i], q) for i, q in enumerate(levels)])
        found["conformal_corrections"] = [round(float(c), 4) for c in corrections]
    return Calibration(residuals, levels, corrections), found
