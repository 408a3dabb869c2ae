"""A forecaster with an onset floor: any base model, provisioning at least the current rate times the
onset table's ratio (clock.Onsets) in the slots of the hour where bursts start in some hours and not
others, while no burst is under way; its own quantile is rescaled on held-out data so that the two
together cover the quantile's share of peaks.

Only the planner's 0.99 gets onsets. There a missed onset is a large part of the 1 % a quantile may miss
and the model's own margin is wide, so covering onsets directly lets that margin shrink; at 0.95 and
below, the shipped trace shows the floor costing more over-provisioning than it saves in misses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..base import ClockLayer, FittedForecaster
from ..calibration import calibration_cut
from ..clock import MIN_PERIODS, Onsets


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
            fitted.with_calibration(onsets=onsets),
            fit_s=time.perf_counter() - t0,
            params={
                **fitted.params,
                "onset_slots_s": {k: onsets.onset_slots(float(k)) for k in onsets.ratios},
                "onset_corrections": {k: round(v, 4) for k, v in corrections.items()},
            },
        )
