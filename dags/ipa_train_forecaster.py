"""ipa_train_forecaster: weekly, retrain the load forecaster on recent load and register it in MLflow
when its backtest beats the registered one (fewer under-predictions at the 0.95 quantile, without
more over-provisioning than the tolerance).
  IPA_TRACE / IPA_TRAIN_DAYS / IPA_TEST_DAYS   the load history (default: the shipped trace, 0-9 / 10-13)
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task
from ipa_airflow_provider.hooks import IpaMlflowHook

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
        from ipa_airflow.forecasting.retrain import retrain
        from ipa_airflow.settings import default_trace

        return retrain(
            str(default_trace()),
            tracking_uri=IpaMlflowHook().tracking_uri,
            train_days=os.environ.get("IPA_TRAIN_DAYS", "0-9"),
            test_days=os.environ.get("IPA_TEST_DAYS", "10-13"),
        )

    train_and_register()
