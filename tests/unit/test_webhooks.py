"""The MLflow webhook receiver in-process (the app the Airflow plugin mounts, with the asset event
replaced): replays refused, malformed input a 400 and never a 500, a body size limit. The real receiver
inside Airflow, with MLflow delivering, is in tests/integration/test_airflow.py."""

import json
import warnings

import pytest

from ipa_airflow.webhooks import (
    MAX_BODY_BYTES,
    DeliveryReplayed,
    ReplayGuard,
    create_app,
    model_version_created,
    sign,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx
    from fastapi import HTTPException
    from fastapi.testclient import TestClient

SECRET = "s3cret"
NOW = 1_800_000_000
EVENT = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "m", "version": "3"}})


@pytest.fixture
def receiver():
    """(client, emitted, fail): `fail` holds exceptions the next emits raise, first to last."""
    emitted, fail = [], []

    def emit(name, version, delivery_id):
        if fail:
            raise fail.pop(0)
        emitted.append((name, version, delivery_id))
        return len(emitted)

    app = create_app(emit, secret=lambda: SECRET, guard=ReplayGuard(), clock=lambda: float(NOW))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, emitted, fail


def post(client, body=EVENT, *, delivery="d-1", ts=NOW, signature=None, **headers):
    raw = body.encode() if isinstance(body, str) else body
    sig = signature if signature is not None else sign(SECRET, delivery, str(ts), raw)
    h = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": str(ts), "X-MLflow-Signature": sig}
    return client.post("/mlflow", content=raw, headers={**h, **headers})


def test_a_signed_delivery_starts_one_profiling_run(receiver):
    client, emitted, _ = receiver
    r = post(client)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert emitted == [("m", "3", "d-1")]


def test_a_replayed_delivery_is_refused_every_time(receiver):
    client, emitted, _ = receiver
    assert post(client).status_code == 200
    for _ in range(3):
        r = post(client)
        assert r.status_code == 409 and "d-1 was received before: a replay" in r.json()["detail"]
    assert len(emitted) == 1  # one profiling run, not four
    assert post(client, delivery="d-2").status_code == 200  # another delivery of the same event is new


def test_a_delivery_we_failed_to_act_on_is_accepted_when_mlflow_retries_it(receiver):
    client, emitted, fail = receiver
    fail.append(HTTPException(503, "the ipa_profile_model_version DAG is not deployed"))
    assert post(client).status_code == 503  # MLflow retries 5xx with the same delivery id
    assert post(client).status_code == 200 and emitted == [("m", "3", "d-1")]


def test_a_replay_another_worker_saw_is_refused(receiver):
    client, emitted, fail = receiver
    fail.append(DeliveryReplayed("delivery d-1 was received before: a replay, not acted on"))
    r = post(client)
    assert r.status_code == 409 and "replay" in r.json()["detail"] and emitted == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[1, 2]", "a JSON list, not an MLflow event"),
        ('"text"', "a JSON str, not an MLflow event"),
        ("{not json", "the body is not JSON"),
        ("[" * 100_000, "the body is not JSON"),  # deep enough to exhaust the parser
        (b"\xff\xfe{}", "the body is not JSON"),
        ('{"entity": "model_version", "action": "created", "data": "m/3"}', "`data` is a str, not an object"),
        ('{"entity": "model_version", "action": "created", "data": {"version": "3"}}', "`data.name` must be"),
        (
            '{"entity": "model_version", "action": "created", "data": {"name": "m", "version": [3]}}',
            "version",
        ),
        (
            '{"entity": "model_version", "action": "created", "data": {"name": "m", "version": true}}',
            "version",
        ),
    ],
)
def test_a_signed_body_that_is_no_mlflow_event_is_a_400(receiver, body, says):
    client, emitted, _ = receiver
    r = post(client, body)
    assert r.status_code == 400 and says in r.json()["detail"] and emitted == []


def test_other_events_are_ignored(receiver):
    client, emitted, _ = receiver
    r = post(client, json.dumps({"entity": "registered_model", "action": "created", "data": {}}))
    assert r.status_code == 200 and r.json() == {"status": "ignored"} and emitted == []


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-MLflow-Signature", "v1,é"), ("X-MLflow-Delivery-Id", "dé"), ("X-MLflow-Timestamp", "١٨٠٠٠٠٠٠٠٠")],
)
def test_a_non_ascii_header_is_a_400_not_a_500(receiver, header, value):
    client, emitted, _ = receiver
    r = post(client, **{header: value.encode("utf-8")})
    assert r.status_code == 400 and f"header {header} holds non-ASCII characters" in r.json()["detail"]
    assert emitted == []


def test_forged_stale_and_unsigned_deliveries_are_a_401(receiver):
    client, emitted, _ = receiver
    assert post(client, signature=sign("wrong", "d-1", str(NOW), EVENT.encode())).status_code == 401
    stale = post(client, ts=NOW - 3600)
    assert stale.status_code == 401 and "stale or replayed" in stale.json()["detail"]
    unsigned = client.post("/mlflow", content=EVENT, headers={"X-MLflow-Delivery-Id": "d"})
    assert unsigned.status_code == 401
    assert post(client, ts="soon").status_code == 400  # not a unix time
    assert emitted == []


def test_a_body_over_the_limit_is_a_413_before_and_while_reading(receiver):
    client, emitted, _ = receiver
    big = EVENT.encode().ljust(MAX_BODY_BYTES + 1, b" ")  # still a valid, signed event
    r = post(client, big)
    assert r.status_code == 413 and "over the 1048576 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 65_536):
            yield big[i : i + 65_536]

    h = {"X-MLflow-Delivery-Id": "d-9", "X-MLflow-Timestamp": str(NOW)}
    r = client.post(
        "/mlflow", content=chunks(), headers={**h, "X-MLflow-Signature": sign(SECRET, "d-9", str(NOW), big)}
    )
    assert r.status_code == 413 and emitted == []
    assert post(client, EVENT.encode().ljust(MAX_BODY_BYTES, b" ")).status_code == 200  # at the limit


def test_the_guard_forgets_ids_once_their_window_is_over_and_holds_at_most_max_ids():
    guard = ReplayGuard(300, max_ids=3)
    guard.claim("a", sent=1000, now=1000)
    with pytest.raises(DeliveryReplayed):
        guard.claim("a", sent=1000, now=1299)
    guard.claim("a", sent=1000, now=1301)  # past its window: `verify` refuses it by its timestamp anyway
    for d in "bcde":
        guard.claim(d, sent=1301, now=1301)
    assert len(guard) == 3  # bounded: the id expiring first made room


def test_model_version_created_accepts_what_mlflow_sends():
    assert model_version_created(
        {"entity": "model_version", "action": "created", "data": {"name": "m", "version": 7}}
    )
    assert model_version_created({"entity": "model_version", "action": "updated"}) is None


def test_mlflows_own_test_delivery_is_acknowledged_and_starts_no_profiling_run(receiver):
    """MlflowClient.test_webhook sends the event's example payload, signed: a 200 (MLflow reports the
    test as passed), but no asset event for `example_model`, a model that does not exist."""
    from mlflow.webhooks.types import ModelVersionCreatedPayload

    client, emitted, _ = receiver
    test = {"entity": "model_version", "action": "created", "data": ModelVersionCreatedPayload.example()}
    r = post(client, json.dumps(test))
    assert r.status_code == 200 and r.json()["status"] == "test" and emitted == []
    # A real version of a model that happens to be called example_model is profiled.
    real = {"entity": "model_version", "action": "created", "data": {"name": "example_model", "version": "1"}}
    assert post(client, json.dumps(real), delivery="d-2").status_code == 200
    assert emitted == [("example_model", "1", "d-2")]


def test_a_stale_delivery_says_which_way_the_clock_is_off(receiver):
    client, _, _ = receiver
    assert "3600 s in the past" in post(client, ts=NOW - 3600).json()["detail"]
    assert "3600 s in the future" in post(client, ts=NOW + 3600).json()["detail"]
