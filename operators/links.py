"""Operator extra links: a button on the record task's page that opens its decision run in MLflow.

Airflow calls `get_link` in the worker when the task ends and keeps the URL as an XCom (the serialized DAG
stores only the link's name and XCom key), so the API server never reads MLflow for it.
"""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink

from ipa_airflow.settings import MLFLOW_CONN_ID


class MlflowDecisionRunLink(BaseOperatorLink):
    """The MLflow run of the decision the task recorded (its return value's `run_id`). Empty (no button
    target) when the task recorded nothing or MLflow has no UI address (a sqlite or file store)."""

    name = "MLflow decision run"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        from ipa_airflow.reports.pipelines_view import MlflowLinks, mlflow_ui_base

        from .hooks import IpaMlflowHook

        value = XCom.get_value(ti_key=ti_key, key="return_value")
        run_id = value.get("run_id") if isinstance(value, dict) else None
        if not run_id:
            return ""
        hook = IpaMlflowHook(getattr(operator, "ipa_mlflow_conn_id", MLFLOW_CONN_ID))
        return MlflowLinks(mlflow_ui_base(hook.tracking_uri, _ui_url())).run(run_id) or ""


def _ui_url() -> str | None:
    """The MLflow UI's address when it is not the tracking URI's (settings: IPA_MLFLOW_UI_URL)."""
    from ipa_airflow.settings import load_settings

    return load_settings().mlflow.ui_url
