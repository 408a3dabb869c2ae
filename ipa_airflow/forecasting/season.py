"""Load that repeats with the clock: bursts at the same seconds of every hour (scheduled jobs, posts
queued for the half hour). No window of the past 2 minutes shows them coming, so a forecaster sees them
only as misses; knowing the second of the hour, it can expect them.

A `Season` is the mean rate at each second of the period relative to the local level (a centred
10-minute average), measured on the training series. A seasonal forecaster divides the rates it sees by
it, forecasts that steadier series with its base model, and multiplies the forecast back by the
profile's highest value over the horizon. Times are seconds: unix time for live rates, and for a trace
the second of the trace plus its start (a trace is taken to start on the hour).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

LEVEL_S = 601  # the centred average the profile is relative to
MIN_PERIODS = 24  # fewer whole periods than this give a profile noisier than the bursts it would find
SIGNIFICANCE = 2.0  # standard errors


@dataclass(frozen=True)
class Season:
    period_s: int
    profile: np.ndarray  # (period_s,) mean 1
    corrections: Mapping[str, float] = field(default_factory=dict)  # quantile -> held-out scale

    @classmethod
    def measure(cls, series: np.ndarray, start_s: int, period_s: int = 3600) -> Season | None:
        """The profile of `series` (whose first value is at time `start_s`), or None when it is too
        short to hold MIN_PERIODS whole periods."""
        series = np.asarray(series, dtype=float)
        if len(series) - 2 * LEVEL_S < MIN_PERIODS * period_s:
            return None
        level = np.convolve(series, np.ones(LEVEL_S) / LEVEL_S, mode="same")[LEVEL_S:-LEVEL_S]
        ratio = series[LEVEL_S:-LEVEL_S] / np.maximum(level, 1e-9)
        ratio[level <= 0] = 1.0  # an outage says nothing about the hour
        phase = (start_s + LEVEL_S + np.arange(len(ratio))) % period_s
        n = np.bincount(phase, minlength=period_s)
        mean = np.bincount(phase, weights=ratio, minlength=period_s) / n
        var = np.bincount(phase, weights=ratio**2, minlength=period_s) / n - mean**2
        # Keep a second's deviation only as far as it stands out from its own noise (two standard
        # errors): the forecast takes the profile's maximum over its horizon, which would otherwise
        # pick the noisiest second.
        dev = mean - ratio.mean()
        keep = np.clip(1 - SIGNIFICANCE**2 * (var / n) / np.maximum(dev**2, 1e-12), 0.0, 1.0)
        profile = 1 + dev * keep
        return cls(period_s, profile / profile.mean())

    def at(self, times_s: np.ndarray) -> np.ndarray:
        return self.profile[np.asarray(times_s, dtype=np.int64) % self.period_s]

    def adjust(self, series: np.ndarray, start_s: int) -> np.ndarray:
        """The series with the profile divided out."""
        return np.asarray(series, dtype=float) / self.at(start_s + np.arange(len(series)))

    def horizon(self, decision_s: np.ndarray, horizon_s: int) -> np.ndarray:
        """The profile's highest value over each decision's horizon [t, t + horizon_s)."""
        t = np.asarray(decision_s, dtype=np.int64)[:, None] + np.arange(horizon_s)[None, :]
        return self.at(t).max(axis=1)

    def correction(self, q: float | None) -> float:
        return 1.0 if q is None else float(self.corrections.get(f"{q:g}", 1.0))
