"""Bursts that start at the same minute of the hour in some hours and not others (a batch job that
does not always have work, posts queued for the half hour on busy hours only).

A window of the past cannot see such a burst coming, and a profile of the hour (season.py) expects it
at its mean size, not its full one. What can be known is how large the next peak may be, relative to
the current rate, at each 10-s slot of the hour. An `Onsets` table holds, per slot, the q quantile of
(next peak / mean rate of the last 20 s), measured on the training series where no burst was under way,
and kept only in slots where it stands out from the typical slot. A forecaster with onsets provisions at
least the current rate times that ratio in those slots while no burst is under way, and its own
quantile is rescaled on held-out data so that the two together cover the quantile's share of peaks.

Only the planner's 0.99 gets onsets. There a missed onset is a large part of the 1 % a quantile may miss
and the model's own margin is wide, so covering onsets directly lets that margin shrink; at 0.95 and
below, the shipped trace shows the floor costing more over-provisioning than it saves in misses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from .base import ClockLayer, FittedForecaster, calibration_cut
from .windows import MEAN, WindowSpec

ONSET_QUANTILES = (0.99,)
# A slot's ratio over the median slot's that makes it an onset slot; and the rate over the quietest of
# the last 2 minutes that means a burst is already under way.
STAND_OUT = 2.0
MIN_PERIODS = 24  # whole periods of training data (a slot's quantile rests on one sample per period)


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


@dataclass(frozen=True)
class WithOnsets(ClockLayer):
    """Any base model, with an onset floor on its upper quantiles (see the module's docstring)."""

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        t0 = time.perf_counter()
        fitted = replace(self.base.fit(series, seed=seed, start_s=start_s), name=self.name)
        # Measured on the part the base model trained on; the held-out tenth it calibrated on then sets
        # how far its own quantile may shrink now that the floor covers the onsets.
        cut = calibration_cut(len(series), self.window)
        trained_on = fitted.inputs(series[:cut], start_s=start_s)
        onsets = Onsets.measure(*trained_on, self.window, period_s=self.period_s)
        if onsets is None:
            why = f"none: fewer than {MIN_PERIODS} periods of {self.period_s} s to measure"
            return replace(fitted, params={**fitted.params, "onsets": why})
        X, y, decisions = fitted.inputs(series, start_s=start_s, first_decision_s=cut)
        corrections = {}
        for key in onsets.ratios:
            q = float(key)
            model_q = np.maximum(fitted.quantile(X, q, decisions), 1e-9)
            floor = onsets.floor(X, decisions, q)
            # The scale each decision's own quantile needs to cover its peak; none where the floor does.
            needed = np.where(y <= floor, 0.0, y / model_q)
            corrections[key] = float(np.quantile(needed, q))
        onsets = replace(onsets, corrections=corrections)
        return replace(
            fitted,
            onsets=onsets,
            fit_s=time.perf_counter() - t0,
            params={
                **fitted.params,
                "onset_slots_s": {k: onsets.onset_slots(float(k)) for k in onsets.ratios},
                "onset_corrections": {k: round(v, 4) for k, v in corrections.items()},
            },
        )
