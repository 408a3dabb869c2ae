import datetime as dt

import numpy as np
import pytest

from ipa_airflow.forecasting.backtest import backtest, evaluate
from ipa_airflow.forecasting.base import Forecast, ResidualQuantiles
from ipa_airflow.forecasting.registry import FORECASTERS, forecaster
from ipa_airflow.forecasting.sources import LoadSourceError, days, parse_days, read_trace
from ipa_airflow.forecasting.step import forecast_step
from ipa_airflow.forecasting.windows import MAX, MEAN, WindowSpec, recent_bins, samples


def synthetic(n_s: int, seed: int = 0) -> np.ndarray:
    """A daily-like sine around 20 req/s with Poisson noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_s)
    return rng.poisson(20 + 10 * np.sin(2 * np.pi * t / 7200)).astype(float)


def test_samples_follow_the_papers_windows():
    series = np.arange(200, dtype=float)  # rate = t, so maxima are bin ends
    X, y = samples(series, WindowSpec())
    # first decision at t = 120: bins [0..9], ..., [110..119]; target max of [120, 140) = 139
    assert X.shape == (7, 12, 2)
    assert X[0, 0, MAX] == 9 and X[0, -1, MAX] == 119
    assert X[0, 0, MEAN] == pytest.approx(4.5)
    assert y[0] == 139 and y[-1] == 199
    assert recent_bins(series[:130], WindowSpec()).shape == (1, 12, 2)


def test_window_spec_rejects_horizon_not_multiple_of_bins():
    with pytest.raises(ValueError):
        WindowSpec(horizon_s=15)


def test_metrics_on_known_numbers():
    m = evaluate(np.array([10.0, 10.0, 12.0, 8.0]), np.array([10.0, 11.0, 10.0, 8.0]))
    assert m["under_prediction_rate"] == 0.25
    assert m["mean_over_provisioning"] == pytest.approx((0 + (10 / 11 - 1) + 0.2 + 0) / 4)
    assert m["mape"] == pytest.approx((0 + 1 / 11 + 0.2 + 0) / 4)


@pytest.mark.parametrize("name", [n for n in FORECASTERS if not n.startswith("lstm")])
def test_quantile_forecasts_cover_what_they_promise(name):
    series = synthetic(24 * 3600)
    train, test = series[: 20 * 3600], series[20 * 3600 :]
    fitted = forecaster(name).fit(train)
    point = backtest(fitted, train, test)
    q95 = backtest(fitted, train, test, quantile=0.95)
    assert q95.under_prediction_rate < point.under_prediction_rate
    assert q95.under_prediction_rate < 0.12  # calibrated on held-out data: close to the promised 5 %
    assert q95.mean_over_provisioning > point.mean_over_provisioning


@pytest.mark.parametrize("name", ["lstm", "lstm-quantile"])
def test_lstms_learn_and_are_deterministic(name):
    series = synthetic(4 * 3600, seed=1)
    train, test = series[: 3 * 3600], series[3 * 3600 :]
    model = FORECASTERS[name](epochs=15, lr=1e-2, batch_size=64)
    a, b = model.fit(train, seed=3), model.fit(train, seed=3)
    X, _ = samples(test, a.window)
    assert np.allclose(a.predict(X), b.predict(X))
    assert backtest(a, train, test).mape < 0.35
    assert np.all(a.quantile(X, 0.95) >= a.quantile(X, 0.5) - 1e-9) if name == "lstm-quantile" else True


def test_residual_quantiles_by_level():
    pred = np.concatenate([np.full(500, 10.0), np.full(500, 100.0)])
    actual = np.concatenate([np.linspace(5, 15, 500), np.linspace(95, 105, 500)])
    rq = ResidualQuantiles.calibrate(pred, actual)
    low, high = rq.factor(np.array([10.0, 100.0]), 0.9)
    assert low == pytest.approx(1.4, abs=0.02) and high == pytest.approx(1.04, abs=0.01)


def test_forecast_round_trip_and_quantile_lookup():
    f = Forecast("lstm", 20, 10.0, {"0.9": 11.0, "0.95": 12.0}, "2026-01-01T00:00:00+00:00")
    assert Forecast.from_dict(f.to_dict()) == f
    assert f.at(None) == 10.0 and f.at(0.95) == 12.0
    with pytest.raises(KeyError):
        f.at(0.99)


def test_step_falls_back_to_the_last_good_forecast_then_fails_loudly():
    fitted = forecaster("reactive").fit(synthetic(3600))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    good = forecast_step(lambda: synthetic(300), fitted, now=now)
    assert good.note == "" and good.point > 0

    def down():
        raise LoadSourceError("cannot reach Prometheus")

    later = now + dt.timedelta(seconds=30)
    fb = forecast_step(down, fitted, now=later, last_good=good)
    assert fb.point == good.point and fb.note.startswith("fallback: last good forecast (30 s old)")
    with pytest.raises(LoadSourceError):
        forecast_step(down, fitted, now=now + dt.timedelta(seconds=600), last_good=good)


def test_trace_reading_and_day_ranges(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("8\n16\n0\n")
    assert read_trace(path, damping=8).tolist() == [1.0, 2.0, 0.0]
    path.write_text("8\nabc\n")
    with pytest.raises(LoadSourceError, match="one number per line"):
        read_trace(path)
    with pytest.raises(LoadSourceError, match="cannot read"):
        read_trace(tmp_path / "missing.txt")
    assert parse_days("0-9") == (0, 9) and parse_days("12") == (12, 12)
    with pytest.raises(ValueError):
        parse_days("9-0")
    with pytest.raises(ValueError, match="days"):
        days(np.zeros(100), 0, 1)
