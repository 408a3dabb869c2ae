"""The Airflow plugin: a FastAPI app inside the Airflow API server that receives MLflow webhooks.

A signed, fresh `model_version.created` delivery becomes an asset event on MODEL_VERSIONS, which starts
the `ipa_profile_model_version` DAG. The checks (signature, timestamp window, replays, body size and
shape) live in `ipa_airflow.webhooks`; this module only adds the asset event.
"""

from __future__ import annotations

import datetime as dt
import logging

from airflow.plugins_manager import AirflowPlugin
from fastapi import HTTPException

from ipa_airflow.webhooks import TOLERANCE_S, DeliveryReplayed, create_app

log = logging.getLogger(__name__)
MODEL_VERSIONS_URI = "ipa://mlflow/model-versions"
# Updated when ipa_profile_model_version has filed (and gated) new profiles: readers of MLflow refresh.
PROFILES_URI = "ipa://mlflow/profiles"


def emit_model_version_event(name: str, version: str, source: str, *, delivery_id: str | None = None) -> int:
    """Register an asset event on MODEL_VERSIONS (as the REST API's create-asset-event does).

    With a `delivery_id`, the event keeps it in its extra, and a delivery id already on an event of the
    last two timestamp windows is refused (DeliveryReplayed). This is the replay check every API-server
    worker and replica shares: each one's in-memory ReplayGuard only sees its own deliveries. The asset
    row is locked first (SELECT ... FOR UPDATE on PostgreSQL and MySQL; SQLite serialises writers), so
    two workers given the same delivery at once do not both pass the check."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(
            select(AssetModel).where(AssetModel.uri == MODEL_VERSIONS_URI).with_for_update()
        )
        if asset is None:
            raise HTTPException(
                503, "the ipa_profile_model_version DAG is not deployed (its asset is unknown)"
            )
        now = timezone.utcnow()
        if delivery_id is not None:
            # A delivery is accepted up to TOLERANCE_S after its timestamp, which may itself be up to
            # TOLERANCE_S ahead of our clock: two windows back cover every accepted copy.
            since = now - dt.timedelta(seconds=2 * TOLERANCE_S)
            extras = session.scalars(
                select(AssetEvent.extra).where(AssetEvent.asset_id == asset.id, AssetEvent.timestamp >= since)
            )
            if any((extra or {}).get("delivery_id") == delivery_id for extra in extras):
                raise DeliveryReplayed(f"delivery {delivery_id} was received before: a replay, not acted on")
        extra = {"name": name, "version": version, "source": source}
        if delivery_id is not None:
            extra["delivery_id"] = delivery_id
        event = asset_manager.register_asset_change(
            asset=asset, timestamp=now, extra=extra, source_is_api=True, session=session
        )
        return event.id


# One receiver per API-server worker process; see ReplayGuard for what the workers share.
app = create_app(
    lambda name, version, delivery_id: emit_model_version_event(
        name, version, "mlflow-webhook", delivery_id=delivery_id
    )
)


class IpaAirflowPlugin(AirflowPlugin):
    name = "ipa_airflow"
    fastapi_apps = [{"app": app, "url_prefix": "/ipa", "name": "IPA webhooks"}]
