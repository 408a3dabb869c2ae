"""ipa_adaptation: forecast -> plan -> reconcile -> record, for every pipeline spec in IPA_SPECS_DIR.

Configuration (environment, read once at parse time by `load_settings()`; no heavy work here):
  IPA_SPECS_DIR             folder of pipeline specs (default: the repository's examples)
  IPA_FLEET_SPEC            a fleet spec (docs/fleet.md): when set, one task plans its pipelines together
                            under its quota (IpaFleetAdaptationOperator) and IPA_SPECS_DIR is not read
  IPA_ADAPTATION_SCHEDULE   cron or '@continuous' (default: every minute; '@continuous' with a loop)
  IPA_ADAPTATION_LOOP_S     when set, each spec gets one task that decides every adaptation.interval_s
                            for this many seconds (IpaAdaptationLoopOperator) instead of the four tasks
                            of one decision per run: Airflow cannot start runs seconds apart
  IPA_LOAD_SOURCE           'prometheus' (connection ipa_prometheus_default) or 'trace' (the default)
  IPA_PROMETHEUS_QUERY      PromQL for a pipeline's request rate in req/s (default: MLServer's requests
                            to its first stage; {pipeline} and {stage} are filled in per spec)
  IPA_TRACE                 the trace a 'trace' source replays
  IPA_CLUSTER_BACKEND       'kubernetes' (connection kubernetes_default) or 'simulated' (the default)
  IPA_SIMULATED_STARTUP_S   seconds a simulated Deployment takes to become ready (default 0)
  IPA_FORECASTER_URI        a registered forecaster, e.g. models:/ipa-load-forecaster/latest (what
                            ipa_train_forecaster registers); unset: exp-smoothing fitted each run
  IPA_PLAN_QUANTILE         overrides each spec's adaptation.quantile (unset: the spec's)
  IPA_PIPELINE_MAX_AGE_S    read the registry again after this long without a profiling event
The plan task reads each pipeline from MLflow (connection ipa_mlflow_default, else MLFLOW_TRACKING_URI):
registry stages' versions and the profiles no file covers, kept under IPA_HOME between decisions and read
again when the profiling DAG emits ipa://mlflow/profiles; MLflow down -> the kept pipeline, said so.
A run's `trace_second` param replays a given second of the trace (the demo steps through a window).
"""

from __future__ import annotations

import re

import pendulum
from airflow.sdk import DAG, TaskGroup, XComArg
from ipa_airflow_provider.operators import (
    OUTCOME_KEY,
    IpaAdaptationLoopOperator,
    IpaFleetAdaptationOperator,
    IpaForecastOperator,
    IpaPlanOperator,
    IpaReconcileOperator,
    IpaRecordDecisionOperator,
    IpaReprofileOperator,
)

from ipa_airflow.settings import load_settings

SETTINGS = load_settings()
LOAD, CLUSTER, FORECASTER = SETTINGS.load, SETTINGS.cluster, SETTINGS.forecaster
# What every spec's tasks share: where the load comes from, and the cluster the plans go to.
LOAD_ARGS = dict(
    source=LOAD.source,
    query=LOAD.prometheus_query,
    trace=str(LOAD.trace),
    trace_second="{{ params.trace_second }}",
    model_uri=FORECASTER.registered_uri,
    ipa_prometheus_conn_id=LOAD.prometheus_conn_id,
    ipa_mlflow_conn_id=SETTINGS.mlflow.conn_id,
)
CLUSTER_ARGS = dict(
    cluster_backend=CLUSTER.backend,
    kubernetes_conn_id=CLUSTER.kubernetes_conn_id,
    simulated_startup_s=CLUSTER.simulated_startup_s,
)

with DAG(
    dag_id="ipa_adaptation",
    description="Adapt every pipeline to its predicted load: variant, batch size and replicas per stage",
    schedule=SETTINGS.schedules.adaptation,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one adaptation at a time: a run must see the cluster the last one left
    params={"trace_second": None},
    tags=["ipa"],
) as dag:
    if SETTINGS.fleet_spec:
        # One joint decision: every pipeline the DAG adapts is in the fleet (one planned beside it would
        # take capacity the quota does not count). With a loop, it decides on the pipelines' cadence.
        IpaFleetAdaptationOperator(
            task_id="fleet",
            fleet_path=str(SETTINGS.fleet_spec),
            duration_s=SETTINGS.loop_s or 0.0,
            quantile=FORECASTER.plan_quantile,
            **LOAD_ARGS,
            **CLUSTER_ARGS,
        )
    for spec in sorted(SETTINGS.specs_dir.glob("*.yaml")) if not SETTINGS.fleet_spec else ():
        if SETTINGS.loop_s:
            IpaAdaptationLoopOperator(
                task_id=re.sub(r"[^a-zA-Z0-9_]", "_", spec.stem),
                spec_path=str(spec),
                duration_s=SETTINGS.loop_s,
                quantile=FORECASTER.plan_quantile,
                **LOAD_ARGS,
                **CLUSTER_ARGS,
            )
            continue
        with TaskGroup(group_id=re.sub(r"[^a-zA-Z0-9_]", "_", spec.stem)):
            forecast = IpaForecastOperator(task_id="forecast", spec_path=str(spec), **LOAD_ARGS)
            planned = IpaPlanOperator(
                task_id="plan",
                spec_path=str(spec),
                forecast=forecast.output,
                quantile=FORECASTER.plan_quantile,
                ipa_mlflow_conn_id=SETTINGS.mlflow.conn_id,  # registry stages and profiles from MLflow
                # With Prometheus as the load source, each stage's observed p99 is checked for drift.
                ipa_prometheus_conn_id=LOAD.prometheus_conn_id if LOAD.source == "prometheus" else None,
                **CLUSTER_ARGS,
            )
            IpaReprofileOperator(task_id="reprofile", planned=planned.output)
            reconciled = IpaReconcileOperator(
                task_id="reconcile", spec_path=str(spec), planned=planned.output, **CLUSTER_ARGS
            )
            record = IpaRecordDecisionOperator(
                task_id="record",
                spec_path=str(spec),
                forecast=forecast.output,
                planned=planned.output,
                reconciled=XComArg(reconciled, key=OUTCOME_KEY),
                ipa_mlflow_conn_id=SETTINGS.mlflow.conn_id,
            )
            forecast >> planned >> reconciled >> record
