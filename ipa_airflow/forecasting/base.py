"""The forecaster interface, after statsmodels: structure in the constructor, `fit(history)` returns an
immutable fitted result that predicts points and upper quantiles.

A fitted forecaster is a point model (what the estimator learned: the next peak from the last bins, and
quantile heads where it has them; models/) plus its calibration (what held-out data taught it about the
peaks it misses; calibration.py). Each half serialises to a dict, and so does the whole, which is what
the MLflow store keeps beside a torch module.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Protocol

import numpy as np

from ..spec import PLAN_QUANTILES
from .calibration import Calibration, calibrate, calibration_cut
from .clock import Onsets, Season
from .windows import WindowSpec, decision_seconds, recent_bins, samples

SCHEMA_VERSION = 1


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
    # controller's capacity hold compares, recomputed from the rates so no state is kept.
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


class PointModel(Protocol):
    """What an estimator learned: from a window's bin features (n, bins, 2), the next peak (n,), and for
    a model with quantile heads, those quantiles (n, len(levels)). `to_dict` names its `kind`, the key
    of catalog.POINT_MODELS, whose `from_dict` rebuilds it."""

    kind: ClassVar[str]

    @property
    def levels(self) -> tuple[float, ...]:
        """The quantile levels of its heads; () for a model without heads."""
        ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def heads(self, X: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> PointModel:
        """`module`: the trained torch module of a model that has one (to_dict leaves it out)."""
        ...


class PointsOnly:
    """For point models without quantile heads: their upper quantiles come from the residuals."""

    levels: ClassVar[tuple[float, ...]] = ()

    def heads(self, X: np.ndarray) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} has no quantile heads")


@dataclass(frozen=True)
class FittedForecaster:
    """One fit, immutable: the point model the estimator learned plus its calibration. It forecasts
    the point and upper quantiles of the next peak for every decision of a window of inputs."""

    name: str
    window: WindowSpec
    point: PointModel
    calibration: Calibration
    params: Mapping[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0

    @property
    def season(self) -> Season | None:
        """Load that repeats with the clock (see clock.py)."""
        return self.calibration.season

    @property
    def onsets(self) -> Onsets | None:
        """Bursts that start at the same minute in some hours (see clock.py)."""
        return self.calibration.onsets

    @property
    def module(self) -> Any:
        """The trained torch module, for models that have one (the MLflow store keeps it)."""
        return getattr(self.point, "module", None)

    def with_calibration(self, **changes: Any) -> FittedForecaster:
        return replace(self, calibration=replace(self.calibration, **changes))

    def to_dict(self) -> dict[str, Any]:
        """Everything but a torch module, which the MLflow store keeps in its own format."""
        return {
            "name": self.name,
            "window": asdict(self.window),
            "point": self.point.to_dict(),
            **self.calibration.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, module: Any = None, params: Mapping[str, Any] | None = None
    ) -> FittedForecaster:
        """`module`: the torch module of a model that has one; `params`: what to say of its fit."""
        # The catalog imports every estimator, and each estimator imports this module.
        from .catalog import point_model_from_dict

        window = WindowSpec(**d["window"])
        point = point_model_from_dict(d["point"], module=module)
        calibration = Calibration.from_dict(d, window)
        heads = () if calibration.head_levels is None else tuple(calibration.head_levels)
        if len(heads) != len(point.levels) or not np.allclose(heads, point.levels):
            raise ValueError(f"the calibration's heads {heads} are not the point model's {point.levels}")
        return cls(d["name"], window, point, calibration, dict(params or {}))

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
        model has one (clock.py)."""
        head = self.calibration.head(q)
        if head is not None:
            column, correction = head
            direct = self.point.heads(np.asarray(X, dtype=float))[:, column] * correction
            out = np.maximum(direct, 0.0) * self._seasonal(decision_s, q)
        else:
            point = self._base_point(X)
            out = point * self.calibration.residuals.factor(point, q) * self._seasonal(decision_s, q)
        if self.onsets is None:
            return out
        if decision_s is None:
            raise ValueError(f"forecaster '{self.name}' has onsets by the clock: it needs the decision times")
        return self.onsets.combine(out, np.asarray(X, dtype=float), decision_s, q)

    def _base_point(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(self.point.predict(np.asarray(X, dtype=float)), 0.0)

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
    @property
    def name(self) -> str: ...

    @property
    def window(self) -> WindowSpec: ...

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        """`start_s`: the time of series[0] (unix seconds, or a trace's second); seasonal models use it."""
        ...


@dataclass(frozen=True)
class ClockLayer:
    """A layer around a base forecaster that knows the clock (models/seasonal.py, models/onsets.py): it
    fits the base model, then learns what repeats every `period_s` seconds on top of it."""

    base: Forecaster
    name: str
    period_s: int = 3600

    @property
    def window(self) -> WindowSpec:
        return self.base.window


def fit_with_calibration(
    name: str,
    window: WindowSpec,
    series: np.ndarray,
    fit_point: Callable[[np.ndarray], tuple[PointModel, dict[str, Any]]],
    *,
    conformal: bool = True,
) -> FittedForecaster:
    """Fit a point model on all but the last tenth of `series` (`fit_point(train)` returns it and its
    parameters), and calibrate its quantiles on that tenth (calibration.calibrate). A model that keeps
    its own heads (`conformal=False`) fits on the whole series."""
    t0 = time.perf_counter()
    cut = calibration_cut(len(series), window)
    point, params = fit_point(series[:cut] if conformal else series)
    calibration, found = calibrate(point, window, series, conformal=conformal)
    return FittedForecaster(name, window, point, calibration, {**params, **found}, time.perf_counter() - t0)
