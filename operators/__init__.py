"""The Airflow layer of ipa-airflow: operators, sensors, triggers and hooks over the ipa_airflow engine.

Installed as the `ipa_airflow_provider` package; Airflow finds it through the `apache_airflow_provider`
entry point, so `airflow providers list` shows it.
"""

from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("ipa-airflow")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0"


def get_provider_info() -> dict:
    return {
        "package-name": "ipa-airflow",
        "name": "IPA (Inference Pipeline Adaptation)",
        "description": "Adapts multi-model inference pipelines on Kubernetes to their load: "
        "profiles, forecasts, plans and reconciles.",
        "versions": [_version()],
        # What Airflow 3's connection form reads: the name in the type list, the fields it hides, their
        # labels and placeholders (a hook's get_ui_field_behaviour is the older way, warned about in 3.x).
        "connection-types": [
            {
                "hook-class-name": "ipa_airflow_provider.hooks.IpaMlflowHook",
                "hook-name": "IPA: MLflow tracking server",
                "connection-type": "ipa_mlflow",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "password", "extra"],
                    "relabeling": {"host": "Tracking server", "schema": "Scheme (http or https)"},
                    "placeholders": {"host": "mlflow.mlops.svc", "port": "5000", "schema": "http"},
                },
            },
            {
                "hook-class-name": "ipa_airflow_provider.hooks.IpaPrometheusHook",
                "hook-name": "IPA: Prometheus (the pipelines' request rates)",
                "connection-type": "ipa_prometheus",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "password", "extra"],
                    "relabeling": {"host": "Prometheus server", "schema": "Scheme (http or https)"},
                    "placeholders": {"host": "prometheus.monitoring.svc", "port": "9090", "schema": "http"},
                },
            },
        ],
        "plugins": [{"name": "ipa_airflow", "plugin-class": "ipa_airflow_provider.plugin.IpaAirflowPlugin"}],
    }
