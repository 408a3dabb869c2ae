"""The Airflow plugin: a FastAPI app inside the Airflow API server, at /ipa, that receives MLflow webhooks
and shows what the plugin decided.

- POST /ipa/mlflow: a signed, fresh `model_version.created` delivery becomes an asset event on
  MODEL_VERSIONS, which starts the `ipa_profile_model_version` DAG. The checks (signature, timestamp
  window, replays, body size and shape) live in `ipa_airflow.webhooks`; this module only adds the event.
- GET /ipa/pipelines (and its JSON, /ipa/api/pipelines): the pipelines view (view.py), opened from the
  Airflow UI's nav ("IPA pipelines") in its frame. Only for users logged in to Airflow.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, HTTPException, Request

from ipa_airflow.webhooks import TOLERANCE_S, DeliveryReplayed, create_app

from .view import create_router

if TYPE_CHECKING:
    from ipa_airflow.reports.decision_runs import DecisionRuns
    from ipa_airflow.reports.pipelines_view import Overview

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


async def airflow_login(request: Request) -> None:
    """The view's guard: the caller's Airflow token (a Bearer header, or the UI's session cookie, which
    the nav's frame sends), checked by Airflow's auth manager; 401/403 otherwise. Plugin apps are not
    guarded by Airflow itself. (The webhook has its own guard: the MLflow signature.)"""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    await resolve_user_from_token(
        token if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    )


_readers: dict[str, DecisionRuns] = {}  # one per tracking URI: each keeps the decision records it has read


def pipelines_overview() -> Overview:
    """What the view shows, from the MLflow of the `ipa_mlflow_default` connection (else the settings')."""
    from ipa_airflow.reports.decision_runs import DecisionRuns
    from ipa_airflow.settings import load_settings

    from .hooks import IpaMlflowHook

    uri, settings = IpaMlflowHook().tracking_uri, load_settings().mlflow
    if uri not in _readers:
        _readers[uri] = DecisionRuns(
            uri, experiment=settings.decisions_experiment, profiles_experiment=settings.profiles_experiment
        )
    # The MLflow UI's own address (IPA_MLFLOW_UI_URL) once the settings carry it; else the tracking URI's.
    return _readers[uri].overview(settings.ui_url)


# One receiver per API-server worker process; see ReplayGuard for what the workers share.
app = create_app(
    lambda name, version, delivery_id: emit_model_version_event(
        name, version, "mlflow-webhook", delivery_id=delivery_id
    )
)
app.include_router(create_router(pipelines_overview, dependencies=[Depends(airflow_login)]))


class IpaAirflowPlugin(AirflowPlugin):
    name = "ipa_airflow"
    fastapi_apps = [{"app": app, "url_prefix": "/ipa", "name": "IPA webhooks and pipelines view"}]
    # A nav entry that opens /ipa/pipelines in the UI's frame at /plugin/ipa-pipelines. The href is
    # relative: the UI resolves it against its base URL, so it works behind a proxy's path prefix too.
    external_views = [
        {
            "name": "IPA pipelines",
            "href": "ipa/pipelines",
            "url_route": "ipa-pipelines",
            "destination": "nav",
            "icon": "ipa/icon.svg",
            "category": "browse",
        }
    ]
