"""Load that repeats with the clock: the hourly profile and the seasonal forecaster around a base model."""

import datetime as dt

import numpy as np
import pytest

from ipa_airflow.forecasting.backtesting.backtest import backtest
from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.forecasting.clock import MIN_PERIODS, Season
from ipa_airflow.forecasting.models.level import Level
from ipa_airflow.forecasting.models.seasonal import Seasonal

BURST_S = 1860  # a burst at 00:31:00 of every hour, as in the shipped trace


def hourly_bursts(hours: int, start_s: int = 0, seed: int = 0) -> np.ndarray:
    """Poisson counts around 20 req/s, tripled for 5 s from the BURST_S-th second of every hour."""
    rng = np.random.default_rng(seed)
    phase = (start_s + np.arange(hours * 3600)) % 3600
    rate = np.where((phase >= BURST_S) & (phase < BURST_S + 5), 60.0, 20.0)
    return rng.poisson(rate).astype(float)


def test_the_profile_finds_the_burst_and_needs_enough_periods():
    season = Season.measure(hourly_bursts(30, start_s=7), start_s=7)
    assert season is not None and season.profile.mean() == pytest.approx(1.0)
    assert set(np.argsort(season.profile)[-5:]) == set(range(BURST_S, BURST_S + 5))
    assert season.profile[BURST_S] == pytest.approx(3.0, rel=0.15)
    assert season.horizon(np.array([BURST_S - 10, 100]), 20).round(1).tolist() == [
        round(season.profile[BURST_S : BURST_S + 5].max(), 1),
        round(season.profile[100:120].max(), 1),
    ]
    assert Season.measure(hourly_bursts(MIN_PERIODS), start_s=0) is None  # the edges eat into it


def test_a_seasonal_forecaster_expects_the_burst_its_base_model_misses():
    train, test = hourly_bursts(36), hourly_bursts(12, start_s=36 * 3600, seed=1)
    base = Level().fit(train)
    hourly = Seasonal(Level(), name="level-hourly").fit(train)
    assert hourly.params["season_period_s"] == 3600 and hourly.params["season_peak"] > 2.5
    plain = backtest(base, train, test, quantile=0.95)
    seasonal = backtest(hourly, train, test, quantile=0.95)
    # Two decisions an hour see the burst coming (and Poisson noise makes a few more rises).
    assert plain.rises == seasonal.rises >= 24
    assert plain.under_prediction_rate_on_rises > 0.6
    assert seasonal.under_prediction_rate_on_rises < 0.5 * plain.under_prediction_rate_on_rises
    assert abs(seasonal.under_prediction_rate - 0.05) < 0.025  # and it still keeps its promise overall
    with pytest.raises(ValueError, match="needs the decision times"):
        hourly.quantile(np.zeros((1, 12, 2)), 0.95)


def test_a_live_forecast_reads_the_time_of_day_from_now():
    hourly = Seasonal(Level(), name="level-hourly").fit(hourly_bursts(36))
    rates = np.full(300, 20.0)
    hour = dt.datetime(2026, 1, 1, 5, tzinfo=dt.UTC)
    before = hourly.forecast(rates, now=hour + dt.timedelta(seconds=BURST_S - 10))
    away = hourly.forecast(rates, now=hour + dt.timedelta(seconds=600))
    assert before.at(0.95) > 2 * away.at(0.95)


def test_too_short_a_history_falls_back_to_the_base_model_and_says_so():
    fitted = forecaster("lstm-quantile-hourly", epochs=1).fit(hourly_bursts(6))
    assert fitted.season is None and fitted.params["season"].startswith("none: fewer than 24 periods")
    assert fitted.name == "lstm-quantile-hourly"
