"""One forecasting step of the adaptation loop, with the fallbacks a controller needs.

Prometheus down or answering garbage must not stop the pipeline from adapting: the step falls back to
the last good forecast (while it is fresh) or to a reactive estimate from whatever rates it has, and the
returned Forecast says so in `note`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..spec import PLAN_QUANTILES, Adaptation
from .base import FittedForecaster, Forecast
from .sources import LoadSourceError

log = logging.getLogger(__name__)


def forecast_step(
    read_rates: Callable[[], np.ndarray],
    fitted: FittedForecaster,
    *,
    now: dt.datetime,
    last_good: Forecast | None = None,
    max_staleness_s: float = 60.0,
    quantiles=PLAN_QUANTILES,
    earlier: int = 0,
    interval_s: int = 10,
) -> Forecast:
    """`read_rates` returns the last seconds of per-second rates; for `earlier` past decisions it must
    reach `earlier * interval_s` seconds further back than the model's window."""
    try:
        rates = np.asarray(read_rates(), dtype=float)
        if rates.ndim != 1 or len(rates) == 0 or not np.isfinite(rates).all() or (rates < 0).any():
            raise LoadSourceError("the load source returned no usable rates (none, non-finite or negative)")
    except LoadSourceError as exc:
        return _last_good_or_raise(exc, last_good, now=now, max_staleness_s=max_staleness_s)
    try:
        f = fitted.forecast(rates, quantiles=quantiles, now=now, earlier=earlier, interval_s=interval_s)
        _check_usable(f)
        return f
    except Exception as exc:  # a broken model must not stop adaptation: react to the last bin instead
        peak = float(np.max(rates[-fitted.window.bin_s :]))
        log.warning("forecaster %s failed (%s); using the reactive estimate %.2f", fitted.name, exc, peak)
        return Forecast(
            "reactive",
            fitted.window.horizon_s,
            peak,
            {f"{q:g}": peak for q in quantiles},
            now.isoformat(timespec="seconds"),
            note=f"fallback: reactive estimate; {exc}",
        )


def _last_good_or_raise(
    exc: LoadSourceError, last_good: Forecast | None, *, now: dt.datetime, max_staleness_s: float
) -> Forecast:
    """The last good forecast, marked as such, while it is at most `max_staleness_s` old; else the read's
    error, saying why no fallback was taken (the caller keeps what runs rather than plan on nothing)."""
    if last_good is None or not last_good.issued_at:
        raise exc
    age = (now - dt.datetime.fromisoformat(last_good.issued_at)).total_seconds()
    if age > max_staleness_s:
        raise LoadSourceError(
            f"{exc} (the last good forecast is {age:.0f} s old, "
            f"over the {max_staleness_s:g} s it may be reused)"
        ) from exc
    log.warning("load source failed (%s); reusing the forecast from %.0f s ago", exc, age)
    return Forecast(
        last_good.model,
        last_good.horizon_s,
        last_good.point,
        dict(last_good.quantiles),
        last_good.issued_at,
        note=f"fallback: last good forecast ({age:.0f} s old); {exc}",
        earlier=last_good.earlier,
    )


def _check_usable(f: Forecast) -> None:
    """A forecast the planner may act on: finite, at least 0, point and every quantile. A model that
    answers NaN or a negative load is treated as failed (the caller falls back to the reactive estimate)."""
    try:
        values = np.asarray([f.point, *f.quantiles.values()], dtype=float)
    except (TypeError, ValueError):
        values = np.array([math.nan])
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise ValueError(f"forecaster {f.model} answered an unusable load ({f.point}, {dict(f.quantiles)})")


def forecast_for(
    read_rates: Callable[[int], np.ndarray],
    fitted: FittedForecaster,
    *,
    now: dt.datetime,
    adaptation: Adaptation | None = None,
    last_good: Forecast | None = None,
    note: str = "",
    quantiles=PLAN_QUANTILES,
) -> Forecast:
    """`forecast_step` for a controller: `read_rates(window_s)` is asked for the model's window plus the
    look-back the adaptation's stabilisation compares, and the forecast carries those earlier forecasts.
    `note` (why this forecaster is a fallback) is kept unless the step had its own."""
    earlier, spacing = (adaptation.stabilisation - 1, adaptation.spacing_s) if adaptation else (0, 10)
    window_s = fitted.window.history_s + earlier * spacing
    f = forecast_step(
        lambda: read_rates(window_s),
        fitted,
        now=now,
        last_good=last_good,
        quantiles=quantiles,
        earlier=earlier,
        interval_s=spacing,
    )
    return replace(f, note=note) if note and not f.note else f
