"""Settings, built once at the edge (DAG file, hook, CLI) from the environment; passed down as plain values.

`load_settings(env)` is the one place that reads `IPA_*` variables (and MLFLOW_TRACKING_URI): a pure
function of a mapping, so a test passes a dict. A bad value is refused here, naming its variable, instead
of surfacing later as a failed task. An empty variable counts as unset. Airflow connections are read by
the hooks (`operators/hooks.py`); the settings only name the connection ids.

Embedded defaults need no service: MLflow is a SQLite store under `.ipa/`. Pointing at a real MLflow
server is configuration (MLFLOW_TRACKING_URI or --tracking-uri), not a code change.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Names the Airflow layer and the engine share; the hooks use the connection ids as their defaults.
MLFLOW_CONN_ID = "ipa_mlflow_default"
PROMETHEUS_CONN_ID = "ipa_prometheus_default"
KUBERNETES_CONN_ID = "kubernetes_default"
PROFILES_EXPERIMENT = "ipa-profiles"
DECISIONS_EXPERIMENT = "ipa-decisions"
FORECASTS_EXPERIMENT = "ipa-forecasters"
# PrometheusSource.query's default (tests/unit/test_settings.py keeps the two equal): a pipeline's
# request rate in req/s, MLServer's request counter on its first stage ({pipeline}, {stage} filled in).
DEFAULT_PROMETHEUS_QUERY = (
    'sum(rate(rest_server_requests_total{pipeline="{pipeline}", stage="{stage}", '
    'path=~"/v2/models/[^/]+(/versions/[^/]+)?/infer"}[2s]))'
)
LOAD_SOURCES = ("trace", "prometheus")
CLUSTER_BACKENDS = ("simulated", "kubernetes")
# MLflow's HTTP client retries for minutes by default; these fail fast when MLflow is down. Applied (where
# the user set none) when a client is made (`registry.mlflow_profiles.use_client_defaults`), not at import.
# The last keeps MLflow's "View run" links off stdout, where our commands print machine-readable output.
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    artifact_root: str  # where experiments created by us store artifacts
    profiles_experiment: str = PROFILES_EXPERIMENT
    decisions_experiment: str = DECISIONS_EXPERIMENT
    forecasts_experiment: str = FORECASTS_EXPERIMENT
    conn_id: str = MLFLOW_CONN_ID  # the hook's connection; MLFLOW_TRACKING_URI is its fallback
    ui_url: str | None = None  # IPA_MLFLOW_UI_URL: where people open MLflow, when not the tracking URI


@dataclass(frozen=True)
class LoadSettings:
    """Where the load comes from: a replayed trace, or a pipeline's request rate in Prometheus."""

    source: str = "trace"  # IPA_LOAD_SOURCE
    trace: Path = REPO / "data" / "traces" / "twitter_trace_rps_days00-13.txt.gz"  # IPA_TRACE
    prometheus_query: str = DEFAULT_PROMETHEUS_QUERY  # IPA_PROMETHEUS_QUERY
    history_days: int = 14  # IPA_HISTORY_DAYS: whole UTC days the weekly retraining reads
    prometheus_conn_id: str = PROMETHEUS_CONN_ID


@dataclass(frozen=True)
class ClusterSettings:
    backend: str = "simulated"  # IPA_CLUSTER_BACKEND
    kubernetes_conn_id: str = KUBERNETES_CONN_ID
    simulated_state_file: Path = Path(".ipa/cluster/simulated.json")  # under IPA_HOME
    simulated_startup_s: float = 0.0  # IPA_SIMULATED_STARTUP_S: how long a simulated pod takes to be ready


@dataclass(frozen=True)
class ForecasterSettings:
    registered_name: str = "ipa-load-forecaster"  # IPA_FORECASTER_NAME: what the weekly retraining registers
    model: str = "lstm-quantile-hourly-onsets"  # IPA_FORECASTER_MODEL: what it trains (DEFAULT_FORECASTER)
    registered_uri: str | None = None  # IPA_FORECASTER_URI: the adaptation DAG loads it (None: fit each run)
    plan_quantile: float | None = None  # IPA_PLAN_QUANTILE (None: each spec's adaptation.quantile)
    train_days: str = "0-9"  # IPA_TRAIN_DAYS, day 0 the oldest
    test_days: str = "10-13"  # IPA_TEST_DAYS


@dataclass(frozen=True)
class ProfilingSettings:
    hardware: str = "airflow-cpu"  # IPA_PROFILE_HARDWARE: the name profiles are filed under
    threads: tuple[int, ...] = (1, 2)  # IPA_PROFILE_THREADS: CPU cores per replica
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)  # IPA_PROFILE_BATCHES


@dataclass(frozen=True)
class RegistrySettings:
    """How the live plan reads MLflow's registry (registry stages, profiles) and gates new versions."""

    # IPA_PIPELINE_MAX_AGE_S: read the registry again after this long even without a profiling event
    # (an alias moved by hand changes the candidates without one).
    pipeline_max_age_s: float = 600.0
    gate_window_s: float = 3600.0  # IPA_GATE_WINDOW_S: the gate plans for the peak load of this window
    gate_alias: str | None = None  # IPA_GATE_ALIAS: the alias the profiling DAG moves to a passing version


@dataclass(frozen=True)
class DriftSettings:
    """Each decision compares a stage's observed p99 (Prometheus, load source 'prometheus' only) with
    what its profile predicts; a gap that persists emits a re-profiling event."""

    query: str = ""  # IPA_DRIFT_QUERY ('': stage_latency.DEFAULT_QUERY, MLServer's request histogram)
    threshold: float = 0.5  # IPA_DRIFT_THRESHOLD: |observed / predicted - 1| above this is a gap
    persist: int = 3  # IPA_DRIFT_PERSIST: decisions in a row with a gap before the event
    window_s: float = 60.0  # IPA_DRIFT_WINDOW_S: the rate() window of the query


@dataclass(frozen=True)
class ScheduleSettings:
    adaptation: str | None = "* * * * *"  # IPA_ADAPTATION_SCHEDULE ('none': None, runs by hand only)
    poll: str = "@hourly"  # IPA_POLL_SCHEDULE
    train: str = "@weekly"  # IPA_TRAIN_SCHEDULE


@dataclass(frozen=True)
class IpaSettings:
    home: Path  # IPA_HOME
    mlflow: MlflowSettings
    # The runtime that serves the models; profiles measured on another runtime are stale.
    serving_runtime: str | None = field(default=None)  # IPA_SERVING_RUNTIME
    specs_dir: Path = REPO / "profiles" / "pipelines"  # IPA_SPECS_DIR
    # IPA_FLEET_SPEC: a fleet spec (docs/fleet.md); set, the adaptation DAG plans its pipelines together
    # under its quota, and IPA_SPECS_DIR is not read.
    fleet_spec: Path | None = None
    load: LoadSettings = field(default_factory=LoadSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    forecaster: ForecasterSettings = field(default_factory=ForecasterSettings)
    profiling: ProfilingSettings = field(default_factory=ProfilingSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    # IPA_ADAPTATION_LOOP_S: each spec's task decides every adaptation.interval_s for this long (None or
    # 0 in the variable: one decision per DAG run).
    loop_s: float | None = None
    schedules: ScheduleSettings = field(default_factory=ScheduleSettings)
    webhook_secret: str = ""  # IPA_WEBHOOK_SECRET ('': the receiver refuses every delivery)
    debug: bool = False  # IPA_DEBUG: the CLI prints a traceback for an internal error


def debug_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """IPA_DEBUG, alone: the CLI asks it while handling an error, when the rest may be what is wrong."""
    return env.get("IPA_DEBUG", "") not in ("", "0")


class SettingsError(ValueError):
    """A variable holds a value ipa cannot use; the message names it."""


# ---- reading one variable -------------------------------------------------------------------------------
def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None  # empty counts as unset


def _number(env: Mapping[str, str], name: str, *, positive: bool = False) -> float | None:
    raw = _get(env, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SettingsError(f"{name}={raw!r} must be a {'positive' if positive else 'non-negative'} number")
    return value


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r} must be at least 1")
    return value


def _wholes(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a comma-separated list of whole numbers") from None
    if any(v < 1 for v in values):
        raise SettingsError(f"{name}={raw!r}: every value must be at least 1")
    return values


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = _get(env, name) or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(map(repr, choices))}")
    return value


# ---- the sections ---------------------------------------------------------------------------------------
def _home(env: Mapping[str, str]) -> Path:
    return Path(_get(env, "IPA_HOME") or ".ipa").resolve()


def _mlflow(env: Mapping[str, str], home: Path, tracking_uri: str | None) -> MlflowSettings:
    if tracking_uri:
        check_tracking_uri(tracking_uri)
    elif _get(env, "MLFLOW_TRACKING_URI"):
        check_tracking_uri(env["MLFLOW_TRACKING_URI"], source="MLFLOW_TRACKING_URI")
    uri = tracking_uri or _get(env, "MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    artifacts = _get(env, "IPA_MLFLOW_ARTIFACT_ROOT") or (home / "mlartifacts").as_uri()
    return MlflowSettings(tracking_uri=uri, artifact_root=artifacts, ui_url=_get(env, "IPA_MLFLOW_UI_URL"))


def _load(env: Mapping[str, str]) -> LoadSettings:
    return LoadSettings(
        source=_choice(env, "IPA_LOAD_SOURCE", LOAD_SOURCES),
        trace=default_trace(env),
        prometheus_query=_get(env, "IPA_PROMETHEUS_QUERY") or DEFAULT_PROMETHEUS_QUERY,
        history_days=_whole(env, "IPA_HISTORY_DAYS", 14),
    )


def _cluster(env: Mapping[str, str], home: Path) -> ClusterSettings:
    return ClusterSettings(
        backend=_choice(env, "IPA_CLUSTER_BACKEND", CLUSTER_BACKENDS),
        simulated_state_file=home / "cluster" / "simulated.json",
        simulated_startup_s=_number(env, "IPA_SIMULATED_STARTUP_S") or 0.0,
    )


def _forecaster(env: Mapping[str, str]) -> ForecasterSettings:
    quantile = _number(env, "IPA_PLAN_QUANTILE", positive=True)
    if quantile is not None and quantile >= 1:
        raise SettingsError(f"IPA_PLAN_QUANTILE={env['IPA_PLAN_QUANTILE']!r} must be below 1 (e.g. 0.99)")
    return ForecasterSettings(
        registered_name=_get(env, "IPA_FORECASTER_NAME") or "ipa-load-forecaster",
        model=_get(env, "IPA_FORECASTER_MODEL") or ForecasterSettings.model,
        registered_uri=_get(env, "IPA_FORECASTER_URI"),
        plan_quantile=quantile,
        train_days=_get(env, "IPA_TRAIN_DAYS") or "0-9",
        test_days=_get(env, "IPA_TEST_DAYS") or "10-13",
    )


def _profiling(env: Mapping[str, str]) -> ProfilingSettings:
    return ProfilingSettings(
        hardware=_get(env, "IPA_PROFILE_HARDWARE") or "airflow-cpu",
        threads=_wholes(env, "IPA_PROFILE_THREADS", (1, 2)),
        batch_sizes=_wholes(env, "IPA_PROFILE_BATCHES", (1, 2, 4, 8)),
    )


def _registry(env: Mapping[str, str]) -> RegistrySettings:
    return RegistrySettings(
        pipeline_max_age_s=_number(env, "IPA_PIPELINE_MAX_AGE_S", positive=True) or 600.0,
        gate_window_s=_number(env, "IPA_GATE_WINDOW_S", positive=True) or 3600.0,
        gate_alias=_get(env, "IPA_GATE_ALIAS"),
    )


def _drift(env: Mapping[str, str]) -> DriftSettings:
    return DriftSettings(
        query=_get(env, "IPA_DRIFT_QUERY") or "",
        threshold=_number(env, "IPA_DRIFT_THRESHOLD", positive=True) or 0.5,
        persist=_whole(env, "IPA_DRIFT_PERSIST", 3),
        window_s=_number(env, "IPA_DRIFT_WINDOW_S", positive=True) or 60.0,
    )


def _schedules(env: Mapping[str, str], loop_s: float | None) -> ScheduleSettings:
    # In loop mode one run lasts loop_s and the next starts when it ends; else one decision a minute.
    adaptation = _get(env, "IPA_ADAPTATION_SCHEDULE") or ("@continuous" if loop_s else "* * * * *")
    return ScheduleSettings(
        adaptation=None if adaptation == "none" else adaptation,
        poll=_get(env, "IPA_POLL_SCHEDULE") or "@hourly",
        train=_get(env, "IPA_TRAIN_SCHEDULE") or "@weekly",
    )


def default_specs_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(_get(env, "IPA_SPECS_DIR") or REPO / "profiles" / "pipelines")


def _fleet_spec(env: Mapping[str, str]) -> Path | None:
    raw = _get(env, "IPA_FLEET_SPEC")
    if raw is None:
        return None
    path = Path(raw).resolve()
    if not path.is_file():
        raise SettingsError(
            f"IPA_FLEET_SPEC={raw!r} is not a file: give a fleet spec (docs/fleet.md), or unset it"
        )
    return path


def default_trace(env: Mapping[str, str] = os.environ) -> Path:
    return Path(_get(env, "IPA_TRACE") or LoadSettings.trace)


def webhook_secret(env: Mapping[str, str] = os.environ) -> str:
    """IPA_WEBHOOK_SECRET, read apart from the rest: the receiver checks each delivery with it, and an
    unrelated bad setting must not turn MLflow's deliveries into server errors."""
    return env.get("IPA_WEBHOOK_SECRET", "")


def load_settings(
    env: Mapping[str, str] = os.environ, *, tracking_uri: str | None = None, home: Path | None = None
) -> IpaSettings:
    """The whole tree from `env` (default: this process's environment); `tracking_uri` and `home` are
    the CLI's overrides. Raises SettingsError (a ValueError) naming the variable of a bad value."""
    home = home or _home(env)
    loop_s = _number(env, "IPA_ADAPTATION_LOOP_S") or None  # 0: no loop, as unset
    return IpaSettings(
        home=home,
        mlflow=_mlflow(env, home, tracking_uri),
        serving_runtime=_get(env, "IPA_SERVING_RUNTIME"),
        specs_dir=default_specs_dir(env),
        fleet_spec=_fleet_spec(env),
        load=_load(env),
        cluster=_cluster(env, home),
        forecaster=_forecaster(env),
        profiling=_profiling(env),
        registry=_registry(env),
        drift=_drift(env),
        loop_s=loop_s,
        schedules=_schedules(env, loop_s),
        webhook_secret=webhook_secret(env),
        debug=debug_enabled(env),
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
