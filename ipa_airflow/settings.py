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


# The stores MLflow 3 builds a tracking store for (mlflow.tracking._tracking_service.utils); "" is a
# plain path. A database URI may name its driver after a '+' (postgresql+psycopg2://...).
MLFLOW_SCHEMES = (
    "",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
)


def check_tracking_uri(uri: str, *, source: str = "the tracking URI") -> str:
    """`uri`, or a ValueError naming its scheme and the ones MLflow can use: MLflow's own error for an
    unknown scheme comes late (after the work whose result it would store) and reads like a crash."""
    from urllib.parse import urlparse

    if not uri.strip():
        raise ValueError(f"{source} is empty; give e.g. http://mlflow:5000 or sqlite:///mlflow.db")
    try:
        scheme = urlparse(uri).scheme.lower()
    except ValueError as exc:
        raise ValueError(f"{source} {uri!r} is not a URI: {exc}") from None
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        scheme = ""
    if scheme.split("+")[0] not in MLFLOW_SCHEMES:
        raise ValueError(
            f"{source} {uri!r} has scheme {scheme}://, which MLflow cannot store runs in; use one of "
            "http(s)://HOST:PORT (a tracking server), sqlite:///FILE.db, postgresql://, mysql://, "
            "file:///FOLDER or databricks"
        )
    return uri


def load_settings(*, tracking_uri: str | None = None, home: Path | None = None) -> IpaSettings:
    home = home or _home()
    if tracking_uri:
        check_tracking_uri(tracking_uri)
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        check_tracking_uri(os.environ["MLFLOW_TRACKING_URI"], source="MLFLOW_TRACKING_URI")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    artifacts = os.environ.get("IPA_MLFLOW_ARTIFACT_ROOT") or (home / "mlartifacts").as_uri()
    return IpaSettings(
        home=home,
        mlflow=MlflowSettings(tracking_uri=uri, artifact_root=artifacts),
        serving_runtime=os.environ.get("IPA_SERVING_RUNTIME"),
    )
