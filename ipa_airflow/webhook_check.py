"""`ipa webhook check`: can MLflow deliver `model_version.created` to ipa's receiver, end to end?

MLflow 3 delivers webhooks from its server, and three of its defaults make deliveries fail with nothing
in Airflow's log: it refuses http:// URLs (MLFLOW_WEBHOOK_ALLOWED_SCHEMES, default https only) and URLs
on private addresses (MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS), and without MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY
each server process encrypts webhook secrets with a key it makes up, so another worker, or the same one
after a restart, cannot decrypt them (cryptography's InvalidToken: an HTTP 500 with an empty message).

The check finds the webhook that posts to the receiver's URL (or registers it), then asks MLflow for its
test delivery: MLflow's own code reads the webhook (decrypting its secret), checks the URL, signs the
example payload and posts it, so each of these runs where it would for a real event. Pure functions map
MLflow's answers onto the step they prove wrong, matching the texts of mlflow 3.17
(utils/validation.py `_validate_webhook_url`, webhooks/delivery.py `test_webhook`, webhooks/ssrf.py),
and the receiver's answers by their status and detail (ipa_airflow/webhooks.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .mlflow_webhooks import MlflowApiError, MlflowUnreachable

EVENT = "model_version.created"  # the one event the receiver acts on
WEBHOOK_NAME = "ipa-airflow"
RECEIVER_PATH = "/ipa/mlflow"  # where operators/plugin.py mounts the receiver on the Airflow API server

# The steps, in the order a delivery passes them, and what passing each one means.
STEPS = {
    "reachable": "MLflow reachable",
    "registered": "webhook registered and active",
    "url": "MLflow accepts the URL",
    "decrypt": "MLflow decrypts the webhook's secret",
    "receiver": "the receiver answered 2xx",
}

DECRYPT_FAILED = (
    "MLflow cannot decrypt the webhook's secret: set the same MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY on every "
    "MLflow worker and re-register the webhook. (MLflow answered HTTP 500 with an empty message: "
    "cryptography's InvalidToken. Without the variable each MLflow process, and each restart, makes up "
    "its own key. A webhook stored under a key MLflow no longer has cannot be read, updated or deleted "
    "through MLflow's API, and it stops the deliveries of every webhook on its events: docs/airflow.md "
    "says how to recover.)"
)
SCHEME_REFUSED = (
    "MLflow refuses {scheme}:// webhook URLs: set MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https on the MLflow "
    "server (its default is https only), or serve the receiver over https"
)
PRIVATE_REFUSED = (
    "MLflow refuses webhook URLs on private addresses ({where}): set MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true "
    "on the MLflow server, as a receiver inside your network needs"
)
SECRETS_DIFFER = (
    "the receiver refused the signature (401): the webhook's secret in MLflow differs from "
    "IPA_WEBHOOK_SECRET on the Airflow API server. Run `ipa webhook check --register` with "
    "IPA_WEBHOOK_SECRET (or --secret) set to the API server's value: it updates the webhook's secret"
)


@dataclass(frozen=True)
class Finding:
    step: str  # a key of STEPS
    ok: bool
    detail: str


# ---- what MLflow's answers prove ----------------------------------------------------------------------

_SCHEME = re.compile(r"Invalid webhook URL scheme: '([^']*)'")
_PRIVATE = re.compile(r"'([^']*)' resolves to ([0-9A-Fa-f:.]+[0-9A-Fa-f])")
_BLOCKED = re.compile(r"Webhook connection blocked: (\S+) is not a public IP address")


def url_refusal(message: str) -> Finding | None:
    """The URL step failed, when `message` is MLflow refusing the webhook's URL (at registration, or
    again before each delivery); None for any other message."""
    if m := _SCHEME.search(message):
        return Finding("url", False, SCHEME_REFUSED.format(scheme=m.group(1) or "scheme-less"))
    if "must not resolve to a non-public IP address" in message:
        m = _PRIVATE.search(message)
        where = f"{m.group(1)} resolves to {m.group(2)}" if m else message
        return Finding("url", False, PRIVATE_REFUSED.format(where=where))
    if m := _BLOCKED.search(message):
        return Finding("url", False, PRIVATE_REFUSED.format(where=f"the receiver is at {m.group(1)}"))
    if "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS value must be one of" in message:
        return Finding(
            "url", False, f"MLflow's MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS is not true or false: {message}"
        )
    return None


def mlflow_error(exc: MlflowApiError, *, step: str) -> Finding:
    """The finding an MLflow API error proves; `step` is the one the call was made for."""
    if exc.status == 500 and exc.error_code == "INTERNAL_ERROR" and not exc.message.strip():
        return Finding("decrypt", False, DECRYPT_FAILED)
    if refused := url_refusal(exc.message):
        return refused
    if exc.status in (401, 403):
        return Finding(
            "reachable",
            False,
            f"MLflow refused ipa's credentials (HTTP {exc.status}: {exc.message}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN, to a user "
            "who may manage webhooks",
        )
    if exc.status == 404 or exc.error_code == "ENDPOINT_NOT_FOUND":
        return Finding(
            "reachable",
            False,
            f"MLflow has no webhook API there (HTTP 404: {exc.message}): webhooks need an MLflow 3.3 or "
            "later server (`mlflow server`) with a database backend store",
        )
    return Finding(step, False, f"MLflow answered HTTP {exc.status} {exc.error_code}: {exc.message}".strip())


def delivery_error(error: str, url: str) -> str:
    """Why MLflow got no answer from the receiver, from its test result's error_message."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if "Connection refused" in error:
        return (
            f"the receiver is not reachable from MLflow: connection refused at {where}. MLflow connects "
            "from where it runs: the URL must name the Airflow API server as MLflow's host sees it (in "
            f"docker/compose.yaml http://airflow-apiserver:8080{RECEIVER_PATH}, not localhost)"
        )
    resolving = ("Name or service not known", "Failed to resolve", "Temporary failure in name resolution")
    if "Cannot resolve" in error or any(s in error for s in resolving) or "nodename nor servname" in error:
        return f"MLflow cannot resolve the receiver's host name {host!r} where it runs: use a name it can"
    if "CERTIFICATE_VERIFY_FAILED" in error or "SSLError" in error:
        return f"MLflow does not trust the receiver's TLS certificate at {where}: {error[:300]}"
    if "timed out" in error.lower() or "Timeout" in error:
        return (
            f"the receiver at {where} did not answer MLflow in time (MLFLOW_WEBHOOK_REQUEST_TIMEOUT on the "
            "MLflow server, 30 s by default): is it the Airflow API server, and is that up?"
        )
    if "too many" in error and "error responses" in error:
        return (
            "the receiver answered 5xx to each of MLflow's retries: see the Airflow API server's log "
            f"({error[:300]})"
        )
    return f"MLflow could not deliver to the receiver: {error[:500]}"


def receiver_answer(status: int, body: str, url: str) -> Finding:
    """What the receiver's answer to MLflow's test delivery says."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    detail = str(doc.get("detail", body)) if isinstance(doc, dict) else body
    detail = detail.strip()[:300]
    if 200 <= status < 300:
        if isinstance(doc, dict) and doc.get("test") is True:
            return Finding(
                "receiver", True, f"answered {status}: verified MLflow's test delivery and started nothing"
            )
        return Finding(
            "receiver",
            False,
            f"answered {status}, but not as ipa's receiver does ({detail!r}): is the URL the Airflow API "
            f"server's {RECEIVER_PATH}, with this version of ipa-airflow installed there?",
        )
    if status == 401:
        if "signature does not match" in detail:
            return Finding("receiver", False, SECRETS_DIFFER)
        if "no webhook secret is configured" in detail:
            why = "IPA_WEBHOOK_SECRET is not set on the Airflow API server, so it refuses every delivery"
            return Finding("receiver", False, f"the receiver refused the delivery (401): {why}: set it there")
        if "missing X-MLflow" in detail:
            return Finding(
                "receiver",
                False,
                "the receiver refused an unsigned delivery (401): the webhook has no secret in MLflow. "
                "Run `ipa webhook check --register` with IPA_WEBHOOK_SECRET set to the API server's value",
            )
        if "timestamp is" in detail:
            return Finding(
                "receiver",
                False,
                "the receiver refused the delivery's timestamp (401): MLflow's clock and the Airflow API "
                f"server's differ by more than the receiver's window: {detail}",
            )
    if status in (404, 405):
        return Finding(
            "receiver",
            False,
            f"nothing receives webhooks at {urlsplit(url).path or '/'} (HTTP {status}): the receiver is "
            f"POST {RECEIVER_PATH} on the Airflow API server, served by the ipa-airflow plugin; "
            "check the URL's path",
        )
    if status == 400:
        return Finding("receiver", False, f"the receiver refused the delivery as malformed (400): {detail}")
    if status >= 500:
        return Finding(
            "receiver",
            False,
            f"the receiver failed (HTTP {status}: {detail}): see the Airflow API server's log",
        )
    return Finding("receiver", False, f"the receiver refused the delivery (HTTP {status}): {detail}")


def delivery_findings(result: dict, url: str) -> list[Finding]:
    """Findings from MLflow's test result (its WebhookTestResult as JSON). MLflow answered it, so it
    read the webhook and decrypted its secret; the rest depends on the URL check and the delivery."""
    found = [Finding("decrypt", True, "MLflow read the webhook and decrypted its secret")]
    error = str(result.get("error_message") or "")
    if refused := url_refusal(error):
        return [*found, refused]
    found.append(Finding("url", True, f"MLflow accepts {urlsplit(url).scheme}:// URLs at this address"))
    if error:
        return [*found, Finding("receiver", False, delivery_error(error, url))]
    status = int(result.get("response_status") or 0)
    return [*found, receiver_answer(status, str(result.get("response_body") or ""), url)]


def event_names(hook: dict) -> list[str]:
    """A webhook's events as 'entity.action' (the REST API spells them MODEL_VERSION / CREATED)."""
    return [f"{e.get('entity', '')}.{e.get('action', '')}".lower() for e in hook.get("events", [])]


def registration_findings(mine: list[dict], url: str, others: list[str], *, action: str) -> list[Finding]:
    """Whether exactly one webhook posts `model_version.created` to `url`, active. `mine` are the ones
    posting to `url`, newest first; `others` the URLs of the rest; `action` what the check did."""
    if not mine:
        elsewhere = f" (its webhooks post to: {', '.join(sorted(set(others)))})" if others else ""
        return [
            Finding(
                "registered",
                False,
                f"no webhook in MLflow posts to {url}{elsewhere}: run again with --register to register it",
            )
        ]
    hook = mine[0]
    name = f"{hook.get('name', '?')} ({hook.get('webhook_id', '?')})"
    found = []
    if len(mine) > 1:
        ids = ", ".join(h.get("webhook_id", "?") for h in mine)
        found.append(
            Finding(
                "registered",
                False,
                f"{len(mine)} webhooks post to {url} ({ids}): each model version would be profiled "
                f"{len(mine)} times; delete all but one (MlflowClient().delete_webhook(id))",
            )
        )
    if hook.get("status", "ACTIVE") != "ACTIVE":
        found.append(
            Finding(
                "registered",
                False,
                f"webhook {name} is {hook.get('status')}: MLflow sends it nothing; --register activates it",
            )
        )
    if EVENT not in event_names(hook):
        have = ", ".join(event_names(hook)) or "none"
        found.append(
            Finding(
                "registered",
                False,
                f"webhook {name} is not sent {EVENT} (its events: {have}); --register adds it",
            )
        )
    done = {"registered": ", registered now", "updated": ", its secret, events and status set now"}
    return found or [Finding("registered", True, f"{name} on {EVENT}{done.get(action, '')}")]


# ---- the check ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    tracking_uri: str
    url: str
    findings: tuple[Finding, ...]
    webhook_id: str | None = None
    action: str = "found"  # found / registered / updated: what the check did to the webhook

    def state(self, step: str) -> tuple[str, str]:
        """('ok' | 'fail' | 'skipped', detail) of one step."""
        mine = [f for f in self.findings if f.step == step]
        if not mine:
            return "skipped", "not reached"
        failed = [f.detail for f in mine if not f.ok]
        return ("fail", "; ".join(failed)) if failed else ("ok", mine[-1].detail)

    @property
    def ok(self) -> bool:
        return all(self.state(step)[0] == "ok" for step in STEPS)

    def to_dict(self) -> dict:
        steps = []
        for step, label in STEPS.items():
            state, detail = self.state(step)
            steps.append({"step": step, "label": label, "state": state, "detail": detail})
        return {
            "ok": self.ok,
            "tracking_uri": self.tracking_uri,
            "url": self.url,
            "webhook_id": self.webhook_id,
            "action": self.action,
            "steps": steps,
        }


def check_webhook(api, url: str, *, secret: str, register: bool) -> CheckResult:
    """Find the webhook posting to `url` in MLflow (with `register`: create it, or set its secret, events
    and status), then have MLflow send its test delivery. `api` is a mlflow_webhooks.WebhookApi."""
    found: list[Finding] = []

    def result(*, hook: dict | None = None, action: str = "found") -> CheckResult:
        hook_id = hook.get("webhook_id") if hook else None
        return CheckResult(api.tracking_uri, url, tuple(found), hook_id, action)

    reached = Finding("reachable", True, f"{api.tracking_uri} answers MLflow's webhook API")
    try:
        hooks = api.webhooks()
    except MlflowUnreachable as exc:
        found.append(Finding("reachable", False, str(exc)))
        return result()
    except MlflowApiError as exc:
        failed = mlflow_error(exc, step="reachable")
        found.extend([failed] if failed.step == "reachable" else [reached, failed])
        return result()
    found.append(reached)
    mine = [h for h in hooks if h.get("url") == url]  # MLflow lists the newest first
    others = [h.get("url", "") for h in hooks if h.get("url") != url]
    action = "found"
    if register:
        try:
            if mine:
                events = sorted({*event_names(mine[0]), EVENT})
                hook = api.update(mine[0]["webhook_id"], secret=secret, events=events, status="ACTIVE")
                action = "updated"
            else:
                hook = api.create(WEBHOOK_NAME, url, [EVENT], secret=secret)
                action = "registered"
        except MlflowApiError as exc:
            found.append(mlflow_error(exc, step="registered"))
            return result(hook=mine[0] if mine else None)
        mine = [hook, *mine[1:]]
    found.extend(registration_findings(mine, url, others, action=action))
    if not mine:
        return result(action=action)
    hook = mine[0]
    try:
        answer = api.test(hook["webhook_id"], EVENT)
    except MlflowUnreachable as exc:
        found.append(Finding("receiver", False, f"MLflow did not finish its test delivery: {exc}"))
    except MlflowApiError as exc:
        found.append(mlflow_error(exc, step="receiver"))
    else:
        found.extend(delivery_findings(answer, url))
    return result(hook=hook, action=action)
