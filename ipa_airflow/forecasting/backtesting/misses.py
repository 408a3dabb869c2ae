"""When a forecaster misses: its under-prediction rate by minute of the hour and by hour of the day.

Misses that gather at the same minutes are load that follows the clock (scheduled jobs, posts queued
for the half hour), which a seasonal forecaster (models/seasonal.py) can expect; misses spread evenly are the
noise of the load itself. A miss counts at its decision's time: unix seconds for live rates, and for a
trace the second of the trace (a trace is taken to start at midnight).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backtest import Walk


@dataclass(frozen=True)
class MissProfile:
    overall: float
    by_minute_of_hour: np.ndarray  # (60,) under-prediction rate; nan where no decision fell
    by_hour_of_day: np.ndarray  # (24,)

    @classmethod
    def of(cls, w: Walk) -> MissProfile:
        t = np.asarray(w.decision_s, dtype=np.int64)
        missed = w.missed
        return cls(
            float(missed.mean()) if len(missed) else 0.0,
            _rate(missed, (t % 3600) // 60, 60),
            _rate(missed, (t % 86_400) // 3600, 24),
        )

    def worst_minutes(self, n: int = 3) -> list[tuple[int, float]]:
        """The `n` minutes of the hour with the highest under-prediction rate, highest first."""
        rates = np.nan_to_num(self.by_minute_of_hour, nan=-1.0)
        return [(int(m), float(rates[m])) for m in np.argsort(-rates, kind="stable")[:n] if rates[m] >= 0]

    def to_dict(self) -> dict:
        def rounded(a):
            return [None if np.isnan(v) else round(float(v), 5) for v in a]

        return {
            "overall": round(self.overall, 5),
            "by_minute_of_hour": rounded(self.by_minute_of_hour),
            "by_hour_of_day": rounded(self.by_hour_of_day),
        }


def _rate(missed: np.ndarray, slot: np.ndarray, slots: int) -> np.ndarray:
    n = np.bincount(slot, minlength=slots).astype(float)
    hits = np.bincount(slot, weights=missed.astype(float), minlength=slots)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hits / n, np.nan)
