"""The Airflow plugin: a FastAPI app inside the Airflow API server that receives MLflow webhooks.

A signed, fresh `model_version.created` delivery becomes an asset event on MODEL_VERSIONS, which starts
the `ipa_profile_model_version` DAG. Forged or stale deliveries are refused (401) and logged.
"""

from __future__ import annotations

import json
import logging
import os
import time

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException, Request

from ipa_airflow.webhooks import WebhookRejected, model_version_created, verify

log = logging.getLogger(__name__)
MODEL_VERSIONS_URI = "ipa://mlflow/model-versions"

app = FastAPI(title="ipa-airflow webhooks")


def emit_model_version_event(name: str, version: str, source: str) -> int:
    """Register an asset event on MODEL_VERSIONS (as the REST API's create-asset-event does)."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == MODEL_VERSIONS_URI))
        if asset is None:
            raise HTTPException(
                503, "the ipa_profile_model_version DAG is not deployed (its asset is unknown)"
            )
        event = asset_manager.register_asset_change(
            asset=asset,
            timestamp=timezone.utcnow(),
            extra={"name": name, "version": version, "source": source},
            source_is_api=True,
            session=session,
        )
        return event.id


@app.post("/mlflow")
async def mlflow_webhook(request: Request) -> dict:
    payload = await request.body()
    h = request.headers
    try:
        verify(
            os.environ.get("IPA_WEBHOOK_SECRET", ""),
            delivery_id=h.get("X-MLflow-Delivery-Id"),
            timestamp=h.get("X-MLflow-Timestamp"),
            signature=h.get("X-MLflow-Signature"),
            payload=payload,
            now=time.time(),
        )
        created = model_version_created(json.loads(payload))
    except (WebhookRejected, ValueError) as exc:
        log.warning("refused MLflow webhook from %s: %s", request.client.host if request.client else "?", exc)
        raise HTTPException(401, f"refused: {exc}") from None
    if created is None:
        return {"status": "ignored"}
    event_id = emit_model_version_event(created.name, created.version, "mlflow-webhook")
    log.info("model version %s/%s created: asset event %s", created.name, created.version, event_id)
    return {
        "status": "accepted",
        "asset_event_id": event_id,
        "name": created.name,
        "version": created.version,
    }


class IpaAirflowPlugin(AirflowPlugin):
    name = "ipa_airflow"
    fastapi_apps = [{"app": app, "url_prefix": "/ipa", "name": "IPA webhooks"}]
