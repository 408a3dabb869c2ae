"""Trained forecasters in MLflow: the torch module as a registered model, its calibration beside it.

A forecaster needs more than its module to give quantiles (the held-out residual quantiles and the
conformal corrections), so the run also stores `calibration.json`; `load` puts both back together.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..registry.mlflow_profiles import mlflow_errors
from .base import FittedForecaster, QuantileHeads, ResidualQuantiles
from .lstm import _run
from .onsets import Onsets
from .season import Season
from .windows import MAX, WindowSpec, samples

FEATURES = {
    "lstm": slice(MAX, MAX + 1),
    "lstm-quantile": slice(0, 2),
    "lstm-quantile-hourly": slice(0, 2),
    "lstm-quantile-onsets": slice(0, 2),
    "lstm-quantile-hourly-onsets": slice(0, 2),
}
# The forecasters MLflow can keep: those that train a torch module, with the inputs above.
REGISTRABLE = tuple(FEATURES)


def _calibration(fitted: FittedForecaster) -> dict:
    cal = {
        "name": fitted.name,
        "window": {
            "bins": fitted.window.bins,
            "bin_s": fitted.window.bin_s,
            "horizon_s": fitted.window.horizon_s,
        },
        "residual_edges": [float(e) for e in fitted.residuals.edges],
        "residual_ratios": [r.tolist() for r in fitted.residuals.ratios],
    }
    if fitted.heads is not None:
        cal["head_levels"] = fitted.heads.levels.tolist()
        cal["head_corrections"] = fitted.heads.corrections.tolist()
    if fitted.season is not None:
        cal["season"] = {
            "period_s": fitted.season.period_s,
            "profile": [round(float(v), 5) for v in fitted.season.profile],
            "corrections": dict(fitted.season.corrections),
        }
    if fitted.onsets is not None:
        cal["onsets"] = {
            "period_s": fitted.onsets.period_s,
            "ratios": {q: [round(float(v), 5) for v in r] for q, r in fitted.onsets.ratios.items()},
            "corrections": dict(fitted.onsets.corrections),
        }
    return cal


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

    if fitted.module is None:
        raise ValueError(f"forecaster '{fitted.name}' has no trained module to log")
    X, _ = samples(train_series[-fitted.window.history_s * 4 :], fitted.window)
    example = X[:2, :, FEATURES[fitted.name]].astype(np.float32)  # two rows keep the batch axis dynamic
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow_errors(tracking_uri, f"log the {fitted.name} forecaster"):
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=f"train {fitted.name}", tags=tags or {}) as run:
            mlflow.log_params(
                {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in fitted.params.items()}
            )
            mlflow.log_metrics(metrics)
            mlflow.log_dict(_calibration(fitted), "calibration.json")
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
            cal = json.loads(Path(path).read_text())
    window = WindowSpec(**cal["window"])
    feats = FEATURES[cal["name"]]

    def raw(X: np.ndarray) -> np.ndarray:
        return _run(module, X[:, :, feats].astype(np.float32))

    heads = None
    if "head_levels" in cal:
        levels = np.asarray(cal["head_levels"])
        median = int(np.argmin(np.abs(levels - 0.5)))

        def head_fn(X: np.ndarray) -> np.ndarray:
            return np.maximum.accumulate(raw(X), axis=1)

        heads = QuantileHeads(levels, head_fn, np.asarray(cal["head_corrections"]))
        predict = lambda X: head_fn(X)[:, median]  # noqa: E731
    else:
        predict = raw
    residuals = ResidualQuantiles(
        np.asarray(cal["residual_edges"]), tuple(np.asarray(r) for r in cal["residual_ratios"])
    )
    season = None
    if "season" in cal:
        s = cal["season"]
        season = Season(int(s["period_s"]), np.asarray(s["profile"], dtype=float), dict(s["corrections"]))
    onsets = None
    if "onsets" in cal:
        o = cal["onsets"]
        ratios = {q: np.asarray(r, dtype=float) for q, r in o["ratios"].items()}
        onsets = Onsets(int(o["period_s"]), window, ratios, dict(o["corrections"]))
    return FittedForecaster(
        cal["name"], window, predict, residuals, {"model_uri": model_uri}, 0.0, heads, module, season, onsets
    )
