"""`ipa webhook check` without a server: MLflow's real error texts (mlflow 3.17.2, recorded from a real
server; tests/integration/test_webhook_check.py gets them live) and the receiver's answers mapped onto the
step each proves wrong; the receiver's answer to MLflow's test delivery, built and signed by MLflow's own
code; the compose stack's MLflow settings; the command's input errors."""

import json
import re
import warnings

import pytest
import yaml

from ipa_airflow.mlflow_webhooks import MlflowApiError
from ipa_airflow.webhook_check import (
    DECRYPT_FAILED,
    SECRETS_DIFFER,
    STEPS,
    CheckResult,
    Finding,
    check_webhook,
    delivery_findings,
    event_names,
    mlflow_error,
    receiver_answer,
    registration_findings,
)
from ipa_airflow.webhooks import ReplayGuard, create_app
from tests.conftest import REPO

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx
    from fastapi.testclient import TestClient

URL = "http://airflow-apiserver:8080/ipa/mlflow"


def error(status: int, body: dict | str) -> MlflowApiError:
    return MlflowApiError.of(status, body if isinstance(body, str) else json.dumps(body))


# ---- MLflow's answers to the webhook API ---------------------------------------------------------------


def test_mlflows_500_with_an_empty_message_is_the_secret_it_cannot_decrypt():
    body = {
        "error_code": "INTERNAL_ERROR",
        "message": "",
        "sqlstate": "XXM00",
        "error_class": "CLIENT_INTERNAL_ERROR",
    }
    for step in ("reachable", "registered", "receiver"):
        assert mlflow_error(error(500, body), step=step) == Finding("decrypt", False, DECRYPT_FAILED)
    assert DECRYPT_FAILED.startswith(
        "MLflow cannot decrypt the webhook's secret: set the same MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY on "
        "every MLflow worker and re-register the webhook."
    )
    # Another internal error says what it is, and is not taken for a key problem.
    other = mlflow_error(
        error(500, {"error_code": "INTERNAL_ERROR", "message": "disk full"}), step="receiver"
    )
    assert other == Finding("receiver", False, "MLflow answered HTTP 500 INTERNAL_ERROR: disk full")


def test_mlflow_refusing_the_url_names_the_variable_to_set():
    scheme = error(
        400,
        {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "Invalid webhook URL scheme: 'http'. Allowed schemes are: https.",
        },
    )
    assert mlflow_error(scheme, step="registered") == Finding(
        "url",
        False,
        "MLflow refuses http:// webhook URLs: set MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https on the MLflow "
        "server (its default is https only), or serve the receiver over https",
    )
    private = error(
        400,
        {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "Webhook URL must not resolve to a non-public IP address. "
            "'airflow' resolves to 10.0.3.7.",
        },
    )
    found = mlflow_error(private, step="registered")
    assert found.step == "url" and not found.ok
    assert "(airflow resolves to 10.0.3.7): set MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true" in found.detail


def test_mlflows_other_errors_say_what_to_do():
    denied = mlflow_error(
        error(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"}), step="reachable"
    )
    assert denied.step == "reachable" and "MLFLOW_TRACKING_USERNAME" in denied.detail
    missing = mlflow_error(error(404, "<html>Not Found</html>"), step="reachable")
    assert missing.step == "reachable" and "MLflow 3.3 or later server" in missing.detail
    html = mlflow_error(error(502, "<html>Bad Gateway</html>"), step="registered")
    assert html == Finding(
        "registered", False, "MLflow answered HTTP 502 : (not an MLflow error body) <html>Bad Gateway</html>"
    )


# ---- MLflow's test delivery --------------------------------------------------------------------------

REFUSED = (
    "Failed to test webhook: ConnectionError(MaxRetryError('_SSRFProtectedHTTPConnectionPool(host=\\'"
    "127.0.0.1\\', port=9): Max retries exceeded with url: /mlflow (Caused by NewConnectionError(\"_SSRF"
    "ProtectedHTTPConnection(host=\\'127.0.0.1\\', port=9): Failed to establish a new connection: [Errno "
    "111] Connection refused\"))'))"
)


@pytest.mark.parametrize(
    ("error_message", "step", "says"),
    [
        (
            "Failed to test webhook: MlflowException(\"Invalid webhook URL scheme: 'http'. Allowed schemes "
            'are: https.")',
            "url",
            "MLflow refuses http:// webhook URLs: set MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https on the",
        ),
        (
            'Failed to test webhook: MlflowException("Webhook URL must not resolve to a non-public IP '
            "address. '127.0.0.1' resolves to 127.0.0.1.\")",
            "url",
            "(127.0.0.1 resolves to 127.0.0.1): set MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true",
        ),
        (
            "Failed to test webhook: SSRFProtectionError('Webhook connection blocked: 10.1.2.3 is not a "
            "public IP address. This may indicate a DNS rebinding attempt.')",
            "url",
            "(the receiver is at 10.1.2.3): set MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true",
        ),
        (
            'Failed to test webhook: ValueError("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS value must be one of '
            "['true', 'false', '1', '0'] (case-insensitive), but got \")",
            "url",
            "MLflow's MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS is not true or false",
        ),
        (REFUSED, "receiver", "not reachable from MLflow: connection refused at airflow-apiserver:8080"),
        (
            'Failed to test webhook: MlflowException("Cannot resolve Webhook URL hostname '
            "'airflow-apiserver': [Errno -2] Name or service not known\")",
            "receiver",
            "MLflow cannot resolve the receiver's host name 'airflow-apiserver' where it runs",
        ),
        (
            "Failed to test webhook: ReadTimeout(ReadTimeoutError(\"HTTPConnectionPool(host='x', port=8080): "
            'Read timed out. (read timeout=30)"))',
            "receiver",
            "did not answer MLflow in time (MLFLOW_WEBHOOK_REQUEST_TIMEOUT",
        ),
    ],
)
def test_a_delivery_mlflow_could_not_make_names_the_side_that_stopped_it(error_message, step, says):
    found = delivery_findings({"success": False, "error_message": error_message}, URL)
    assert found[0] == Finding("decrypt", True, "MLflow read the webhook and decrypted its secret")
    assert found[-1].step == step and not found[-1].ok and says in found[-1].detail, found[-1]
    assert ("url", True) in {(f.step, f.ok) for f in found} or step == "url"


@pytest.mark.parametrize(
    ("status", "body", "ok", "says"),
    [
        (200, {"status": "test", "test": True}, True, "verified MLflow's test delivery and started nothing"),
        (200, {"status": "accepted", "asset_event_id": 7}, False, "but not as ipa's receiver does"),
        (200, "<html>Airflow</html>", False, "but not as ipa's receiver does"),
        (401, {"detail": "refused: signature does not match"}, False, SECRETS_DIFFER),
        (
            401,
            {"detail": "refused: no webhook secret is configured on this receiver (set IPA_WEBHOOK_SECRET)"},
            False,
            "IPA_WEBHOOK_SECRET is not set on the Airflow API server",
        ),
        (
            401,
            {
                "detail": "refused: missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or "
                "X-MLflow-Signature header"
            },
            False,
            "the webhook has no secret in MLflow",
        ),
        (
            401,
            {
                "detail": "refused: timestamp is 900 s in the past (allowed 300 s either way): "
                "stale or replayed"
            },
            False,
            "MLflow's clock and the Airflow API server's differ",
        ),
        (404, {"detail": "Not Found"}, False, "nothing receives webhooks at /ipa/mlflow (HTTP 404)"),
        (405, {"detail": "Method Not Allowed"}, False, "the receiver is POST /ipa/mlflow on the Airflow API"),
        (400, {"detail": "refused: the body is not JSON"}, False, "as malformed (400): refused: the body is"),
        (503, "upstream down", False, "the receiver failed (HTTP 503: upstream down)"),
        (403, {"detail": "Forbidden"}, False, "the receiver refused the delivery (HTTP 403): Forbidden"),
    ],
)
def test_the_receivers_answer_says_which_side_is_wrong(status, body, ok, says):
    text = body if isinstance(body, str) else json.dumps(body)
    found = delivery_findings({"success": ok, "response_status": status, "response_body": text}, URL)
    assert [f.step for f in found] == ["decrypt", "url", "receiver"]
    assert found[-1].ok is ok and says in found[-1].detail, found[-1]
    assert receiver_answer(status, text, URL) == found[-1]


# ---- the webhook in MLflow ---------------------------------------------------------------------------

HOOK = {
    "webhook_id": "w-1",
    "name": "ipa-airflow",
    "url": URL,
    "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}],
    "status": "ACTIVE",
}


def test_registration_wants_exactly_one_active_webhook_sent_model_version_created():
    assert registration_findings([HOOK], URL, [], action="found") == [
        Finding("registered", True, "ipa-airflow (w-1) on model_version.created")
    ]
    [none] = registration_findings([], URL, ["https://ci/hook", "https://ci/hook"], action="found")
    assert not none.ok and none.detail == (
        f"no webhook in MLflow posts to {URL} (its webhooks post to: https://ci/hook): run again with "
        "--register to register it"
    )
    two = registration_findings([HOOK, {**HOOK, "webhook_id": "w-0"}], URL, [], action="found")
    assert [f.ok for f in two] == [False] and "each model version would be profiled 2 times" in two[0].detail
    off = {**HOOK, "status": "DISABLED", "events": [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]}
    details = [f.detail for f in registration_findings([off], URL, [], action="found")]
    assert details == [
        "webhook ipa-airflow (w-1) is DISABLED: MLflow sends it nothing; --register activates it",
        "webhook ipa-airflow (w-1) is not sent model_version.created (its events: model_version_tag.set); "
        "--register adds it",
    ]
    assert event_names(off) == ["model_version_tag.set"]


class FakeApi:
    """Records what the check asks of MLflow; the real API is in tests/integration/test_webhook_check.py."""

    tracking_uri = "http://mlflow:5000"

    def __init__(self, hooks, test_result=None, list_error=None):
        self.hooks, self.test_result, self.list_error, self.calls = hooks, test_result, list_error, []

    def webhooks(self):
        if self.list_error:
            raise self.list_error
        return self.hooks

    def update(self, webhook_id, *, secret, events, status):
        self.calls.append(("update", webhook_id, secret, events, status))
        return {
            **self.hooks[0],
            "status": status,
            "events": [dict(zip(("entity", "action"), e.upper().split("."), strict=True)) for e in events],
        }

    def create(self, name, url, events, *, secret):
        self.calls.append(("create", name, url, events, secret))
        return {**HOOK, "url": url}

    def test(self, webhook_id, event):
        self.calls.append(("test", webhook_id, event))
        return self.test_result


GOOD_TEST = {"success": True, "response_status": 200, "response_body": '{"status": "test", "test": true}'}


def test_register_keeps_the_webhooks_other_events_and_activates_it():
    off = {**HOOK, "status": "DISABLED", "events": [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]}
    api = FakeApi([off], GOOD_TEST)
    result = check_webhook(api, URL, secret="s", register=True)
    assert api.calls[0] == (
        "update",
        "w-1",
        "s",
        ["model_version.created", "model_version_tag.set"],
        "ACTIVE",
    )
    assert api.calls[1] == ("test", "w-1", "model_version.created")
    assert result.ok and result.action == "updated" and result.webhook_id == "w-1"
    api = FakeApi([], GOOD_TEST)
    assert check_webhook(api, URL, secret="s", register=True).action == "registered"
    assert api.calls[0] == ("create", "ipa-airflow", URL, ["model_version.created"], "s")


def test_a_list_mlflow_cannot_decrypt_fails_that_step_and_leaves_the_others_unknown():
    broken = error(500, {"error_code": "INTERNAL_ERROR", "message": ""})
    result = check_webhook(FakeApi([], list_error=broken), URL, secret="s", register=True)
    states = {step: result.state(step)[0] for step in STEPS}
    assert states == {
        "reachable": "ok",
        "registered": "skipped",
        "url": "skipped",
        "decrypt": "fail",
        "receiver": "skipped",
    }
    assert not result.ok and result.to_dict()["steps"][3] == {
        "step": "decrypt",
        "label": "MLflow decrypts the webhook's secret",
        "state": "fail",
        "detail": DECRYPT_FAILED,
    }


def test_the_check_passes_only_when_every_step_passed():
    every = tuple(Finding(step, True, "") for step in STEPS)
    assert CheckResult("u", URL, every).ok
    assert not CheckResult("u", URL, every[:-1]).ok  # a step not reached is no pass
    assert not CheckResult("u", URL, (*every, Finding("registered", False, "two"))).ok


# ---- the receiver ------------------------------------------------------------------------------------


def test_the_receiver_answers_mlflows_own_test_delivery_and_emits_nothing():
    """The body and signature MLflow's test_webhook sends, made by MLflow's own functions."""
    from mlflow.entities.webhook import WebhookEvent
    from mlflow.webhooks.delivery import _generate_hmac_signature
    from mlflow.webhooks.types import get_example_payload_for_event

    emitted = []
    guard = ReplayGuard()
    app = create_app(lambda *a: emitted.append(a) or 1, secret=lambda: "s3cret", guard=guard)
    event = WebhookEvent.from_str("model_version.created")
    payload = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "timestamp": "2027-01-15T08:00:00+00:00",
            "data": get_example_payload_for_event(event),
        }
    )
    import time

    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": "d-test",
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": _generate_hmac_signature("s3cret", "d-test", ts, payload),
    }
    with TestClient(app) as client:
        r = client.post("/mlflow", content=payload, headers=headers)
    assert r.status_code == 200 and r.json()["test"] is True and emitted == []
    assert receiver_answer(r.status_code, r.text, URL).ok
    assert len(guard) == 1  # the guard given is the one used, even while empty (it has a __len__)


# ---- the compose stack and the command ---------------------------------------------------------------


def test_the_compose_stacks_mlflow_allows_http_and_shares_a_valid_encryption_key():
    from cryptography.fernet import Fernet

    env = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]["mlflow"]["environment"]
    assert "http" in env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"].split(",")
    assert env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"
    m = re.fullmatch(
        r"\$\{MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY:-(\S+)\}", env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]
    )
    assert m, env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]
    Fernet(m.group(1))  # MLflow refuses to start on a key that is not one


def run(capsys, *argv):
    from ipa_airflow.cli import main

    rc = main(["webhook", "check", *argv])
    return rc, capsys.readouterr()


def test_the_command_refuses_what_cannot_be_checked(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("IPA_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    rc, out = run(capsys, "--url", URL)
    assert rc == 2 and "webhooks are delivered by an MLflow server, and sqlite:///" in out.err
    rc, out = run(capsys, "--url", URL, "--tracking-uri", "http://127.0.0.1:9", "--register")
    assert rc == 2 and "--register needs the webhook's secret: set IPA_WEBHOOK_SECRET" in out.err
    with pytest.raises(SystemExit) as exc:
        run(capsys, "--url", "airflow:8080/ipa/mlflow")
    assert exc.value.code == 2 and "expected the receiver's http(s) URL" in capsys.readouterr().err


def test_mlflow_not_answering_fails_the_first_step(capsys):
    from tests.integration.conftest import free_port

    rc, out = run(capsys, "--url", URL, "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert rc == 1
    assert re.search(
        r"FAIL +MLflow reachable +MLflow is not reachable at http://127\.0\.0\.1:\d+: \[Errno 111\]", out.out
    )
    assert out.out.count("not reached") == 4 and out.out.rstrip().endswith("failed: MLflow reachable")
