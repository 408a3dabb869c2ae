"""How much over-provisioning a forecaster needs to reach a given under-prediction rate.

A forecaster's quantile forecasts sit at one point each; scaling its forecasts by a constant traces its
whole trade-off curve, which compares forecasters independently of how well their quantiles happen to be
calibrated. The curve is measured on the test days themselves, so it is a diagnostic, not a deployable
setting: the deployable points are the quantile rows of the comparison.

The oracles are the same curves for forecasts that know the mean rate of the very interval being
scored, which nothing that looks only at the past can know: one scales that mean by a constant, the
other adds a margin that grows with the square root of the mean, as the spread of counts does. What
stays above them is the spread of per-second counts around their mean inside the interval. They are
references, not bounds: a forecaster that knew the spread of the next interval could still beat them.

A third reference knows the load on both sides of the interval, not inside it: the mean rate of the 10 s
before it and of the 10 s after it, plus a square-root margin. It answers a different question: how much
of a forecaster's gap to the oracles is the rate moving where the past cannot see, and how much is the
noise of the interval itself, which only knowing the interval's own counts removes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNDER_RATES = (0.01, 0.02, 0.05, 0.1, 0.2)


def frontier(
    forecasts: np.ndarray,
    actual: np.ndarray,
    under_rates: Sequence[float] = UNDER_RATES,
    *,
    base: np.ndarray | None = None,
) -> list[float]:
    """Mean over-provisioning (forecast / actual - 1) when the forecasts' margin above `base` (zero when
    not given: the whole forecast) is scaled by the one constant that lets exactly each rate of
    intervals exceed them."""
    a = np.asarray(actual, dtype=float)
    b = np.zeros_like(a) if base is None else np.asarray(base, dtype=float)
    margin = np.maximum(np.asarray(forecasts, dtype=float) - b, 1e-9)
    needed = (a - b) / margin
    ok = a > 0
    out = []
    for u in under_rates:
        k = float(np.quantile(needed, 1 - u))
        out.append(float(np.mean((b[ok] + margin[ok] * k) / a[ok] - 1)))
    return out


def around_mean(series: np.ndarray, decision_s: np.ndarray, horizon_s: int, width_s: int) -> np.ndarray:
    """The mean rate of the `width_s` seconds before t and of the `width_s` seconds after t + horizon,
    averaged, for each decision time t; where the series ends before the seconds after, the part it has
    (or only the seconds before)."""
    t = np.asarray(decision_s, dtype=np.int64)
    before = future_mean(series, t - width_s, width_s)
    csum = np.concatenate([[0.0], np.cumsum(series)])
    end = t + horizon_s
    have = np.clip(len(series) - end, 0, width_s)
    after = (csum[end + have] - csum[end]) / np.maximum(have, 1)
    return np.where(have > 0, (before + after) / 2, before)


def future_mean(series: np.ndarray, decision_s: np.ndarray, horizon_s: int) -> np.ndarray:
    """The mean rate of [t, t + horizon) for each decision time t (seconds into `series`)."""
    csum = np.concatenate([[0.0], np.cumsum(series)])
    return (csum[decision_s + horizon_s] - csum[decision_s]) / horizon_s
