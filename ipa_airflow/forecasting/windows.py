"""From a per-second series to the forecasting problem of the paper: at every decision (each 10 s), the
last 12 ten-second bins predict the maximum rate of the next 20 s.

Inputs carry two features per bin, its maximum (the paper's input) and its mean (a less noisy estimate of
the underlying rate): X has shape (decisions, bins, 2); MAX and MEAN index the last axis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX, MEAN = 0, 1


@dataclass(frozen=True)
class WindowSpec:
    bins: int = 12
    bin_s: int = 10
    horizon_s: int = 20

    def __post_init__(self):
        if self.bins < 1 or self.bin_s < 1 or self.horizon_s < self.bin_s or self.horizon_s % self.bin_s:
            raise ValueError("horizon_s must be a positive multiple of bin_s, and bins and bin_s positive")

    @property
    def history_s(self) -> int:
        return self.bins * self.bin_s

    @property
    def horizon_bins(self) -> int:
        return self.horizon_s // self.bin_s


def bin_maxima(series: np.ndarray, bin_s: int) -> np.ndarray:
    n = len(series) // bin_s
    return series[: n * bin_s].reshape(n, bin_s).max(axis=1)


def bin_features(series: np.ndarray, bin_s: int) -> np.ndarray:
    """(bins, 2): the max and the mean of each bin."""
    n = len(series) // bin_s
    shaped = series[: n * bin_s].reshape(n, bin_s)
    return np.stack([shaped.max(axis=1), shaped.mean(axis=1)], axis=1)


def samples(
    series: np.ndarray, window: WindowSpec, *, first_decision_s: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for every decision at a bin boundary t >= max(history, first_decision_s) with a full horizon:
    X[i] = the features of the `bins` bins before t, y[i] = the max rate in [t, t + horizon)."""
    feats = bin_features(series, window.bin_s)
    b = feats[:, MAX]
    h = window.horizon_bins
    ks = decision_seconds(len(series), window, first_decision_s=first_decision_s) // window.bin_s
    if len(ks) == 0:
        return np.zeros((0, window.bins, 2)), np.zeros(0)
    idx = ks[:, None] + np.arange(-window.bins, 0)[None, :]
    future = ks[:, None] + np.arange(h)[None, :]
    return feats[idx], b[future].max(axis=1)


def decision_seconds(n_s: int, window: WindowSpec, *, first_decision_s: int = 0) -> np.ndarray:
    """The decision times of `samples` for a series of `n_s` seconds, in seconds into it."""
    start = max(window.bins, -(-first_decision_s // window.bin_s))
    return np.arange(start, n_s // window.bin_s - window.horizon_bins + 1) * window.bin_s


def recent_bins(series: np.ndarray, window: WindowSpec) -> np.ndarray:
    """The model input for a decision now, from the last `history_s` seconds (zero-padded when short)."""
    tail = series[-window.history_s :]
    if len(tail) < window.history_s:
        tail = np.concatenate([np.zeros(window.history_s - len(tail)), tail])
    return bin_features(tail, window.bin_s)[None, :, :]
