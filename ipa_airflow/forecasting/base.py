"""The forecaster interface, after statsmodels: structure in the constructor, `fit(history)` returns an
immutable fitted result that predicts points and upper quantiles.

Upper quantiles come from the forecaster's own errors on held-out data: the ratio actual / predicted,
grouped by predicted level (errors are relatively larger at low load), so the planner can provision for
the 90th or 95th percentile of the next peak instead of a fixed margin.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..spec import PLAN_QUANTILES
from .season import Season
from .windows import WindowSpec, decision_seconds, recent_bins, samples

if TYPE_CHECKING:
    from .onsets import Onsets

SCHEMA_VERSION = 1
_LEVELS = 5  # groups of predicted level for the residual quantiles
_CALIBRATION_SHARE = 0.1  # the last tenth of the training series calibrates the quantiles


@dataclass(frozen=True)
class Forecast:
    """The predicted load of the next interval: a point and upper quantiles, in requests per second."""

    model: str
    horizon_s: int
    point: float
    quantiles: Mapping[str, float]  # e.g. {"0.9": 11.2, "0.95": 12.8}
    issued_at: str = ""
    note: str = ""  # e.g. why a fallback was used
    schema_version: int = SCHEMA_VERSION
    # The quantiles the same model gave at the previous decision points, newest first: what the
    # controller's scale-down stabilisation looks back on, recomputed from the rates so no state is kept.
    earlier: tuple[Mapping[str, float], ...] = ()

    def at(self, quantile: float | None) -> float:
        """The load to plan for: the point, or an upper quantile."""
        if quantile is None:
            return self.point
        key = f"{quantile:g}"
        if key not in self.quantiles:
            raise KeyError(f"forecast has quantiles {sorted(self.quantiles)}, not {key}")
        return self.quantiles[key]

    def held(self, quantile: float, n: int) -> list[float]:
        """This forecast and up to n - 1 earlier ones at `quantile`, oldest first."""
        values = [self.at(quantile)]
        values += [e[f"{quantile:g}"] for e in self.earlier[: max(n - 1, 0)] if f"{quantile:g}" in e]
        return values[::-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "horizon_s": self.horizon_s,
            "point": self.point,
            "quantiles": dict(self.quantiles),
            "issued_at": self.issued_at,
            "note": self.note,
            "schema_version": self.schema_version,
            "earlier": [dict(e) for e in self.earlier],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Forecast:
        if d.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"forecast schema_version {d.get('schema_version')} is not supported")
        return cls(
            **{
                **d,
                "quantiles": dict(d.get("quantiles", {})),
                "earlier": tuple(dict(e) for e in d.get("earlier", ())),
            }
        )


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
class QuantileHeads:
    """A model that predicts quantiles itself, each conformally scaled on held-out data."""

    levels: np.ndarray  # the quantile levels of the heads
    fn: Callable[[np.ndarray], np.ndarray]  # (n, bins, 2) -> (n, len(levels))
    corrections: np.ndarray  # multiplicative, per head

    def predict(self, X: np.ndarray, q: float) -> np.ndarray | None:
        hit = np.flatnonzero(np.isclose(self.levels, q))
        if len(hit) == 0:
            return None
        return self.fn(X)[:, hit[0]] * self.corrections[hit[0]]


@dataclass(frozen=True)
class FittedForecaster:
    name: str
    window: WindowSpec
    predict_fn: Callable[[np.ndarray], np.ndarray]  # (n, bins, 2) bin features -> (n,) points
    residuals: ResidualQuantiles
    params: Mapping[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0
    heads: QuantileHeads | None = None
    module: Any = None  # the trained torch module, for models that have one
    season: Season | None = None  # load that repeats with the clock (see season.py)
    onsets: Onsets | None = None  # bursts that start at the same minute in some hours (see onsets.py)

    def inputs(
        self, series: np.ndarray, *, start_s: int = 0, first_decision_s: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, decision times) for every decision in `series`, whose first value is at time
        `start_s`: the model's inputs (with the season divided out) and the true peaks."""
        X, y = samples(series, self.window, first_decision_s=first_decision_s)
        if self.season:
            X, _ = samples(
                self.season.adjust(series, start_s), self.window, first_decision_s=first_decision_s
            )
        return X, y, start_s + decision_seconds(len(series), self.window, first_decision_s=first_decision_s)

    def predict(self, X: np.ndarray, decision_s: np.ndarray | None = None) -> np.ndarray:
        """The point forecast; a seasonal model needs the decision times too."""
        return self._base_point(X) * self._seasonal(decision_s, None)

    def quantile(self, X: np.ndarray, q: float, decision_s: np.ndarray | None = None) -> np.ndarray:
        """An upper quantile of the next peak: the model's own head where it has one, else the point
        scaled by the held-out residual quantile at its level; at least the onset floor where the
        model has one (onsets.py)."""
        direct = None if self.heads is None else self.heads.predict(np.asarray(X, dtype=float), q)
        if direct is not None:
            out = np.maximum(direct, 0.0) * self._seasonal(decision_s, q)
        else:
            point = self._base_point(X)
            out = point * self.residuals.factor(point, q) * self._seasonal(decision_s, q)
        if self.onsets is None:
            return out
        if decision_s is None:
            raise ValueError(f"forecaster '{self.name}' has onsets by the clock: it needs the decision times")
        return self.onsets.combine(out, np.asarray(X, dtype=float), decision_s, q)

    def _base_point(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(self.predict_fn(np.asarray(X, dtype=float)), 0.0)

    def _seasonal(self, decision_s: np.ndarray | None, q: float | None) -> np.ndarray | float:
        if self.season is None:
            return 1.0
        if decision_s is None:
            raise ValueError(f"forecaster '{self.name}' is seasonal: it needs the decision times")
        return self.season.horizon(decision_s, self.window.horizon_s) * self.season.correction(q)

    def forecast(
        self,
        recent: np.ndarray,
        *,
        quantiles=PLAN_QUANTILES,
        now: dt.datetime | None = None,
        earlier: int = 0,
        interval_s: int = 10,
    ) -> Forecast:
        """One decision from the last seconds of per-second rates (oldest first, the last at `now`),
        and the quantiles the `earlier` decisions before it, `interval_s` apart, would have had (where
        the rates reach back)."""
        now = now or dt.datetime.now(dt.UTC)
        now_s = int(now.timestamp())
        recent = np.asarray(recent, dtype=float)
        if self.season:
            recent = self.season.adjust(recent, now_s - len(recent) + 1)
        ends = [len(recent)] + [
            len(recent) - i * interval_s
            for i in range(1, earlier + 1)
            if len(recent) - i * interval_s >= self.window.history_s
        ]
        X = np.concatenate([recent_bins(recent[:end], self.window) for end in ends])
        decisions = np.array([now_s + 1 - (len(recent) - end) for end in ends])
        point = float(self.predict(X[:1], decisions[:1])[0])
        qs = {f"{q:g}": self.quantile(X, q, decisions) for q in quantiles}
        return Forecast(
            self.name,
            self.window.horizon_s,
            point,
            {k: float(v[0]) for k, v in qs.items()},
            now.isoformat(timespec="seconds"),
            earlier=tuple({k: float(v[i]) for k, v in qs.items()} for i in range(1, len(ends))),
        )


class Forecaster(Protocol):
    name: str
    window: WindowSpec

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        """`start_s`: the time of series[0] (unix seconds, or a trace's second); seasonal models use it."""
        ...


@dataclass(frozen=True)
class ClockLayer:
    """A layer around a base forecaster that knows the clock (seasonal.py, onsets.py): it fits the base
    model, then learns what repeats every `period_s` seconds on top of it."""

    base: Forecaster
    name: str
    period_s: int = 3600

    @property
    def window(self) -> WindowSpec:
        return self.base.window


def calibration_cut(n_s: int, window: WindowSpec) -> int:
    """Where the held-out tenth of a training series of `n_s` seconds begins."""
    cut = int(n_s * (1 - _CALIBRATION_SHARE))
    return cut - cut % window.bin_s


def fit_with_calibration(
    name: str, window: WindowSpec, series: np.ndarray, fit_predict_fn, *, conformal: bool = True
) -> FittedForecaster:
    """Fit on all but the last tenth of `series`, calibrate the quantiles on that tenth.

    `fit_predict_fn(train)` returns (predict_fn, params) or (predict_fn, params, heads, module), where
    heads is None or (levels, fn) for models that predict quantiles themselves. A model whose heads are
    already empirical quantiles of its own errors, with too few parameters to overfit, passes
    `conformal=False`: it fits on the whole series and keeps its heads, which a one-tenth calibration
    split would only make noisier.
    """
    t0 = time.perf_counter()
    cut = calibration_cut(len(series), window)
    fitted = fit_predict_fn(series[:cut] if conformal else series)
    predict_fn, params = fitted[0], fitted[1]
    raw_heads, module = (fitted[2], fitted[3]) if len(fitted) > 2 else (None, None)
    X, y = samples(series, window, first_decision_s=cut)
    residuals = ResidualQuantiles.calibrate(np.maximum(predict_fn(X), 0.0), y)
    heads = None
    if raw_heads is not None:
        levels, fn = raw_heads
        corrections = np.ones(len(levels))
        if conformal:
            # Split-conformal, multiplicative: scale each head so its held-out coverage equals its level.
            out = np.maximum(fn(X), 1e-9)
            corrections = np.array([np.quantile(y / out[:, i], q) for i, q in enumerate(levels)])
            params = {**params, "conformal_corrections": [round(float(c), 4) for c in corrections]}
        heads = QuantileHeads(np.asarray(levels), fn, corrections)
    return FittedForecaster(
        name, window, predict_fn, residuals, params, time.perf_counter() - t0, heads, module
    )
