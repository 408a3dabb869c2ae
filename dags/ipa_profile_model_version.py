"""ipa_profile_model_version: profile new MLflow model versions on every hardware kind configured.

Started by asset events on ipa://mlflow/model-versions (the MLflow webhook receiver, or the polling
DAG) or by hand with conf {"name": ..., "version": ...}. Configuration (environment, read once at parse
time by `load_settings()`):
  IPA_PROFILE_HARDWARE   the hardware name profiles are filed under (default: airflow-cpu)
  IPA_PROFILE_THREADS    CPU cores per replica to profile, comma-separated (default: 1,2)
  IPA_PROFILE_BATCHES    batch sizes (default: 1,2,4,8)
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, task
from ipa_airflow_provider.operators import IpaProfileOperator
from ipa_airflow_provider.plugin import MODEL_VERSIONS_URI

from ipa_airflow.settings import load_settings

SETTINGS = load_settings()
MODEL_VERSIONS = Asset(MODEL_VERSIONS_URI)
HARDWARE = SETTINGS.profiling.hardware
THREADS = list(SETTINGS.profiling.threads)
BATCHES = ",".join(map(str, SETTINGS.profiling.batch_sizes))

with DAG(
    dag_id="ipa_profile_model_version",
    description="Profile new model versions and file the profiles in MLflow",
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

    IpaProfileOperator.partial(
        task_id="profile",
        hardware=HARDWARE,
        batch_sizes=BATCHES,
        device="cpu",
        ipa_mlflow_conn_id=SETTINGS.mlflow.conn_id,
    ).expand(model_uri=versions_to_profile(), threads=THREADS)
