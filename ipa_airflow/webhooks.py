"""Receiving MLflow webhook deliveries: HMAC-SHA256 over 'delivery_id.timestamp.payload', base64, 'v1,'
prefixed, a timestamp window, each delivery id accepted once, a body size limit, and a body that must be
an MLflow event. The checks are plain functions and classes; `create_app` wires them into the FastAPI app
the Airflow plugin mounts (operators/plugin.py), which only adds the asset event.

Status codes say whose fault a refusal is, and nothing a client sends can give a 500:
401 not signed with our secret or stale, 400 malformed (headers or body), 409 a delivery id seen before
(a replay; MLflow does not retry 4xx), 413 a body over MAX_BODY_BYTES.
"""

# No `from __future__ import annotations`: FastAPI reads the handler's `Request` annotation, which is
# imported inside create_app, at definition time.
import base64
import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .settings import webhook_secret

log = logging.getLogger(__name__)

TOLERANCE_S = 300
# An MLflow event is a few hundred bytes; 1 MiB leaves room for long descriptions and tags while a
# client cannot make the API server read and hash a body of any size.
MAX_BODY_BYTES = 1 << 20
MAX_DELIVERY_ID_CHARS = 200


class WebhookRejected(ValueError):
    """Refused: not signed with our secret, or stale (HTTP 401)."""

    status = 401


class MalformedDelivery(WebhookRejected):
    """A header or body that is not what MLflow sends (HTTP 400)."""

    status = 400


class DeliveryReplayed(WebhookRejected):
    """A delivery id this receiver has accepted before, inside the timestamp window (HTTP 409)."""

    status = 409


class BodyTooLarge(WebhookRejected):
    """Over MAX_BODY_BYTES (HTTP 413)."""

    status = 413


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
) -> int:
    """The delivery's timestamp (unix seconds); WebhookRejected unless it is signed with `secret` and
    recent, MalformedDelivery when a header is not what MLflow sends."""
    if not secret:
        raise WebhookRejected("no webhook secret is configured on this receiver (set IPA_WEBHOOK_SECRET)")
    if not (delivery_id and timestamp and signature):
        raise WebhookRejected("missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature header")
    for header, value in (
        ("X-MLflow-Delivery-Id", delivery_id),
        ("X-MLflow-Timestamp", timestamp),
        ("X-MLflow-Signature", signature),
    ):
        # hmac.compare_digest refuses non-ASCII text, and int() reads other scripts' digits: MLflow
        # sends ASCII only (a uuid, a unix time, base64), so anything else is malformed.
        if not value.isascii():
            raise MalformedDelivery(f"header {header} holds non-ASCII characters")
    if len(delivery_id) > MAX_DELIVERY_ID_CHARS:
        raise MalformedDelivery(f"header X-MLflow-Delivery-Id is over {MAX_DELIVERY_ID_CHARS} characters")
    try:
        sent = int(timestamp)
    except ValueError:
        raise MalformedDelivery(f"timestamp {timestamp[:40]!r} is not a unix time") from None
    if abs(now - sent) > tolerance_s:
        when = f"{now - sent:.0f} s in the past" if sent < now else f"{sent - now:.0f} s in the future"
        raise WebhookRejected(
            f"timestamp is {when} (allowed {tolerance_s:g} s either way): stale or replayed, or the "
            "sender's clock is off"
        )
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, payload), signature):
        raise WebhookRejected("signature does not match")
    return sent


def parse_event(payload: bytes) -> dict:
    """The delivery's JSON object; MalformedDelivery for anything else (an array, a number, bad UTF-8,
    nesting deep enough to exhaust the parser)."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedDelivery(f"the body is not JSON: {exc!s:.200}") from None
    if not isinstance(event, dict):
        raise MalformedDelivery(f"the body is a JSON {type(event).__name__}, not an MLflow event (an object)")
    return event


# MLflow's "test webhook" (MlflowClient.test_webhook, the UI's test button) sends the event's example
# payload, signed like any delivery. Profiling it would start a DAG run for a model that does not exist,
# so it is acknowledged and nothing more. It is told apart by the example's run id, which no real run
# has (MLflow run ids are 32 hex digits); see mlflow.webhooks.types.ModelVersionCreatedPayload.example.
MLFLOW_TEST_MODEL = ("example_model", "abcd1234abcd5678")


def is_mlflow_test(event: dict) -> bool:
    """Whether `event` is MLflow's test delivery of model_version.created."""
    data = event.get("data")
    return isinstance(data, dict) and (data.get("name"), data.get("run_id")) == MLFLOW_TEST_MODEL


def model_version_created(event: dict) -> ModelVersionCreated | None:
    """The model version a `model_version.created` event names; None for other events."""
    if event.get("entity") != "model_version" or event.get("action") != "created":
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        raise MalformedDelivery(f"model_version.created: `data` is a {type(data).__name__}, not an object")
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not name.strip():
        raise MalformedDelivery("model_version.created: `data.name` must be a non-empty string")
    # MLflow sends the version as a string of digits; a number is accepted, anything else (a bool, a
    # list, "latest") names no version the profiling DAG could load.
    if isinstance(version, bool) or not isinstance(version, str | int) or not str(version).isdigit():
        raise MalformedDelivery(
            f"model_version.created: `data.version` must be a version number, not {version!r:.60}"
        )
    return ModelVersionCreated(name, str(version))


class ReplayGuard:
    """The delivery ids accepted in this process, each kept until its timestamp leaves the window (after
    that `verify` refuses the delivery anyway), at most `max_ids` of them.

    Memory is bounded twice: by time (expired ids are dropped on every call) and by count (past
    `max_ids` the id expiring first is dropped). Only signed deliveries reach the guard, so filling it
    takes the secret, and with the secret anyone can sign a fresh delivery anyway.

    Several API-server workers (or replicas) each hold their own guard, so a replay sent to another
    worker is not seen here: the plugin also checks the delivery id against the asset events of the
    window in Airflow's metadata database, which all workers share (see operators/plugin.py)."""

    def __init__(self, window_s: float = TOLERANCE_S, *, max_ids: int = 100_000):
        self.window_s, self.max_ids = window_s, max_ids
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def claim(self, delivery_id: str, *, sent: float, now: float) -> None:
        """Remember `delivery_id`, or DeliveryReplayed when it is remembered already."""
        with self._lock:
            self._expire(now)
            if delivery_id in self._expires:
                raise DeliveryReplayed(f"delivery {delivery_id} was received before: a replay, not acted on")
            while len(self._expires) >= self.max_ids:
                _, oldest = heapq.heappop(self._heap)
                self._expires.pop(oldest, None)
            expires = max(sent, now) + self.window_s
            self._expires[delivery_id] = expires
            heapq.heappush(self._heap, (expires, delivery_id))

    def release(self, delivery_id: str) -> None:
        """Forget an id whose delivery failed on our side, so MLflow's retry of it is accepted."""
        with self._lock:
            self._expires.pop(delivery_id, None)  # its heap entry goes when it expires

    def __len__(self) -> int:
        return len(self._expires)

    def _expire(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expires, delivery_id = heapq.heappop(self._heap)
            if self._expires.get(delivery_id) == expires:
                del self._expires[delivery_id]


# (name, version, delivery_id) -> the asset event's id; raises DeliveryReplayed or an HTTPException.
Emit = Callable[[str, str, str], int]


def create_app(
    emit: Emit,
    *,
    # Read per delivery, as before: the app is built when the plugin is imported, and a secret set in the
    # environment after that (as the integration tests do) still counts.
    secret: Callable[[], str] = webhook_secret,
    guard: ReplayGuard | None = None,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_BODY_BYTES,
):
    """The FastAPI app receiving MLflow webhooks at POST /mlflow. `emit` acts on a created model version
    (the plugin registers an asset event); everything before it is checked here."""
    from fastapi import FastAPI, HTTPException, Request

    app = FastAPI(title="ipa-airflow webhooks")
    guard = ReplayGuard() if guard is None else guard  # an empty guard is falsy (it has a __len__)

    @app.post("/mlflow")
    async def mlflow_webhook(request: Request) -> dict:
        who = request.client.host if request.client else "?"
        h = request.headers
        try:
            payload = await _read_body(request, max_body_bytes)
            now = clock()
            sent = verify(
                secret(),
                delivery_id=h.get("X-MLflow-Delivery-Id"),
                timestamp=h.get("X-MLflow-Timestamp"),
                signature=h.get("X-MLflow-Signature"),
                payload=payload,
                now=now,
            )
            event = parse_event(payload)
            created = model_version_created(event)
            delivery_id = h["X-MLflow-Delivery-Id"]
            guard.claim(delivery_id, sent=sent, now=now)
        except WebhookRejected as exc:
            log.warning("refused MLflow webhook from %s (%d): %s", who, exc.status, exc)
            raise HTTPException(exc.status, f"refused: {exc}") from None
        if created is None:
            return {"status": "ignored"}
        if is_mlflow_test(event):
            log.info("MLflow test delivery %s from %s: signature and clock good", delivery_id, who)
            # `test` tells `ipa webhook check` that this receiver (not just any 2xx) verified the delivery.
            return {
                "status": "test",
                "test": True,
                "detail": "MLflow's test delivery: received and verified, not acted on",
            }
        try:
            event_id = emit(created.name, created.version, delivery_id)
        except DeliveryReplayed as exc:  # seen by another worker: the shared check in the database
            log.warning("refused MLflow webhook from %s (409): %s", who, exc)
            raise HTTPException(409, f"refused: {exc}") from None
        except BaseException:
            guard.release(delivery_id)  # not acted on: MLflow's retry of this delivery must get through
            raise
        log.info("model version %s/%s created: asset event %s", created.name, created.version, event_id)
        return {
            "status": "accepted",
            "asset_event_id": event_id,
            "name": created.name,
            "version": created.version,
        }

    return app


async def _read_body(request, limit: int) -> bytes:
    """The body, refused with BodyTooLarge as soon as it is known to be over `limit`: from Content-Length
    before reading, and while reading (a chunked body, or a length that lies)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.strip().isdigit()):
            raise MalformedDelivery(f"Content-Length {length[:40]!r} is not a number")
        if int(length) > limit:
            raise BodyTooLarge(f"the body is {int(length)} bytes, over the {limit} bytes a delivery may have")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the body is over the {limit} bytes a delivery may have")
    return bytes(body)
