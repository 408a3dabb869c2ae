"""Load that follows the clock, as measured on training data: the two tables the clock-aware
forecasters (models/seasonal.py, models/onsets.py) keep beside their base model.

A `Season` holds bursts at the same seconds of every hour (scheduled jobs, posts queued for the half
hour). No window of the past 2 minutes shows them coming, so a forecaster sees them only as misses;
knowing the second of the hour, it can expect them. It is the mean rate at each second of the period
relative to the local level (a centred 10-minute average). A seasonal forecaster divides the rates it
sees by it, forecasts that steadier series with its base model, and multiplies the forecast back by the
profile's highest value over the horizon.

An `Onsets` table holds bursts that start at the same minute of the hour in some hours and not others (a
batch job that does not always have work, posts queued for the half hour on busy hours only). A profile
expects such a burst at its mean size, not its full one. What can be known is how large the next peak
may be, relative to the current rate, at each 10-s slot of the hour: per slot, the q quantile of (next
peak / mean rate of the last 20 s), measured where no burst was under way, and kept only in slots where
it stands out from the typical slot. A forecaster with onsets provisions at least the current rate times
that ratio in those slots while no burst is under way.

Times are seconds: unix time for live rates, and for a trace the second of the trace plus its start (a
trace is taken to start on the hour). Both tables serialise to the dicts the MLflow store keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .windows import MEAN, WindowSpec

LEVEL_S = 601  # the centred average the season's profile is relative to
# Fewer whole periods of training data than this give a profile or a table noisier than the bursts it
# would find (an onset slot's quantile rests on one sample per period).
MIN_PERIODS = 24
SIGNIFICANCE = 2.0  # standard errors a second's deviation must stand out by to enter the profile
ONSET_QUANTILES = (0.99,)
# A slot's ratio over the median slot's that makes it an onset slot; and the rate over the quietest of
# the last 2 minutes that means a burst is already under way.
STAND_OUT = 2.0
_DECIMALS = 5  # what the stored tables keep of each value


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "period_s": self.period_s,
            "profile": [round(float(v), _DECIMALS) for v in self.profile],
            "corrections": dict(self.corrections),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Season:
        return cls(int(d["period_s"]), np.asarray(d["profile"], dtype=float), dict(d["corrections"]))


def onset_level(X: np.ndarray, window: WindowSpec) -> np.ndarray:
    """The mean rate of each decision's last horizon-length of inputs, or 0 where a burst is already
    under way (that rate above STAND_OUT times the quietest bin of the inputs): a burst is not
    multiplied by the ratio of its own onset once more, and its own rate tells the model where it is."""
    X = np.asarray(X)
    recent = np.maximum(X[:, -window.horizon_bins :, MEAN].mean(axis=1), 0.0)
    return np.where(recent <= STAND_OUT * X[:, :, MEAN].min(axis=1), recent, 0.0)


@dataclass(frozen=True)
class Onsets:
    """Per quantile, the ratio of next peak to current rate to provision for at each bin of the period
    (0 outside onset slots), and the scale of the model's own quantile once the floor is there."""

    period_s: int
    window: WindowSpec
    ratios: Mapping[str, np.ndarray]
    corrections: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def measure(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        decision_s: np.ndarray,
        window: WindowSpec,
        quantiles=ONSET_QUANTILES,
        period_s: int = 3600,
    ) -> Onsets | None:
        """The table of a model's training decisions (its inputs, the true peaks and the decision
        times), or None when they span fewer than MIN_PERIODS periods."""
        if len(y) * window.bin_s < MIN_PERIODS * period_s or period_s % window.bin_s:
            return None
        level = onset_level(X, window)
        ok = level > 0  # an outage or a burst under way says nothing about the onset
        slot = (np.asarray(decision_s, dtype=np.int64)[ok] % period_s) // window.bin_s
        ratio = y[ok] / level[ok]
        groups = [ratio[slot == k] for k in range(period_s // window.bin_s)]
        ratios = {}
        for q in quantiles:
            per_slot = np.array([np.quantile(g, q) if len(g) else 0.0 for g in groups])
            ratios[f"{q:g}"] = np.where(per_slot > STAND_OUT * np.median(per_slot), per_slot, 0.0)
        return cls(period_s, window, ratios)

    def floor(self, X: np.ndarray, decision_s: np.ndarray, q: float) -> np.ndarray | None:
        """The least each decision should provision for quantile `q`, or None when `q` has no table."""
        ratios = self.ratios.get(f"{q:g}")
        if ratios is None:
            return None
        slot = (np.asarray(decision_s, dtype=np.int64) % self.period_s) // self.window.bin_s
        return onset_level(X, self.window) * ratios[slot]

    def combine(self, quantile: np.ndarray, X: np.ndarray, decision_s: np.ndarray, q: float) -> np.ndarray:
        floor = self.floor(X, decision_s, q)
        if floor is None:
            return quantile
        return np.maximum(quantile * self.corrections.get(f"{q:g}", 1.0), floor)

    def onset_slots(self, q: float) -> list[int]:
        """The seconds of the period at which the slots of quantile `q`'s table begin."""
        return [int(i) * self.window.bin_s for i in np.flatnonzero(self.ratios.get(f"{q:g}", np.zeros(0)))]

    def to_dict(self) -> dict[str, Any]:
        """The table without its window, which the fitted model it belongs to holds."""
        return {
            "period_s": self.period_s,
            "ratios": {q: [round(float(v), _DECIMALS) for v in r] for q, r in self.ratios.items()},
            "corrections": dict(self.corrections),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], window: WindowSpec) -> Onsets:
        ratios = {q: np.asarray(r, dtype=float) for q, r in d["ratios"].items()}
        return cls(int(d["period_s"]), window, ratios, dict(d["corrections"]))
