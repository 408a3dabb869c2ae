"""Training a forecaster, registering it in a real MLflow server, and loading it back for the step."""

from __future__ import annotations

import contextlib
import io
import json

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

    run = MlflowClient(mlflow_server).get_run(out["run_id"])
    assert "q095_mean_over_provisioning" in run.data.metrics and run.data.params["hidden"] == "25"

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
