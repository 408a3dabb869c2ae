"""Hooks: the only place that knows about Airflow connections.

- IpaMlflowHook: an MLflow tracking server (conn type `ipa_mlflow`, host with scheme, port, optional
  schema as a path). Without the connection it falls back to the settings' tracking URI
  (MLFLOW_TRACKING_URI, else the embedded store under IPA_HOME), read when the task runs.
- IpaPrometheusHook: a Prometheus server (conn type `ipa_prometheus`).
- ClusterHook: the cluster the plans go to, for the operators, the sensor and the trigger alike. The
  backend itself is made by the engine's `backend_for` (the CLI's too); Kubernetes access goes through
  the cncf provider's KubernetesHook connection.
"""

from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseHook

from ipa_airflow.settings import KUBERNETES_CONN_ID, MLFLOW_CONN_ID, PROMETHEUS_CONN_ID, load_settings


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
    hook_name = "IPA: MLflow tracking server"

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


class IpaPrometheusHook(BaseHook):
    conn_name_attr = "ipa_prometheus_conn_id"
    default_conn_name = PROMETHEUS_CONN_ID
    conn_type = "ipa_prometheus"
    hook_name = "IPA: Prometheus (the pipelines' request rates)"

    def __init__(self, ipa_prometheus_conn_id: str = default_conn_name):
        super().__init__()
        self.ipa_prometheus_conn_id = ipa_prometheus_conn_id

    @property
    def url(self) -> str:
        return _url(self.get_connection(self.ipa_prometheus_conn_id))

    def get_conn(self, query: str | None = None):
        from ipa_airflow.forecasting.sources import PrometheusSource

        url = _url(self.get_connection(self.ipa_prometheus_conn_id))
        return PrometheusSource(url, query) if query else PrometheusSource(url)


class ClusterHook(BaseHook):
    """The cluster backend named by `backend`: 'kubernetes' (the cncf provider's connection) or
    'simulated' (its state in `simulated_state_file`, default under IPA_HOME).

    `simulated_startup_s` defaults to 0 s, the operators' value: a changed simulated Deployment is
    ready at once unless the DAG passes settings.cluster.simulated_startup_s. (The CLI keeps its 10 s.)"""

    hook_name = "IPA cluster"

    def __init__(
        self,
        backend: str = "simulated",
        *,
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,
    ):
        super().__init__()
        self.backend, self.kubernetes_conn_id = backend, kubernetes_conn_id
        self.simulated_state_file, self.simulated_startup_s = simulated_state_file, simulated_startup_s

    def _api_client(self):
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.kubernetes_conn_id or KUBERNETES_CONN_ID).get_conn()

    def get_conn(self):
        """A new backend each call (the simulated one re-reads its state file, as before)."""
        from ipa_airflow.cluster.factory import backend_for

        return backend_for(
            self.backend,
            api_client=self._api_client() if self.backend == "kubernetes" else None,
            state_file=self.simulated_state_file,
            startup_s=self.simulated_startup_s,
        )
