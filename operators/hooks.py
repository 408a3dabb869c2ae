"""Hooks: the only place that knows about Airflow connections.

- IpaMlflowHook: an MLflow tracking server (conn type `ipa_mlflow`, host with scheme, port, optional
  schema as a path). Without the connection it falls back to the settings' tracking URI
  (MLFLOW_TRACKING_URI, else the embedded store under IPA_HOME), read when the task runs.
- IpaPrometheusHook: a Prometheus server (conn type `ipa_prometheus`).
Kubernetes access goes through the cncf provider's KubernetesHook.
"""

from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseHook

from ipa_airflow.settings import MLFLOW_CONN_ID, PROMETHEUS_CONN_ID, load_settings


def _url(conn) -> str:
    host = conn.host or "localhost"
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}" if conn.schema in ("http", "https") else f"http://{host}"
    port = f":{conn.port}" if conn.port else ""
    return f"{host}{port}"


class IpaMlflowHook(BaseHook):
    conn_name_attr = "ipa_mlflow_conn_id"
    default_conn_name = MLFLOW_CONN_ID
    conn_type = "ipa_mlflow"
    hook_name = "IPA MLflow"

    def __init__(self, ipa_mlflow_conn_id: str = default_conn_name):
        super().__init__()
        self.ipa_mlflow_conn_id = ipa_mlflow_conn_id

    @cached_property
    def tracking_uri(self) -> str:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return _url(self.get_connection(self.ipa_mlflow_conn_id))
        except AirflowNotFoundException:
            return load_settings().mlflow.tracking_uri

    def get_conn(self):
        """The profile registry on this MLflow."""
        from ipa_airflow.registry import registry_for

        return registry_for(self.tracking_uri)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {
            "hidden_fields": ["login", "password", "extra"],
            "placeholders": {"host": "http://mlflow.mlops.svc", "port": "5000"},
        }


class IpaPrometheusHook(BaseHook):
    conn_name_attr = "ipa_prometheus_conn_id"
    default_conn_name = PROMETHEUS_CONN_ID
    conn_type = "ipa_prometheus"
    hook_name = "IPA Prometheus"

    def __init__(self, ipa_prometheus_conn_id: str = default_conn_name):
        super().__init__()
        self.ipa_prometheus_conn_id = ipa_prometheus_conn_id

    def get_conn(self, query: str):
        from ipa_airflow.forecasting.sources import PrometheusSource

        return PrometheusSource(_url(self.get_connection(self.ipa_prometheus_conn_id)), query)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {
            "hidden_fields": ["login", "password", "schema", "extra"],
            "placeholders": {"host": "http://prometheus.monitoring.svc", "port": "9090"},
        }
