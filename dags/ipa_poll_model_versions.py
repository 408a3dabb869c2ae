"""ipa_poll_model_versions: for MLflow setups without webhooks, find model versions that were never
profiled (no profile tag on any hardware: the profiling DAG profiles every shape the specs ask for at
once) and emit one asset event that starts ipa_profile_model_version; skipped, so no event, when none.
Its schedule is IPA_POLL_SCHEDULE (default @hourly); both are read once, at parse time, by
`load_settings()`."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Metadata, task
from ipa_airflow_provider.hooks import IpaMlflowHook
from ipa_airflow_provider.plugin import MODEL_VERSIONS_URI

from ipa_airflow.settings import load_settings

SETTINGS = load_settings()
MODEL_VERSIONS = Asset(MODEL_VERSIONS_URI)
MLFLOW_CONN_ID = SETTINGS.mlflow.conn_id

with DAG(
    dag_id="ipa_poll_model_versions",
    schedule=SETTINGS.schedules.poll,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ipa"],
) as dag:

    @task(outlets=[MODEL_VERSIONS])
    def find_unprofiled():
        from airflow.sdk.exceptions import AirflowSkipException

        from ipa_airflow.registry.polling import unprofiled_versions

        registry = IpaMlflowHook(MLFLOW_CONN_ID).get_conn()
        missing = unprofiled_versions(registry)
        if not missing:
            # A task with an outlet that succeeds emits an event: it would start a profiling run for nothing.
            raise AirflowSkipException("every model version has a profile")
        yield Metadata(MODEL_VERSIONS, extra={"versions": missing, "source": "poll"})
        return missing

    find_unprofiled()
