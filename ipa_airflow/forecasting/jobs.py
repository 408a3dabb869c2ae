"""What the `ipa forecast` commands run, besides comparing (backtesting/comparison.py) and training
(retrain.py): one forecaster backtested on named days of a trace, and a Prometheus history written as
a trace file. Arguments in, typed results out; the CLI only parses and prints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backtesting.backtest import BacktestResult, Walk, score, walk
from .backtesting.misses import MissProfile
from .base import FittedForecaster
from .sources import LoadSourceError, PrometheusSource, last_whole_days, named_days, write_trace


@dataclass(frozen=True)
class DaysBacktest:
    fitted: FittedForecaster
    walk: Walk
    result: BacktestResult
    misses: MissProfile


def backtest_days(
    series: np.ndarray,
    *,
    train_days: str,
    test_days: str,
    model: str,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    seed: int = 0,
    quantile: float | None = None,
) -> DaysBacktest:
    """Fit `model` on the train days (or load the registered forecaster `model_uri` from the MLflow at
    `tracking_uri`, default: the settings') and walk the test days, scoring the point forecast or the
    `quantile`."""
    from .catalog import forecaster

    (train, train_start), (test, test_start) = named_days(series, train_days), named_days(series, test_days)
    if model_uri:
        from ..registry import registry_for
        from .mlflow_store import load_forecaster

        fitted = load_forecaster(model_uri, tracking_uri=registry_for(tracking_uri).tracking_uri)
    else:
        fitted = forecaster(model).fit(train, seed=seed, start_s=train_start)
    w = walk(fitted, train, test, quantile=quantile, test_start_s=test_start)
    return DaysBacktest(fitted, w, score(fitted, w, quantile), MissProfile.of(w))


def export_window(now: float, *, days: int | None, start: int | None, end: int | None) -> tuple[int, int]:
    """[start, end) of an export: the last `days` whole UTC days, or `start` taken back to the hour
    (backtests take a trace to start on the hour: the clock-aware forecasters read the hour from it)."""
    if days is not None:
        return last_whole_days(now, days)
    if start is not None and end is not None:
        return start // 3600 * 3600, end
    raise ValueError("give --days N, or --start and --end (unix seconds)")


def utc(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Exported:
    path: Path
    start: int
    end: int
    rates: np.ndarray
    covered: float  # share of seconds Prometheus held a sample for

    def to_dict(self) -> dict:
        return {
            "trace": str(self.path),
            "start": self.start,
            "end": self.end,
            "start_utc": utc(self.start),
            "seconds": len(self.rates),
            "covered": round(self.covered, 5),
            "mean_rps": round(float(self.rates.mean()), 3),
            "peak_rps": round(float(self.rates.max()), 3),
        }


def export_trace(
    source: PrometheusSource,
    out: str | Path,
    start: int,
    end: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Exported:
    """Read [start, end) of `source` and write it as a trace file; a LoadSourceError, and nothing
    written, when Prometheus holds no sample of the query in the whole window."""
    history = source.history(start, end, progress=progress)
    if history.covered == 0:
        raise LoadSourceError(
            f"Prometheus has no sample of `{source.query}` from {utc(start)} to {utc(end)}: check the query, "
            "that its retention (--storage.tsdb.retention.time) reaches back that far, and that it scrapes"
        )
    return Exported(write_trace(out, history.rates), start, end, history.rates, history.covered)
