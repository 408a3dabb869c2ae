"""Trained forecasters in MLflow: the torch module as a registered model, the rest of the fitted
forecaster beside it.

A forecaster needs more than its module to give quantiles (the held-out residual quantiles, the
conformal corrections, the clock's tables), so the run also stores `calibration.json`: the fitted
forecaster's dict (base.FittedForecaster.to_dict, everything but the module); `load` puts both back
together. Versions registered before the file named its point model load as they always did: the
point model is then an LSTM read on the inputs its name implies.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..registry.mlflow_profiles import mlflow_errors
from .base import FittedForecaster
from .models.lstm import INPUTS, LstmPeak
from .windows import samples

# The forecasters MLflow can keep, those that train a torch module, and the inputs their module reads
# (what a calibration.json written before it named its point model implies).
MODULE_INPUTS = {
    "lstm": "max",
    "lstm-quantile": "max+mean",
    "lstm-quantile-hourly": "max+mean",
    "lstm-quantile-onsets": "max+mean",
    "lstm-quantile-hourly-onsets": "max+mean",
}
REGISTRABLE = tuple(MODULE_INPUTS)


def log_forecaster(
    fitted: FittedForecaster,
    *,
    tracking_uri: str,
    experiment: str,
    registered_name: str,
    metrics: dict[str, float],
    train_series: np.ndarray,
    tags: dict[str, str] | None = None,
    artifacts: Sequence[Path] = (),
) -> tuple[str, str]:
    """Log the module, its calibration, params, backtest metrics and `artifacts` (files, e.g. a plot of
    the backtest), and register it: (run_id, version)."""
    import mlflow

    if not isinstance(fitted.point, LstmPeak):
        raise ValueError(f"forecaster '{fitted.name}' has no trained module to log")
    X, _ = samples(train_series[-fitted.window.history_s * 4 :], fitted.window)
    # Two rows keep the batch axis dynamic.
    example = X[:2, :, INPUTS[fitted.point.inputs]].astype(np.float32)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow_errors(tracking_uri, f"log the {fitted.name} forecaster"):
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=f"train {fitted.name}", tags=tags or {}) as run:
            mlflow.log_params(
                {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in fitted.params.items()}
            )
            mlflow.log_metrics(metrics)
            mlflow.log_dict(fitted.to_dict(), "calibration.json")
            for path in artifacts:
                mlflow.log_artifact(str(path), artifact_path="backtest")
            info = mlflow.pytorch.log_model(
                fitted.module, name="model", input_example=example, registered_model_name=registered_name
            )
    return run.info.run_id, str(info.registered_model_version)


def load_forecaster(model_uri: str, *, tracking_uri: str) -> FittedForecaster:
    """A registered forecaster (models:/name/version) ready to predict, with its quantiles."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow_errors(tracking_uri, f"load forecaster {model_uri}"):
        info = mlflow.models.get_model_info(model_uri)
        module = mlflow.pytorch.load_model(model_uri, map_location="cpu")
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=info.run_id, artifact_path="calibration.json", dst_path=tmp
            )
            saved = json.loads(Path(path).read_text())
    return FittedForecaster.from_dict(with_point(saved), module=module, params={"model_uri": model_uri})


def with_point(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A calibration.json with its point model named: as saved, or, for a version registered before
    the file named it, the LSTM its forecaster's name implies."""
    if "point" in saved:
        return dict(saved)
    point = {
        "kind": LstmPeak.kind,
        "inputs": MODULE_INPUTS[saved["name"]],
        "levels": saved.get("head_levels", []),
    }
    return {**saved, "point": point}
