"""Settings, built once at the edge (CLI, hook or environment) and passed down as plain values.

Embedded defaults need no service: MLflow is a SQLite store under `.ipa/`. Pointing at a real MLflow
server is configuration (MLFLOW_TRACKING_URI or --tracking-uri), not a code change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _home() -> Path:
    return Path(os.environ.get("IPA_HOME", ".ipa")).resolve()


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    artifact_root: str  # where experiments created by us store artifacts
    profiles_experiment: str = "ipa-profiles"
    decisions_experiment: str = "ipa-decisions"
    forecasts_experiment: str = "ipa-forecasters"


@dataclass(frozen=True)
class IpaSettings:
    home: Path
    mlflow: MlflowSettings
    # The runtime that serves the models; profiles measured on another runtime are stale.
    serving_runtime: str | None = field(default=None)


REPO = Path(__file__).resolve().parent.parent


def default_specs_dir() -> Path:
    return Path(os.environ.get("IPA_SPECS_DIR") or REPO / "profiles" / "pipelines")


def default_trace() -> Path:
    return Path(
        os.environ.get("IPA_TRACE") or REPO / "data" / "traces" / "twitter_trace_rps_days00-13.txt.gz"
    )


def load_settings(*, tracking_uri: str | None = None, home: Path | None = None) -> IpaSettings:
    home = home or _home()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    artifacts = os.environ.get("IPA_MLFLOW_ARTIFACT_ROOT") or (home / "mlartifacts").as_uri()
    return IpaSettings(
        home=home,
        mlflow=MlflowSettings(tracking_uri=uri, artifact_root=artifacts),
        serving_runtime=os.environ.get("IPA_SERVING_RUNTIME"),
    )
