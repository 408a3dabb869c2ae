"""The Kubernetes backend: the official client, server-side apply under our own field manager.

Every request has a timeout, so an API server that accepts the connection and never answers is a
failure, not a hang. Transient failures (429, 5xx, timeouts, connection errors, optimistic-lock 409s)
are retried with exponential backoff; a 409 that names fields another manager owns is reported as
FieldConflict, not forced, unless the spec asks for it. One writer per pipeline: a coordination.k8s.io
Lease named after the pipeline, as Kubernetes' own controllers elect a leader.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .backends import ClusterError, ClusterUnreachable, FieldConflict
from .desired import FIELD_MANAGER
from .lease import Lease, Stale, decode_json

RETRY_STATUS = {409, 429, 500, 502, 503, 504}
LEASE_DURATION_S = 60


class KubernetesBackend:
    def __init__(
        self,
        api_client=None,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        request_timeout_s: tuple[float, float] = (5.0, 15.0),
        wall: Callable[[], float] = time.time,
        lease_duration_s: int = LEASE_DURATION_S,
    ):
        self._api_client = api_client
        _no_pool_retries(api_client)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.request_timeout_s = request_timeout_s  # (connect, read) for every request
        self.wall = wall
        self.lease_duration_s = lease_duration_s
        self._apps = None
        self._coordination = None

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
        except Exception as exc:  # the loader raises whatever the YAML held: say which file, not where
            where = kubeconfig or "the default kubeconfig (~/.kube/config or KUBECONFIG)"
            raise ClusterError(
                f"no usable Kubernetes credentials in {where}: {type(exc).__name__}: {exc}. "
                "Point --kubeconfig at a kubeconfig file (kubectl config view --raw shows yours)."
            ) from None
        return cls(client.ApiClient(cfg), **kwargs)

    @property
    def worst_case_s(self) -> float:
        """The longest one call can take before it fails: every attempt timing out, plus the backoffs."""
        connect, read = self.request_timeout_s
        return self.attempts * (connect + read) + self.backoff_s * (2 ** (self.attempts - 1) - 1)

    @property
    def apps(self):
        if self._apps is None:
            from kubernetes import client

            self._apps = client.AppsV1Api(self._api_client)
        return self._apps

    @property
    def coordination(self):
        if self._coordination is None:
            from kubernetes import client

            self._coordination = client.CoordinationV1Api(self._api_client)
        return self._coordination

    def _call(self, what: str, fn, *args, missing_ok: bool = False, stale_ok: bool = False, **kwargs):
        """One API call with timeouts and retries. 404 -> None when `missing_ok`, else an error that says
        what is missing; 409 -> Stale when `stale_ok` (the caller re-reads)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs["_request_timeout"] = self.request_timeout_s
        delay = self.backoff_s
        # Whether an attempt may have been carried out although it failed: no answer, or a 5xx (a 504
        # "may still be processing", an etcd timeout as 500). A write's caller must then restore it.
        maybe = False
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except ApiException as exc:
                if exc.status in (0, None):  # the client's own transport failure (e.g. TLS)
                    maybe = True
                    if attempt == self.attempts:
                        raise ClusterUnreachable(
                            f"{what}: cannot reach the Kubernetes API: {exc.reason}"
                        ) from None
                    self.sleep(delay)
                    delay *= 2
                    continue
                maybe = maybe or exc.status >= 500
                if exc.status == 404:
                    if missing_ok:
                        return None
                    raise (ClusterUnreachable if maybe else ClusterError)(
                        f"{what}: the API server answered 404 Not Found: {_message(exc)}. "
                        "Check that the spec's namespace exists (docker/k8s/namespace.yaml)."
                    ) from None
                conflict = _field_conflicts(exc)
                if conflict:
                    raise FieldConflict(
                        f"{what}: {conflict}. Another field manager owns these fields; set "
                        "deployment.force_conflicts to take them over."
                    ) from None
                if exc.status == 409 and stale_ok:
                    raise Stale(_message(exc)) from None
                if exc.status not in RETRY_STATUS or attempt == self.attempts:
                    error = ClusterUnreachable if maybe else ClusterError
                    raise error(
                        f"{what}: the API server answered {exc.status} {exc.reason}: {_message(exc)}"
                        + _hint(exc.status, args)
                    ) from None
            except (HTTPError, OSError) as exc:
                maybe = True
                if attempt == self.attempts:
                    raise ClusterUnreachable(
                        f"{what}: cannot reach the Kubernetes API after {self.attempts} attempts "
                        f"(each with a {self.request_timeout_s[1]:g} s timeout): {exc}"
                    ) from None
            self.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._call(
            f"read deployment {namespace}/{name}",
            self.apps.read_namespaced_deployment,
            name,
            namespace,
            missing_ok=True,
            _preload_content=False,
        )
        return None if obj is None else decode_json(obj, f"deployment {namespace}/{name}")

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
        what = f"apply deployment {meta['namespace']}/{meta['name']}"
        resp = self._call(
            what, self.apps.patch_namespaced_deployment, meta["name"], meta["namespace"], manifest, **kwargs
        )
        try:
            return decode_json(resp, what)
        except ClusterError as exc:  # the server took the write; only its answer is unreadable
            raise ClusterUnreachable(str(exc)) from None

    def delete(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call(
                f"delete deployment {namespace}/{name}",
                self.apps.delete_namespaced_deployment,
                name,
                namespace,
                body=body,
                missing_ok=True,
                stale_ok=True,
                _preload_content=False,
            )
        except Stale:
            raise ClusterError(
                f"deployment {namespace}/{name} was replaced by someone else (uid changed): not deleted"
            ) from None

    # ---- one writer per pipeline ------------------------------------------------------------------------
    @contextmanager
    def writer_lock(
        self,
        namespace: str,
        pipeline: str,
        *,
        holder: str,
        wait_s: float,
        poll_s: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> Iterator[Lease]:
        lease = Lease(self, namespace, f"ipa-{pipeline}", holder)
        lease.acquire(wait_s, poll_s, clock or self.wall)
        try:
            yield lease
        finally:
            lease.release()


def _no_pool_retries(api_client) -> None:
    """Our own retries (and their timeouts) are the only ones: urllib3's default of 3 more tries per
    request for GET, PUT and DELETE would multiply every timeout by four, unsaid."""
    from urllib3.util import Retry

    pool = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if pool is not None:
        pool.connection_pool_kw["retries"] = Retry(total=0, redirect=0, raise_on_status=False)
        pool.clear()


def _hint(status: int, args: tuple) -> str:
    if status == 403:
        namespace = next((a for a in args[1:2] if isinstance(a, str)), "the spec's namespace")
        return (
            f". The service account may lack a permission in namespace {namespace} "
            "(docker/k8s/reconciler-rbac.yaml grants it in one namespace), or the namespace does not exist"
        )
    return ""


def _in_cluster() -> bool:
    import os

    return "KUBERNETES_SERVICE_HOST" in os.environ


def _message(exc) -> str:
    try:
        return json.loads(exc.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return str(exc.body)[:300]


def _field_conflicts(exc) -> str:
    if exc.status != 409:
        return ""
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        return ""
    if not isinstance(body, dict):
        return ""
    causes = (body.get("details") or {}).get("causes") or []
    fields = [
        f"{c.get('field')} ({c.get('message')})" for c in causes if c.get("reason") == "FieldManagerConflict"
    ]
    return "; ".join(fields)
