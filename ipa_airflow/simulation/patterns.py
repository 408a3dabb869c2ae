"""Choosing 20-minute workload windows from a trace, after the paper's four patterns.

The paper's thresholds (e.g. steady high: min > 30 req/s) were set on its own replay scale and select
nothing on this trace damped by 8 (mean about 8 req/s), so the rules are kept and the thresholds are
relative: on 10-s mean rates, `bursty` has the largest max - min with start and end within 15 % of
each other, `steady-low` / `steady-high` have the smallest range among windows whose mean is in the
lowest / highest quartile, and `fluctuating` joins the first 10 minutes of the steady-low window to the
first 10 minutes of the steady-high one (two pieces, as the paper does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WINDOW_S = 1200
STEP_S = 60
PATTERNS = ("bursty", "steady-low", "steady-high", "fluctuating")


@dataclass(frozen=True)
class Pattern:
    name: str
    pieces: tuple[tuple[int, int], ...]  # (start second, duration) pieces, joined in order
    mean_rps: float
    min_rps: float
    max_rps: float

    def series(self, trace: np.ndarray) -> np.ndarray:
        return np.concatenate([trace[s : s + d] for s, d in self.pieces])

    def to_dict(self) -> dict:
        return asdict(self)


def _stats(trace: np.ndarray, name: str, pieces) -> Pattern:
    s = np.concatenate([trace[a : a + d] for a, d in pieces])
    smooth = s[: len(s) // 10 * 10].reshape(-1, 10).mean(axis=1)
    return Pattern(name, tuple(pieces), float(s.mean()), float(smooth.min()), float(smooth.max()))


def find_patterns(trace: np.ndarray, *, window_s: int = WINDOW_S) -> dict[str, Pattern]:
    n = (len(trace) - window_s) // STEP_S
    starts = np.arange(n) * STEP_S
    ten = trace[: len(trace) // 10 * 10].reshape(-1, 10).mean(axis=1)  # 10-s mean rates
    w = window_s // 10
    idx = starts[:, None] // 10 + np.arange(w)[None, :]
    win = ten[idx]
    lo, hi, mean = win.min(axis=1), win.max(axis=1), win.mean(axis=1)
    rng_ = hi - lo
    first, last = win[:, :6].mean(axis=1), win[:, -6:].mean(axis=1)
    similar_ends = np.abs(first - last) <= 0.15 * np.maximum(first, last)
    live = lo > 0  # the recording has outages (seconds of zeros): no pattern is picked across one
    out = {}
    bursty = np.where(similar_ends & live, rng_, -np.inf)
    out["bursty"] = _stats(trace, "bursty", [(int(starts[np.argmax(bursty)]), window_s)])
    q1, q3 = np.quantile(mean[live], [0.25, 0.75])
    low = np.where((mean <= q1) & live, rng_, np.inf)
    high = np.where((mean >= q3) & live, rng_, np.inf)
    out["steady-low"] = _stats(trace, "steady-low", [(int(starts[np.argmin(low)]), window_s)])
    out["steady-high"] = _stats(trace, "steady-high", [(int(starts[np.argmin(high)]), window_s)])
    half = window_s // 2
    a, b = out["steady-low"].pieces[0][0], out["steady-high"].pieces[0][0]
    out["fluctuating"] = _stats(trace, "fluctuating", [(a, half), (b, half)])
    return out
