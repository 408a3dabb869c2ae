"""ipa_train_forecaster: weekly, retrain the load forecaster on recent load and register it in MLflow
when its backtest beats the registered one: a quantile loss at least 1 % lower at the planner's
quantile (IPA_PLAN_QUANTILE, default the specs' 0.99), measured on the same test days.

Configuration (environment, read once at parse time by `load_settings()`):
  IPA_LOAD_SOURCE        'prometheus': the last IPA_HISTORY_DAYS whole UTC days of the pipelines' request
                         rate (connection ipa_prometheus_default, query IPA_PROMETHEUS_QUERY), undamped;
                         'trace' (the default): the trace file IPA_TRACE (default: the shipped one)
  IPA_HISTORY_DAYS       days of Prometheus history to read (default 14; its retention must cover them)
  IPA_PROMETHEUS_QUERY   PromQL for the request rate in req/s (default: MLServer's requests to the first
                         stage of the first spec in IPA_SPECS_DIR; {pipeline} and {stage} are filled in)
  IPA_TRAIN_DAYS / IPA_TEST_DAYS   days of the load to train and to backtest on, 0 the oldest
                         (default 0-9 / 10-13)
  IPA_FORECASTER_NAME    the registered model (default ipa-load-forecaster; the adaptation DAG's
                         IPA_FORECASTER_URI then reads models:/ipa-load-forecaster/latest)
  IPA_PLAN_QUANTILE      the quantile the forecasters are compared at (default 0.99, the specs')
  IPA_FORECASTER_MODEL   which forecaster to train (default lstm-quantile-hourly-onsets; any
                         `ipa forecast train --model` choice, e.g. lstm-quantile)
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task
from ipa_airflow_provider.hooks import IpaMlflowHook, IpaPrometheusHook

from ipa_airflow.settings import load_settings

SETTINGS = load_settings()
SOURCE = SETTINGS.load.source
HISTORY_DAYS = SETTINGS.load.history_days
QUERY = SETTINGS.load.prometheus_query
TRACE = str(SETTINGS.load.trace)
TRAIN_DAYS = SETTINGS.forecaster.train_days
TEST_DAYS = SETTINGS.forecaster.test_days
NAME = SETTINGS.forecaster.registered_name
MODEL = SETTINGS.forecaster.model
QUANTILE = {"quantile": SETTINGS.forecaster.plan_quantile} if SETTINGS.forecaster.plan_quantile else {}
MLFLOW_CONN_ID, PROMETHEUS_CONN_ID = SETTINGS.mlflow.conn_id, SETTINGS.load.prometheus_conn_id

with DAG(
    dag_id="ipa_train_forecaster",
    schedule=SETTINGS.schedules.train,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ipa"],
) as dag:

    @task
    def train_and_register() -> dict:
        import logging
        import time

        from ipa_airflow.forecasting import retrain
        from ipa_airflow.spec import load_spec

        log = logging.getLogger("airflow.task")

        tracking_uri = IpaMlflowHook(MLFLOW_CONN_ID).tracking_uri
        if SOURCE == "prometheus":
            source = IpaPrometheusHook(PROMETHEUS_CONN_ID).get_conn(QUERY)
            specs = sorted(SETTINGS.specs_dir.glob("*.yaml"))
            first = source.for_pipeline(load_spec(specs[0])) if specs else source
            if first.query != source.query:
                # One forecaster for every pipeline: it learns the load's shape from the first pipeline's.
                source = first
                log.info("training on the load of %s (its first stage): %s", specs[0].name, source.query)
            return retrain.retrain_on_recent_load(
                source,
                days=HISTORY_DAYS,
                now=time.time(),
                tracking_uri=tracking_uri,
                train_days=TRAIN_DAYS,
                test_days=TEST_DAYS,
                registered_name=NAME,
                model=MODEL,
                **QUANTILE,
            ).to_dict()
        return retrain.train_and_register(
            TRACE,
            tracking_uri=tracking_uri,
            train_days=TRAIN_DAYS,
            test_days=TEST_DAYS,
            registered_name=NAME,
            model=MODEL,
            **QUANTILE,
        ).to_dict()

    train_and_register()
