"""Timing one model at one batch size: warm up until timings settle, then time enough calls for a p99.

Pure measurement, no I/O: `measure()` takes a callable that runs one batch (and synchronises the device
itself), so the same code times torch on CPU, torch on CUDA or any pyfunc model.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimingSettings:
    min_warmup: int = 3
    max_warmup: int = 30
    settle_cv: float = 0.10  # warm-up ends when the last few calls vary by less than this
    min_iters: int = 20
    max_iters: int = 200
    min_seconds: float = 2.0  # keep timing until this much has been spent (and min_iters reached)
    max_seconds: float = 30.0
    noisy_cv: float = 0.25  # a cell whose timings vary more than this is measured once more


@dataclass(frozen=True)
class Timing:
    batch: int
    samples_ms: tuple[float, ...]
    warmup_calls: int
    remeasured: bool = False

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 95))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 99))

    @property
    def mean_ms(self) -> float:
        return float(statistics.fmean(self.samples_ms))

    @property
    def cv(self) -> float:
        """Coefficient of variation of the timed calls."""
        return float(np.std(self.samples_ms) / self.mean_ms) if len(self.samples_ms) > 1 else 0.0

    @property
    def throughput_rps(self) -> float:
        return self.batch / (self.mean_ms / 1000.0)


def _time_once(run: Callable[[], None], clock: Callable[[], float]) -> float:
    t0 = clock()
    run()
    return (clock() - t0) * 1000.0


def measure(
    run: Callable[[], None],
    batch: int,
    settings: TimingSettings = TimingSettings(),
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time `run` (one batch, device synchronised inside) after a warm-up that waits for stable timings."""
    warm: list[float] = []
    while len(warm) < settings.max_warmup:
        warm.append(_time_once(run, clock))
        tail = warm[-settings.min_warmup :]
        if len(warm) >= settings.min_warmup and np.std(tail) / np.mean(tail) < settings.settle_cv:
            break
    samples = _timed_calls(run, settings, clock)
    timing = Timing(batch, tuple(samples), len(warm))
    if timing.cv > settings.noisy_cv:
        again = Timing(batch, tuple(_timed_calls(run, settings, clock)), len(warm), remeasured=True)
        timing = min(timing, again, key=lambda t: t.cv)
        timing = Timing(batch, timing.samples_ms, len(warm), remeasured=True)
    return timing


def _timed_calls(
    run: Callable[[], None], settings: TimingSettings, clock: Callable[[], float]
) -> list[float]:
    samples: list[float] = []
    start = clock()
    while len(samples) < settings.max_iters:
        samples.append(_time_once(run, clock))
        spent = clock() - start
        if len(samples) >= settings.min_iters and spent >= settings.min_seconds:
            break
        if spent >= settings.max_seconds and len(samples) >= 5:
            break
    return samples
