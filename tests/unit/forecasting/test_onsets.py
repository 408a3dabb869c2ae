"""Bursts that start at the same minute in some hours and not others: the onset table and the
forecaster that provisions for them at the planner's quantile."""

import datetime as dt

import numpy as np
import pytest

from ipa_airflow.forecasting.backtesting.backtest import backtest, walk
from ipa_airflow.forecasting.clock import Onsets, onset_level
from ipa_airflow.forecasting.models.level import Level
from ipa_airflow.forecasting.models.onsets import WithOnsets
from ipa_airflow.forecasting.windows import WindowSpec, decision_seconds, samples

ONSET_S = 1910  # :31:50, as in the shipped trace


def sometimes_bursting(hours: int, start_s: int = 0, seed: int = 0) -> np.ndarray:
    """Poisson counts around 20 req/s; in half the hours, at random, 80 req/s for 5 minutes from ONSET_S."""
    rng = np.random.default_rng(seed)
    t = start_s + np.arange(hours * 3600)
    bursting = rng.random(hours + start_s // 3600 + 1)[t // 3600] < 0.5
    phase = t % 3600
    rate = np.where(bursting & (phase >= ONSET_S) & (phase < ONSET_S + 300), 80.0, 20.0)
    return rng.poisson(rate).astype(float)


def samples_at(series: np.ndarray):
    X, y = samples(series, WindowSpec())
    return X, y, decision_seconds(len(series), WindowSpec())


def test_the_table_finds_the_onset_slots_only():
    onsets = Onsets.measure(*samples_at(sometimes_bursting(40)), WindowSpec())
    slots = onsets.onset_slots(0.99)
    assert 1900 in slots and set(slots) <= {1890, 1900, 1910}
    assert onsets.ratios["0.99"][1900 // 10] > 3.5  # the 4-fold burst's peak over the quiet mean
    assert Onsets.measure(*samples_at(sometimes_bursting(20)), WindowSpec()) is None  # too few hours


def test_a_burst_under_way_is_not_multiplied_again():
    quiet = np.full((1, 12, 2), 20.0)
    burst = quiet.copy()
    burst[0, -3:, :] = 80.0
    assert onset_level(np.concatenate([quiet, burst]), WindowSpec()).tolist() == [20.0, 0.0]


def test_onsets_catch_the_bursts_the_base_model_misses_at_the_planners_quantile():
    train, test = sometimes_bursting(40), sometimes_bursting(24, start_s=40 * 3600, seed=1)
    base = Level().fit(train)
    with_onsets = WithOnsets(Level(), name="level-onsets").fit(train)
    assert with_onsets.params["onset_slots_s"]["0.99"] and with_onsets.onsets is not None
    plain = backtest(base, train, test, quantile=0.99)
    caught = backtest(with_onsets, train, test, quantile=0.99)
    assert plain.rises == caught.rises >= 12
    assert plain.under_prediction_rate_on_rises > 0.3
    assert caught.under_prediction_rate_on_rises < 0.5 * plain.under_prediction_rate_on_rises
    # It still keeps its promise overall, with no more over-provisioning: its own margin shrank.
    assert caught.under_prediction_rate < 0.02
    assert caught.mean_over_provisioning <= plain.mean_over_provisioning
    # Other quantiles are the base model's own.
    ours, theirs = (walk(f, train, test, quantile=0.95).forecast for f in (with_onsets, base))
    assert np.array_equal(ours, theirs)
    with pytest.raises(ValueError, match="needs the decision times"):
        with_onsets.quantile(np.zeros((1, 12, 2)), 0.99)


def test_too_little_history_fits_the_base_model_alone_and_says_so():
    fitted = WithOnsets(Level(), name="level-onsets").fit(sometimes_bursting(20))
    assert fitted.onsets is None and fitted.params["onsets"].startswith("none: fewer than 24 periods")


def test_a_live_forecast_provisions_for_the_onset_from_the_time_of_now():
    fitted = WithOnsets(Level(), name="level-onsets").fit(sometimes_bursting(40))
    rates = np.full(300, 20.0)
    hour = dt.datetime(2026, 1, 1, 5, tzinfo=dt.UTC)
    # `now` is the last observed second: the next decision starts one second later.
    before = fitted.forecast(rates, now=hour + dt.timedelta(seconds=1900 - 1))
    away = fitted.forecast(rates, now=hour + dt.timedelta(seconds=600 - 1))
    assert before.at(0.99) > 3 * away.at(0.99)
    assert before.at(0.95) == away.at(0.95)
