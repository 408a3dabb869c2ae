"""MLflow's webhook REST API (/api/2.0/mlflow/webhooks) as `ipa webhook check` needs it: each call made
once, MLflow's answers as dicts, its errors as MlflowApiError (status, error_code, message) and no answer
at all as MlflowUnreachable. The REST API spells events {"entity": "MODEL_VERSION", "action": "CREATED"};
callers use MLflow's 'model_version.created'."""

from __future__ import annotations

import json
import re


class MlflowUnreachable(OSError):
    """No HTTP answer from MLflow (refused, unknown host, timed out)."""


class MlflowApiError(Exception):
    """MLflow answered a webhook API call with an error."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"HTTP {status} {error_code}: {message}")
        self.status, self.error_code, self.message = status, error_code, message

    @classmethod
    def of(cls, status: int, body: str) -> MlflowApiError:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return cls(status, "", f"(not an MLflow error body) {body.strip()[:200]}")
        return cls(status, str(doc.get("error_code", "")), str(doc.get("message", "")))


class WebhookApi:
    """MLflow's webhook REST API (/api/2.0/mlflow/webhooks), each call made once: MlflowClient retries a
    500 for minutes, and here a 500 is a finding (a secret MLflow cannot decrypt), not a hiccup.
    Credentials come from the environment as for MlflowClient (MLFLOW_TRACKING_USERNAME, ...)."""

    PATH = "/api/2.0/mlflow/webhooks"

    def __init__(self, tracking_uri: str, *, timeout_s: float = 30.0, test_timeout_s: float = 180.0):
        # The test call waits for MLflow's delivery, which it retries on 5xx with a 30 s timeout each.
        self.tracking_uri = tracking_uri.rstrip("/")
        self.timeout_s, self.test_timeout_s = timeout_s, test_timeout_s

    def webhooks(self) -> list[dict]:
        hooks, token = [], None
        while True:
            page = self._call(
                "GET", self.PATH, params={"max_results": 100, **({"page_token": token} if token else {})}
            )
            hooks.extend(page.get("webhooks", []))
            token = page.get("next_page_token")
            if not token:
                return hooks

    def create(self, name: str, url: str, events: list[str], *, secret: str) -> dict:
        body = {"name": name, "url": url, "events": _events(events), "secret": secret, "status": "ACTIVE"}
        return self._call("POST", self.PATH, json=body)["webhook"]

    def update(self, webhook_id: str, *, secret: str, events: list[str], status: str) -> dict:
        body = {"secret": secret, "events": _events(events), "status": status}
        return self._call("PATCH", f"{self.PATH}/{webhook_id}", json=body)["webhook"]

    def test(self, webhook_id: str, event: str) -> dict:
        body = {"event": _events([event])[0]}
        return self._call("POST", f"{self.PATH}/{webhook_id}/test", json=body, timeout=self.test_timeout_s)[
            "result"
        ]

    def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs) -> dict:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        try:
            response = http_request(
                get_default_host_creds(self.tracking_uri),
                path,
                method,
                max_retries=0,
                backoff_factor=0,
                raise_on_status=False,
                timeout=timeout or self.timeout_s,
                **kwargs,
            )
        except MlflowException as exc:  # http_request's wrapping of any transport error (refused, timeout)
            raise MlflowUnreachable(
                f"MLflow is not reachable at {self.tracking_uri}: {_reason(exc)}"
            ) from None
        if response.status_code != 200:
            raise MlflowApiError.of(response.status_code, response.text)
        try:
            return response.json()
        except ValueError:
            raise MlflowApiError(200, "", f"(not JSON) {response.text.strip()[:200]}") from None


def _events(names: list[str]) -> list[dict]:
    return [dict(zip(("entity", "action"), name.upper().split("."), strict=True)) for name in names]


def _reason(exc: Exception) -> str:
    """The useful end of a requests error: '[Errno 111] Connection refused', 'Read timed out', ..."""
    text = str(exc)
    if m := re.search(r"\[Errno -?\d+\] [^'\")]+", text):
        return m.group(0)
    if "timed out" in text.lower():
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"
