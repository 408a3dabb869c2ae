"""Verifying MLflow webhook deliveries: HMAC-SHA256 over 'delivery_id.timestamp.payload', base64, 'v1,'
prefixed, with a timestamp window against replays. Pure functions; the receiver lives in the plugin."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

TOLERANCE_S = 300


class WebhookRejected(ValueError):
    pass


@dataclass(frozen=True)
class ModelVersionCreated:
    name: str
    version: str


def sign(secret: str, delivery_id: str, timestamp: str, payload: bytes) -> str:
    content = f"{delivery_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha256).digest()).decode()


def verify(
    secret: str,
    *,
    delivery_id: str | None,
    timestamp: str | None,
    signature: str | None,
    payload: bytes,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> None:
    """Raise WebhookRejected unless the delivery is signed with `secret` and recent."""
    if not secret:
        raise WebhookRejected("no webhook secret is configured on this receiver (set IPA_WEBHOOK_SECRET)")
    if not (delivery_id and timestamp and signature):
        raise WebhookRejected("missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected(f"timestamp {timestamp!r} is not a unix time") from None
    if abs(now - sent) > tolerance_s:
        raise WebhookRejected(
            f"timestamp is {now - sent:+.0f} s away from now (allowed {tolerance_s:g} s): stale or replayed"
        )
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, payload), signature):
        raise WebhookRejected("signature does not match")


def model_version_created(event: dict) -> ModelVersionCreated | None:
    """The model version a `model_version.created` event names; None for other events."""
    if event.get("entity") != "model_version" or event.get("action") != "created":
        return None
    data = event.get("data") or {}
    if not data.get("name") or data.get("version") in (None, ""):
        raise WebhookRejected("model_version.created without name and version")
    return ModelVersionCreated(str(data["name"]), str(data["version"]))
