"""ipa_profile_model_version: profile new MLflow model versions where the pipelines run them.

Started by asset events on ipa://mlflow/model-versions (the MLflow webhook receiver, or the polling
DAG) or by hand with conf {"name": ..., "version": ...}. Each version is profiled on every shape the
specs in IPA_SPECS_DIR ask of its registered model (a stage's `registered_model`, or a variant whose
model_uri names one of its versions), filed in MLflow under the spec's hardware name:
  - on this Airflow worker when the shape's hardware is the worker's own (IPA_PROFILE_HARDWARE), with
    the shape's cores as threads (task `profile`, one mapped task per shape);
  - else in a pod from the profiler image on that hardware's node pool (node label
    ipa.io/hardware=<hardware>), GPU shapes included (task `profile_pod`); the pod files into the
    MLflow server of the ipa_mlflow connection.
A version no spec asks for is profiled on the worker as before: under IPA_PROFILE_HARDWARE, at each of
IPA_PROFILE_THREADS, fp32. Then `gate` asks, for every pipeline that would use the version, whether the
program meets the SLA with it at the recent peak load (the last IPA_GATE_WINDOW_S seconds of the load
source), writes the verdict on the version as tags (ipa.gate.<pipeline>), moves IPA_GATE_ALIAS to a
version that passes when set, and updates the asset ipa://mlflow/profiles: the planner reads MLflow again.

Configuration (environment, read once at parse time by `load_settings()`):
  IPA_SPECS_DIR          the pipeline specs whose shapes are profiled (a spec that fails to load is
                         logged and skipped)
  IPA_PROFILE_HARDWARE   the hardware name of this worker, as the specs name it (default: airflow-cpu)
  IPA_PROFILE_THREADS    CPU cores per replica to profile a model no spec asks for (default: 1,2)
  IPA_PROFILE_BATCHES    batch sizes (default: 1,2,4,8)

Tasks: versions_to_profile -> targets -> on_worker -> profile (mapped, IpaProfileOperator)
                                      -> in_pods   -> profile_pod (mapped, IpaProfilePodOperator)
       versions_to_profile, profile, profile_pod -> gate (all_done; outlet ipa://mlflow/profiles)
       profile, profile_pod -> all_profiled (the run fails when a profiling task failed)
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import DAG, Asset, task
from ipa_airflow_provider.operators import IpaProfileOperator, IpaProfilePodOperator
from ipa_airflow_provider.plugin import MODEL_VERSIONS_URI, PROFILES_URI

from ipa_airflow.settings import load_settings

SETTINGS = load_settings()
MODEL_VERSIONS = Asset(MODEL_VERSIONS_URI)
PROFILES = Asset(PROFILES_URI)
HARDWARE = SETTINGS.profiling.hardware  # this worker's hardware name
THREADS = list(SETTINGS.profiling.threads)
BATCHES = ",".join(map(str, SETTINGS.profiling.batch_sizes))
log = logging.getLogger(__name__)

with DAG(
    dag_id="ipa_profile_model_version",
    description="Profile new model versions on the shapes their pipelines run and file them in MLflow",
    schedule=[MODEL_VERSIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ipa"],
) as dag:

    @task
    def versions_to_profile(**context) -> list[str]:
        conf = context["dag_run"].conf or {}
        found = []
        if conf.get("name"):
            found.append((conf["name"], str(conf["version"])))
        for events in (context.get("triggering_asset_events") or {}).values():
            for event in events:
                extra = event.extra or {}
                items = extra.get("versions") or ([extra] if extra.get("name") else [])
                found += [(v["name"], str(v["version"])) for v in items]
        if not found:
            raise ValueError("nothing to profile: give conf {'name': ..., 'version': ...} or an asset event")
        return sorted({f"models:/{n}/{v}" for n, v in found})

    @task
    def targets(versions: list[str]) -> list[dict]:
        """Every (version, shape) to measure, as ProfilingTarget dicts."""
        from ipa_airflow.profiling.targets import profiling_targets, split_version_uri, unmeasurable_shapes
        from ipa_airflow.spec import load_spec

        specs = []
        for path in sorted(SETTINGS.specs_dir.glob("*.yaml")):
            try:
                specs.append(load_spec(path))
            except ValueError as exc:  # SpecError: one broken spec must not stop profiling for the others
                log.warning("skipping spec %s: %s", path, exc)
        found = []
        for uri in versions:
            name, version = split_version_uri(uri)
            for why in unmeasurable_shapes(name, specs):
                log.warning("%s: not profiled on %s", uri, why)
            found += profiling_targets(
                name, version, specs, worker_hardware=HARDWARE, fallback_threads=THREADS
            )
        for t in found:
            log.info("to profile (%s): %s", t.where, t.label)
        return [t.to_dict() for t in found]

    @task
    def on_worker(found: list[dict]) -> list[dict]:
        from ipa_airflow.profiling.targets import ProfilingTarget

        return [ProfilingTarget.from_dict(t).operator_kwargs() for t in found if t["where"] == "worker"]

    @task
    def in_pods(found: list[dict]) -> list[dict]:
        from ipa_airflow.profiling.targets import ProfilingTarget

        return [ProfilingTarget.from_dict(t).operator_kwargs() for t in found if t["where"] == "pod"]

    # all_done: the shapes that were profiled are in MLflow even when another shape's task failed, and the
    # planner must not use them ungated.
    @task(outlets=[PROFILES], trigger_rule="all_done")
    def gate(versions: list[str]) -> list[dict]:
        """The SLO gate of every version for every pipeline that would use it, at the recent peak load:
        the verdict as tags on the version (ipa.gate.<pipeline>); with IPA_GATE_ALIAS, that alias moved
        to a version that passes. Its asset event tells the planner MLflow holds new profiles."""
        import datetime as dt

        from ipa_airflow_provider.hooks import IpaMlflowHook, IpaPrometheusHook

        from ipa_airflow.profiling.targets import split_version_uri
        from ipa_airflow.registry.gating import gate_model_version, promote, recent_peak_rps

        now = dt.datetime.now(dt.UTC)
        registry = IpaMlflowHook(SETTINGS.mlflow.conn_id).get_conn()
        url = (
            IpaPrometheusHook(SETTINGS.load.prometheus_conn_id).url
            if SETTINGS.load.source == "prometheus"
            else None
        )
        peaks: dict[str, float] = {}

        def peak(spec) -> float:  # each pipeline's own load (its first stage's, from Prometheus)
            if spec.name not in peaks:
                peaks[spec.name] = recent_peak_rps(
                    SETTINGS,
                    now=now,
                    window_s=int(SETTINGS.registry.gate_window_s),
                    prometheus_url=url,
                    spec=spec,
                )
            return peaks[spec.name]

        out = []
        for uri in versions:
            name, version = split_version_uri(uri)
            run = gate_model_version(
                registry, name, version, [SETTINGS.specs_dir], peak_rps_for=peak, now=now
            )
            for result in run.results:
                log.info("gate %s for %s: %s", uri, result.pipeline, result.describe())
            for skipped in run.skipped:
                log.warning("gate %s: skipped %s", uri, skipped)
            alias = SETTINGS.registry.gate_alias
            if alias and run.passed:
                log.info("%s", promote(registry, name, version, alias))
            out.append(run.to_dict())
        return out

    versions = versions_to_profile()
    found = targets(versions)
    on_this_worker = IpaProfileOperator.partial(
        task_id="profile",
        batch_sizes=BATCHES,
        ipa_mlflow_conn_id=SETTINGS.mlflow.conn_id,
        map_index_template="{{ task.target_label }}",
    ).expand_kwargs(on_worker(found))
    in_a_pod = IpaProfilePodOperator.partial(
        task_id="profile_pod",
        batch_sizes=BATCHES,
        ipa_mlflow_conn_id=SETTINGS.mlflow.conn_id,
        kubernetes_conn_id=SETTINGS.cluster.kubernetes_conn_id,
        map_index_template="{{ task.target_label }}",
    ).expand_kwargs(in_pods(found))
    [on_this_worker, in_a_pod] >> gate(versions)

    @task(trigger_rule="none_failed")
    def all_profiled() -> None:
        """Fails (upstream_failed) when a profiling task failed, so the run says so: the gate runs on
        what was profiled either way."""

    [on_this_worker, in_a_pod] >> all_profiled()
