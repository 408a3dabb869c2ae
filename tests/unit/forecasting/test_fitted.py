"""A fitted forecaster is a point model plus its calibration: each half, and the whole, round-trips
through a JSON dict, and the rebuilt forecaster forecasts what the fitted one does."""

import json

import numpy as np
import pytest

from ipa_airflow.forecasting.base import FittedForecaster
from ipa_airflow.forecasting.calibration import Calibration
from ipa_airflow.forecasting.catalog import forecaster, point_model_from_dict
from ipa_airflow.forecasting.models.level import Level
from ipa_airflow.forecasting.models.onsets import WithOnsets
from ipa_airflow.forecasting.models.seasonal import Seasonal
from ipa_airflow.forecasting.windows import WindowSpec, samples
from ipa_airflow.spec import PLAN_QUANTILES


def through_json(d: dict) -> dict:
    return json.loads(json.dumps(d))


def synthetic(n_s: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_s)
    return rng.poisson(20 + 10 * np.sin(2 * np.pi * t / 7200)).astype(float)


def hourly_bursts(hours: int, start_s: int = 0, seed: int = 0) -> np.ndarray:
    """Around 20 req/s; in half the hours, 80 req/s for 5 minutes from :31:50 (onsets and a season)."""
    rng = np.random.default_rng(seed)
    t = start_s + np.arange(hours * 3600)
    bursting = rng.random(hours + start_s // 3600 + 1)[t // 3600] < 0.5
    rate = np.where(bursting & (t % 3600 >= 1910) & (t % 3600 < 2210), 80.0, 20.0)
    return rng.poisson(rate).astype(float)


@pytest.mark.parametrize("name", ["reactive", "max", "level", "arima", "exp-smoothing"])
def test_a_fitted_forecaster_round_trips_exactly(name):
    series = synthetic(6 * 3600)
    fitted = forecaster(name).fit(series[: 5 * 3600])
    again = FittedForecaster.from_dict(through_json(fitted.to_dict()))
    assert again.name == name and again.window == fitted.window
    assert again.point == fitted.point
    X, _ = samples(series[5 * 3600 :], fitted.window)
    assert np.array_equal(again.predict(X), fitted.predict(X))
    for q in PLAN_QUANTILES:
        assert np.array_equal(again.quantile(X, q), fitted.quantile(X, q))


def test_each_half_round_trips_on_its_own():
    fitted = forecaster("level").fit(synthetic(4 * 3600))
    point = point_model_from_dict(through_json(fitted.point.to_dict()))
    assert point == fitted.point and point.levels == fitted.point.levels
    cal = Calibration.from_dict(through_json(fitted.calibration.to_dict()), fitted.window)
    assert np.array_equal(cal.head_corrections, fitted.calibration.head_corrections)
    ratios = zip(cal.residuals.ratios, fitted.calibration.residuals.ratios, strict=True)
    assert all(np.array_equal(a, b) for a, b in ratios)


@pytest.mark.parametrize("layer", [Seasonal, WithOnsets])
def test_the_clocks_tables_round_trip_at_the_precision_they_are_kept(layer):
    train, test = hourly_bursts(40), hourly_bursts(6, start_s=40 * 3600, seed=1)
    fitted = layer(Level(), name="level-clock").fit(train)
    assert fitted.season is not None or fitted.onsets is not None
    again = FittedForecaster.from_dict(through_json(fitted.to_dict()))
    X, _, decisions = fitted.inputs(test, start_s=40 * 3600)
    for q in PLAN_QUANTILES:
        # the tables keep 5 decimals (what calibration.json has always held)
        assert np.allclose(again.quantile(X, q, decisions), fitted.quantile(X, q, decisions), rtol=1e-4)


def test_an_lstm_round_trips_with_its_module_and_as_registered_before_the_point_was_named():
    torch = pytest.importorskip("torch")
    from ipa_airflow.forecasting.base import fit_with_calibration
    from ipa_airflow.forecasting.mlflow_store import with_point
    from ipa_airflow.forecasting.models.lstm import HEAD_QUANTILES, LstmPeak, build_module

    series = synthetic(3 * 3600, seed=1)
    torch.manual_seed(0)  # an untrained module is enough to tell whether the same one comes back
    module = build_module(8, 20.0, features=2, outputs=len(HEAD_QUANTILES))
    point = LstmPeak(module, "max+mean", HEAD_QUANTILES)
    fitted = fit_with_calibration("lstm-quantile", WindowSpec(), series[: 2 * 3600], lambda _: (point, {}))
    X, _ = samples(series[2 * 3600 :], fitted.window)
    saved = through_json(fitted.to_dict())
    legacy = {k: v for k, v in saved.items() if k != "point"}  # calibration.json before the point model
    for d in (saved, with_point(legacy)):
        again = FittedForecaster.from_dict(d, module=fitted.module)
        assert np.array_equal(again.quantile(X, 0.99), fitted.quantile(X, 0.99))
        assert np.array_equal(again.predict(X), fitted.predict(X))
    with pytest.raises(ValueError, match="needs its trained module"):
        FittedForecaster.from_dict(saved)
    with pytest.raises(ValueError, match="not the point model's"):
        FittedForecaster.from_dict({**saved, "head_levels": [0.5, 0.9]}, module=fitted.module)
