"""How much over-provisioning a forecaster needs to reach a given under-prediction rate.

A forecaster's quantile forecasts sit at one point each; scaling its forecasts by a constant traces its
whole trade-off curve, which compares forecasters independently of how well their quantiles happen to be
calibrated. The curve is measured on the test days themselves, so it is a diagnostic, not a deployable
setting: the deployable points are the quantile rows of the comparison.

The floor is the same curve for an oracle that knows the mean rate of the very interval being scored.
It even sees part of the noise it is scored on, so on traffic whose rate moves it is a bound no
forecaster reaches: what stays above it is the spread of per-second counts around their mean inside the
interval, which nothing that looks at the past can predict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNDER_RATES = (0.01, 0.02, 0.05, 0.1, 0.2)


def frontier(
    forecasts: np.ndarray, actual: np.ndarray, under_rates: Sequence[float] = UNDER_RATES
) -> list[float]:
    """Mean over-provisioning (forecast / actual - 1) when `forecasts` are scaled by the one constant
    that lets exactly each rate of intervals exceed them."""
    f = np.maximum(np.asarray(forecasts, dtype=float), 1e-9)
    a = np.asarray(actual, dtype=float)
    ratio = a / f
    ok = a > 0
    out = []
    for u in under_rates:
        k = float(np.quantile(ratio, 1 - u))
        out.append(float(np.mean(f[ok] * k / a[ok] - 1)))
    return out


def future_mean(series: np.ndarray, decision_s: np.ndarray, horizon_s: int) -> np.ndarray:
    """The mean rate of [t, t + horizon) for each decision time t (seconds into `series`)."""
    csum = np.concatenate([[0.0], np.cumsum(series)])
    return (csum[decision_s + horizon_s] - csum[decision_s]) / horizon_s
