"""The Kubernetes backend: the official client, server-side apply under our own field manager.

Transient failures (429, 5xx, connection errors, optimistic-lock 409s) are retried with exponential
backoff; a 409 that names fields another manager owns is reported as FieldConflict, not forced, unless
the spec asks for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .backends import ClusterError, FieldConflict
from .desired import FIELD_MANAGER

RETRY_STATUS = {409, 429, 500, 502, 503, 504}


class KubernetesBackend:
    def __init__(
        self,
        api_client=None,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._api_client = api_client
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self._apps = None

    @classmethod
    def from_config(
        cls, *, kubeconfig: str | None = None, context: str | None = None, **kwargs
    ) -> KubernetesBackend:
        """Credentials from a kubeconfig file, or the in-cluster service account when running in a pod."""
        from kubernetes import client, config

        try:
            if kubeconfig or not _in_cluster():
                cfg = client.Configuration()
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            else:
                config.load_incluster_config()
                cfg = client.Configuration.get_default_copy()
        except (config.ConfigException, OSError) as exc:
            raise ClusterError(f"no usable Kubernetes credentials: {exc}") from None
        return cls(client.ApiClient(cfg), **kwargs)

    @property
    def apps(self):
        if self._apps is None:
            from kubernetes import client

            self._apps = client.AppsV1Api(self._api_client)
        return self._apps

    def _call(self, what: str, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                conflict = _field_conflicts(exc)
                if conflict:
                    raise FieldConflict(
                        f"{what}: {conflict}. Another field manager owns these fields; set "
                        "deployment.force_conflicts to take them over."
                    ) from None
                if exc.status not in RETRY_STATUS or attempt == self.attempts:
                    raise ClusterError(
                        f"{what}: the API server answered {exc.status} {exc.reason}: {_message(exc)}"
                    ) from None
            except (HTTPError, OSError) as exc:
                if attempt == self.attempts:
                    raise ClusterError(f"{what}: cannot reach the Kubernetes API ({exc})") from None
            self.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._call(
            f"read deployment {namespace}/{name}",
            self.apps.read_namespaced_deployment,
            name,
            namespace,
            _preload_content=False,
        )
        return None if obj is None else json.loads(obj.data)

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        meta = manifest["metadata"]
        kwargs: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": force,
            "_content_type": "application/apply-patch+yaml",
            "_preload_content": False,
        }
        if dry_run:
            kwargs["dry_run"] = "All"
        resp = self._call(
            f"apply deployment {meta['namespace']}/{meta['name']}",
            self.apps.patch_namespaced_deployment,
            meta["name"],
            meta["namespace"],
            manifest,
            **kwargs,
        )
        return json.loads(resp.data)


def _in_cluster() -> bool:
    import os

    return "KUBERNETES_SERVICE_HOST" in os.environ


def _message(exc) -> str:
    try:
        return json.loads(exc.body).get("message", "")
    except (TypeError, ValueError):
        return str(exc.body)[:300]


def _field_conflicts(exc) -> str:
    if exc.status != 409:
        return ""
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        return ""
    causes = (body.get("details") or {}).get("causes") or []
    fields = [
        f"{c.get('field')} ({c.get('message')})" for c in causes if c.get("reason") == "FieldManagerConflict"
    ]
    return "; ".join(fields)
