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
        "connection-types": [
            {"hook-class-name": "ipa_airflow_provider.hooks.IpaMlflowHook", "connection-type": "ipa_mlflow"},
            {
                "hook-class-name": "ipa_airflow_provider.hooks.IpaPrometheusHook",
                "connection-type": "ipa_prometheus",
            },
        ],
        "plugins": [{"name": "ipa_airflow", "plugin-class": "ipa_airflow_provider.plugin.IpaAirflowPlugin"}],
    }
