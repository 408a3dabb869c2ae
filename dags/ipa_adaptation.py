"""ipa_adaptation: forecast -> plan -> reconcile -> record, for every pipeline spec in IPA_SPECS_DIR.

Configuration (environment, read at parse time; no heavy work here):
  IPA_SPECS_DIR             folder of pipeline specs (default: the repository's examples)
  IPA_ADAPTATION_SCHEDULE   cron or '@continuous' (default: every minute; '@continuous' with a loop)
  IPA_ADAPTATION_LOOP_S     when set, each spec gets one task that decides every adaptation.interval_s
                            for this many seconds (IpaAdaptationLoopOperator) instead of the four tasks
                            of one decision per run: Airflow cannot start runs seconds apart
  IPA_LOAD_SOURCE           'prometheus' (connection ipa_prometheus_default) or 'trace' (the default)
  IPA_PROMETHEUS_QUERY      PromQL for a pipeline's request rate in req/s (default
                            sum(rate(ipa_requests_total[2s])))
  IPA_TRACE                 the trace a 'trace' source replays
  IPA_CLUSTER_BACKEND       'kubernetes' (connection kubernetes_default) or 'simulated' (the default)
  IPA_FORECASTER_URI        a registered forecaster, e.g. models:/ipa-load-forecaster/latest (what
                            ipa_train_forecaster registers); unset: exp-smoothing fitted each run
  IPA_PLAN_QUANTILE         overrides each spec's adaptation.quantile (unset: the spec's)
A run's `trace_second` param replays a given second of the trace (the demo steps through a window).
"""

from __future__ import annotations

import os
import re

import pendulum
from airflow.sdk import DAG, TaskGroup, XComArg
from ipa_airflow_provider.operators import (
    OUTCOME_KEY,
    IpaAdaptationLoopOperator,
    IpaForecastOperator,
    IpaPlanOperator,
    IpaReconcileOperator,
    IpaRecordDecisionOperator,
)

from ipa_airflow.forecasting.sources import PrometheusSource
from ipa_airflow.settings import default_specs_dir, default_trace

LOOP_S = float(os.environ["IPA_ADAPTATION_LOOP_S"]) if os.environ.get("IPA_ADAPTATION_LOOP_S") else None
SCHEDULE = os.environ.get("IPA_ADAPTATION_SCHEDULE", "@continuous" if LOOP_S else "* * * * *")
SOURCE = os.environ.get("IPA_LOAD_SOURCE", "trace")
QUERY = os.environ.get("IPA_PROMETHEUS_QUERY") or PrometheusSource.query
BACKEND = os.environ.get("IPA_CLUSTER_BACKEND", "simulated")
FORECASTER_URI = os.environ.get("IPA_FORECASTER_URI") or None
QUANTILE = float(os.environ["IPA_PLAN_QUANTILE"]) if os.environ.get("IPA_PLAN_QUANTILE") else None

with DAG(
    dag_id="ipa_adaptation",
    description="Adapt every pipeline to its predicted load: variant, batch size and replicas per stage",
    schedule=None if SCHEDULE == "none" else SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one adaptation at a time: a run must see the cluster the last one left
    params={"trace_second": None},
    tags=["ipa"],
) as dag:
    for spec in sorted(default_specs_dir().glob("*.yaml")):
        if LOOP_S:
            IpaAdaptationLoopOperator(
                task_id=re.sub(r"[^a-zA-Z0-9_]", "_", spec.stem),
                spec_path=str(spec),
                duration_s=LOOP_S,
                source=SOURCE,
                query=QUERY,
                trace=str(default_trace()),
                trace_second="{{ params.trace_second }}",
                model_uri=FORECASTER_URI,
                quantile=QUANTILE,
                cluster_backend=BACKEND,
            )
            continue
        with TaskGroup(group_id=re.sub(r"[^a-zA-Z0-9_]", "_", spec.stem)):
            forecast = IpaForecastOperator(
                task_id="forecast",
                source=SOURCE,
                query=QUERY,
                trace=str(default_trace()),
                trace_second="{{ params.trace_second }}",
                spec_path=str(spec),
                model_uri=FORECASTER_URI,
            )
            planned = IpaPlanOperator(
                task_id="plan",
                spec_path=str(spec),
                forecast=forecast.output,
                quantile=QUANTILE,
                cluster_backend=BACKEND,
            )
            reconciled = IpaReconcileOperator(
                task_id="reconcile", spec_path=str(spec), planned=planned.output, cluster_backend=BACKEND
            )
            record = IpaRecordDecisionOperator(
                task_id="record",
                spec_path=str(spec),
                forecast=forecast.output,
                planned=planned.output,
                reconciled=XComArg(reconciled, key=OUTCOME_KEY),
            )
            forecast >> planned >> reconciled >> record
