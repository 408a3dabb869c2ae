"""One forecasting step of the adaptation loop, with the fallbacks a controller needs.

Prometheus down or answering garbage must not stop the pipeline from adapting: the step falls back to
the last good forecast (while it is fresh) or to a reactive estimate from whatever rates it has, and the
returned Forecast says so in `note`.
"""

from __future__ import annotations

import datetime as dt
import logging
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
        rates = read_rates()
        if len(rates) == 0 or not np.isfinite(rates).all():
            raise LoadSourceError("the load source returned no usable rates")
    except LoadSourceError as exc:
        if last_good is not None and last_good.issued_at:
            age = (now - dt.datetime.fromisoformat(last_good.issued_at)).total_seconds()
            if age <= max_staleness_s:
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
        raise
    try:
        return fitted.forecast(rates, quantiles=quantiles, now=now, earlier=earlier, interval_s=interval_s)
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
