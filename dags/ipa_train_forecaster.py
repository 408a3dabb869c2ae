"""ipa_train_forecaster: weekly, retrain the load forecaster on recent load and register it in MLflow
when its backtest beats the registered one: a quantile loss at least 1 % lower at the planner's
quantile (IPA_PLAN_QUANTILE, default the specs' 0.99), measured on the same test days.

Configuration (environment, read at parse time):
  IPA_LOAD_SOURCE        'prometheus': the last IPA_HISTORY_DAYS whole UTC days of the pipelines' request
                         rate (connection ipa_prometheus_default, query IPA_PROMETHEUS_QUERY), undamped;
                         'trace' (the default): the trace file IPA_TRACE (default: the shipped one)
  IPA_HISTORY_DAYS       days of Prometheus history to read (default 14; its retention must cover them)
  IPA_PROMETHEUS_QUERY   PromQL for the request rate in req/s (default sum(rate(ipa_requests_total[2s])))
  IPA_TRAIN_DAYS / IPA_TEST_DAYS   days of the load to train and to backtest on, 0 the oldest
                         (default 0-9 / 10-13)
  IPA_FORECASTER_NAME    the registered model (default ipa-load-forecaster; the adaptation DAG's
                         IPA_FORECASTER_URI then reads models:/ipa-load-forecaster/latest)
  IPA_PLAN_QUANTILE      the quantile the forecasters are compared at (default 0.99, the specs')
  IPA_FORECASTER_MODEL   which forecaster to train (default lstm-quantile; any `ipa forecast train
                         --model` choice, e.g. lstm-quantile-hourly-onsets)
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task
from ipa_airflow_provider.hooks import IpaMlflowHook, IpaPrometheusHook

from ipa_airflow.forecasting.sources import PrometheusSource

SOURCE = os.environ.get("IPA_LOAD_SOURCE", "trace")
HISTORY_DAYS = int(os.environ.get("IPA_HISTORY_DAYS", "14"))
QUERY = os.environ.get("IPA_PROMETHEUS_QUERY") or PrometheusSource.query
TRAIN_DAYS = os.environ.get("IPA_TRAIN_DAYS", "0-9")
TEST_DAYS = os.environ.get("IPA_TEST_DAYS", "10-13")
NAME = os.environ.get("IPA_FORECASTER_NAME", "ipa-load-forecaster")
MODEL = os.environ.get("IPA_FORECASTER_MODEL", "lstm-quantile")
QUANTILE = {"quantile": float(os.environ["IPA_PLAN_QUANTILE"])} if os.environ.get("IPA_PLAN_QUANTILE") else {}

with DAG(
    dag_id="ipa_train_forecaster",
    schedule=os.environ.get("IPA_TRAIN_SCHEDULE", "@weekly"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ipa"],
) as dag:

    @task
    def train_and_register() -> dict:
        import time

        from ipa_airflow.forecasting.retrain import retrain, retrain_on_recent_load
        from ipa_airflow.settings import default_trace

        tracking_uri = IpaMlflowHook().tracking_uri
        if SOURCE == "prometheus":
            return retrain_on_recent_load(
                IpaPrometheusHook().get_conn(QUERY),
                days=HISTORY_DAYS,
                now=time.time(),
                tracking_uri=tracking_uri,
                train_days=TRAIN_DAYS,
                test_days=TEST_DAYS,
                registered_name=NAME,
                model=MODEL,
                **QUANTILE,
            )
        return retrain(
            str(default_trace()),
            tracking_uri=tracking_uri,
            train_days=TRAIN_DAYS,
            test_days=TEST_DAYS,
            registered_name=NAME,
            model=MODEL,
            **QUANTILE,
        )

    train_and_register()
