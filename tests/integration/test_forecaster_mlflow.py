"""Training a forecaster, registering it in a real MLflow server, and loading it back for the step."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.mlflow_store import load_forecaster
from ipa_airflow.forecasting.windows import samples

pytestmark = pytest.mark.slow


def test_train_register_load_and_backtest(mlflow_server, tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(2 * 86_400)
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(str(int(v)) for v in rng.poisson(80 + 40 * np.sin(2 * np.pi * t / 86_400))))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            main(
                [
                    "forecast",
                    "train",
                    "--trace",
                    str(trace),
                    "--damping",
                    "8",
                    "--train-days",
                    "0",
                    "--test-days",
                    "1",
                    "--model",
                    "lstm-quantile",
                    "--tracking-uri",
                    mlflow_server,
                    "--json",
                ]
            )
            == 0
        )
    out = json.loads(buf.getvalue())
    assert out["model_uri"] == "models:/ipa-load-forecaster/1"
    assert 0 <= out["metrics"]["q095_under_prediction_rate"] <= 0.2

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    run = client.get_run(out["run_id"])
    assert {"q095_mean_over_provisioning", "q099_quantile_loss"} <= set(run.data.metrics)
    assert run.data.params["hidden"] == "25"
    # Where the q0.95 forecasts missed is browsable beside the metrics, and agrees with them.
    logged = {a.path for a in client.list_artifacts(out["run_id"], "backtest")}
    assert logged == {"backtest/backtest_misses.json", "backtest/backtest_misses.png"}
    saved = client.download_artifacts(out["run_id"], "backtest/backtest_misses.json", str(tmp_path))
    misses = json.loads(Path(saved).read_text())
    assert misses["overall"] == pytest.approx(out["metrics"]["q095_under_prediction_rate"], abs=1e-5)
    assert len(misses["by_minute_of_hour"]) == 60 and len(misses["by_hour_of_day"]) == 24

    loaded = load_forecaster(out["model_uri"], tracking_uri=mlflow_server)
    series = np.loadtxt(trace) / 8
    X, _ = samples(series[86_400 : 86_400 + 3600], loaded.window)
    assert np.all(loaded.quantile(X, 0.95) >= loaded.predict(X) * 0.99)

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            main(
                [
                    "forecast",
                    "backtest",
                    "--trace",
                    str(trace),
                    "--train-days",
                    "0",
                    "--test-days",
                    "1",
                    "--model-uri",
                    out["model_uri"],
                    "--tracking-uri",
                    mlflow_server,
                    "--quantile",
                    "0.95",
                    "--json",
                ]
            )
            == 0
        )
    bt = json.loads(buf.getvalue())
    # The registered model reproduces the metrics logged at training time.
    assert bt["under_prediction_rate"] == pytest.approx(
        out["metrics"]["q095_under_prediction_rate"], abs=1e-4
    )


def test_the_forecast_task_loads_the_registered_forecaster_and_falls_back_without_mlflow(
    mlflow_server, tmp_path, monkeypatch
):
    from ipa_airflow_provider.operators import IpaForecastOperator

    from ipa_airflow.forecasting.catalog import forecaster
    from ipa_airflow.forecasting.sources import read_trace
    from ipa_airflow.settings import default_trace
    from tests.conftest import PIPELINES
    from tests.integration.conftest import free_port

    series = read_trace(default_trace(), damping=8)
    fitted = forecaster("lstm-quantile").fit(series[:86_400])
    from ipa_airflow.forecasting.mlflow_store import log_forecaster

    _, version = log_forecaster(
        fitted,
        tracking_uri=mlflow_server,
        experiment="ipa-forecasters",
        registered_name="ipa-test-forecaster",
        metrics={},
        train_series=series[:86_400],
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the hook's fallback without a connection

    def run(uri):
        op = IpaForecastOperator(
            task_id="forecast",
            trace=str(default_trace()),
            trace_second=962_460,
            model="reactive",
            model_uri=uri,
            spec_path=str(PIPELINES / "video-cpu.yaml"),
        )
        return op.execute({})

    loaded = run(f"models:/ipa-test-forecaster/{version}")
    assert loaded["model"] == "lstm-quantile" and loaded["note"] == ""
    assert len(loaded["earlier"]) == 3 and "0.99" in loaded["quantiles"]  # stabilisation 4 in the spec

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    fallback = run(f"models:/ipa-test-forecaster/{version}")
    assert fallback["model"] == "reactive" and fallback["note"].startswith("fallback: reactive fitted")


@pytest.mark.parametrize(
    ("model", "clocks"),
    [
        ("lstm-quantile-hourly", ["season"]),
        ("lstm-quantile-onsets", ["onsets"]),
        ("lstm-quantile-hourly-onsets", ["season", "onsets"]),
    ],
)
def test_a_clock_aware_forecaster_keeps_what_it_knows_of_the_hour_through_the_registry(
    mlflow_server, model, clocks
):
    from ipa_airflow.forecasting.catalog import forecaster
    from ipa_airflow.forecasting.mlflow_store import log_forecaster
    from ipa_airflow.forecasting.sources import read_trace
    from ipa_airflow.settings import default_trace

    series = read_trace(default_trace(), damping=8)[: 3 * 86_400]
    fitted = forecaster(model).fit(series[: 2 * 86_400], start_s=0)
    assert all(getattr(fitted, clock) is not None for clock in clocks)
    _, version = log_forecaster(
        fitted,
        tracking_uri=mlflow_server,
        experiment="ipa-forecasters",
        registered_name=f"ipa-{model}",
        metrics={},
        train_series=series[: 2 * 86_400],
    )
    loaded = load_forecaster(f"models:/ipa-{model}/{version}", tracking_uri=mlflow_server)
    assert loaded.name == model
    for clock in clocks:
        kept, trained = getattr(loaded, clock), getattr(fitted, clock)
        assert kept is not None, f"{clock} lost in the registry"
        assert dict(kept.corrections) == pytest.approx(dict(trained.corrections))
    X, _, decisions = fitted.inputs(series[2 * 86_400 :], start_s=2 * 86_400)
    assert np.allclose(loaded.quantile(X, 0.99, decisions), fitted.quantile(X, 0.99, decisions), rtol=1e-4)
    with pytest.raises(ValueError, match="needs the decision times"):
        loaded.quantile(X, 0.99)


def test_train_checks_mlflow_before_fitting_and_load_says_what_mlflow_refused(
    mlflow_server, tmp_path, capsys, monkeypatch
):
    from ipa_airflow.registry.mlflow_profiles import RegistryError
    from tests.integration.conftest import free_port

    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(["40"] * 2 * 86_400))
    down = f"http://127.0.0.1:{free_port()}"

    def no_fit(name):
        raise AssertionError(f"fitted {name} with MLflow down")

    monkeypatch.setattr("ipa_airflow.forecasting.catalog.forecaster", no_fit)
    argv = ["forecast", "train", "--trace", str(trace), "--train-days", "0", "--test-days", "1"]
    assert main([*argv, "--model", "lstm", "--tracking-uri", down]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach MLflow at {down}" in err and "--tracking-uri" in err
    with pytest.raises(
        RegistryError, match=r"MLflow at .* refused to load forecaster models:/no-such-forecaster/1"
    ):
        load_forecaster("models:/no-such-forecaster/1", tracking_uri=mlflow_server)


def test_retraining_registers_only_a_forecaster_with_a_lower_quantile_loss(mlflow_server, tmp_path):
    from ipa_airflow.forecasting.catalog import forecaster
    from ipa_airflow.forecasting.mlflow_store import log_forecaster
    from ipa_airflow.forecasting.retrain import train_and_register
    from ipa_airflow.registry.mlflow_profiles import MlflowUnreachable
    from tests.integration.conftest import free_port

    rng = np.random.default_rng(1)
    t = np.arange(2 * 86_400)
    load = rng.poisson(60 + 30 * np.sin(2 * np.pi * t / 86_400))
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(str(int(v)) for v in load))
    args = {"tracking_uri": mlflow_server, "train_days": "0", "test_days": "1", "damping": 1.0}

    first = train_and_register(str(trace), registered_name="ipa-retrain-rule", **args).to_dict()
    assert (
        first["registered"] and "current" not in first and first["model_uri"] == "models:/ipa-retrain-rule/1"
    )
    # the same model again scores the same: no new version for noise
    again = train_and_register(str(trace), registered_name="ipa-retrain-rule", **args).to_dict()
    loss = "q099_quantile_loss"
    assert again["new"][loss] == pytest.approx(again["current"][loss], rel=1e-6)
    assert not again["registered"] and "model_uri" not in again

    # a forecaster of other load (a tenth of this one) is replaced by one of this load
    stale = forecaster("lstm-quantile").fit(load[:86_400] / 10.0)
    log_forecaster(
        stale,
        tracking_uri=mlflow_server,
        experiment="ipa-forecasters",
        registered_name="ipa-retrain-stale",
        metrics={},
        train_series=load[:86_400] / 10.0,
    )
    fresh = train_and_register(str(trace), registered_name="ipa-retrain-stale", **args).to_dict()
    assert fresh["registered"] and fresh["new"][loss] < 0.5 * fresh["current"][loss]
    assert fresh["model_uri"] == "models:/ipa-retrain-stale/2"

    with pytest.raises(MlflowUnreachable):
        train_and_register(
            str(trace), registered_name="x", **{**args, "tracking_uri": f"http://127.0.0.1:{free_port()}"}
        )
