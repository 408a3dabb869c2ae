"""The Kubernetes backend: the official client, server-side apply under our own field manager.

Every request has a timeout, so an API server that accepts the connection and never answers is a
failure, not a hang. Transient failures (429, 5xx, timeouts, connection errors, optimistic-lock 409s)
are retried with exponential backoff; a 409 that names fields another manager owns is reported as
FieldConflict, not forced, unless the spec asks for it. One writer per pipeline: a coordination.k8s.io
Lease named after the pipeline, as Kubernetes' own controllers elect a leader.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .backends import ClusterBusy, ClusterError, ClusterUnreachable, FieldConflict
from .desired import FIELD_MANAGER

RETRY_STATUS = {409, 429, 500, 502, 503, 504}
LEASE_DURATION_S = 60
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class _Stale(Exception):
    """A write raced another writer (409 on a resourceVersion precondition): read again and decide."""


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
        what is missing; 409 -> _Stale when `stale_ok` (the caller re-reads)."""
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
                    raise _Stale(_message(exc)) from None
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
        return None if obj is None else _json(obj, f"deployment {namespace}/{name}")

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
            return _json(resp, what)
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
        except _Stale:
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
    ) -> Iterator[_Lease]:
        lease = _Lease(self, namespace, f"ipa-{pipeline}", holder)
        lease.acquire(wait_s, poll_s, clock or self.wall)
        try:
            yield lease
        finally:
            lease.release()


class _Lease:
    """A coordination.k8s.io/v1 Lease held while one reconcile runs.

    Whether another holder's lease has expired is judged as client-go's leader election does, on this
    process's own clock: the lease (holder, renewTime, resourceVersion) must stay unchanged for
    leaseDurationSeconds while we watch it, so clocks that disagree between hosts cannot hand a live
    lease to a second writer. A lease whose renewTime is older than its duration plus MAX_SKEW_S by our
    wall clock is taken at once (its writer died long ago)."""

    MAX_SKEW_S = 120.0

    def __init__(self, backend: KubernetesBackend, namespace: str, name: str, holder: str):
        self.b, self.namespace, self.name, self.holder = backend, namespace, name, holder
        self.renewed_at = -math.inf  # on the backend's clock, when our last write of the lease landed
        self._seen: tuple[tuple, float] | None = None  # (the other holder's record, when we first saw it)

    def _read(self) -> dict[str, Any] | None:
        obj = self.b._call(
            f"read lease {self.namespace}/{self.name}",
            self.b.coordination.read_namespaced_lease,
            self.name,
            self.namespace,
            missing_ok=True,
            _preload_content=False,
        )
        return None if obj is None else _json(obj, f"lease {self.namespace}/{self.name}")

    def _body(self, current: dict[str, Any] | None, holder: str, duration: int) -> dict[str, Any]:
        now = dt.datetime.fromtimestamp(self.b.wall(), dt.UTC).strftime(MICROTIME)
        spec = dict((current or {}).get("spec") or {})
        taking = spec.get("holderIdentity") != holder
        spec.update(holderIdentity=holder, leaseDurationSeconds=duration, renewTime=now)
        if taking:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current else 0)
        # Keep what others put on the Lease (labels, annotations, owners); set only what is ours.
        meta = dict((current or {}).get("metadata") or {})
        meta = {k: v for k, v in meta.items() if k not in ("managedFields", "uid", "creationTimestamp")}
        meta.update(name=self.name, namespace=self.namespace)
        meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": FIELD_MANAGER}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def _write(self, current: dict[str, Any] | None, holder: str, duration: int) -> None:
        body = self._body(current, holder, duration)
        what = f"write lease {self.namespace}/{self.name}"
        args: tuple[Any, ...]
        if current is None:
            fn, args = self.b.coordination.create_namespaced_lease, (self.namespace, body)
        else:
            fn, args = self.b.coordination.replace_namespaced_lease, (self.name, self.namespace, body)
        self.b._call(what, fn, *args, stale_ok=True, _preload_content=False)
        self.renewed_at = self.b.wall()

    def _holder(self, current: dict[str, Any] | None) -> str:
        return str(((current or {}).get("spec") or {}).get("holderIdentity") or "")

    def _held_by_other(self, current: dict[str, Any] | None) -> str | None:
        """Who else holds the lease, with how long ago it was renewed; None when it is free or expired."""
        other = self._holder(current)
        if not other or other == self.holder:
            return None
        spec = (current or {}).get("spec") or {}
        try:
            duration = float(spec["leaseDurationSeconds"])
            renewed = dt.datetime.strptime(spec["renewTime"], MICROTIME).replace(tzinfo=dt.UTC).timestamp()
        except (KeyError, TypeError, ValueError):
            return None  # a lease nobody can interpret is nobody's
        now = self.b.wall()
        if now - renewed > duration + self.MAX_SKEW_S:
            return None
        record = (
            other,
            spec.get("renewTime"),
            ((current or {}).get("metadata") or {}).get("resourceVersion"),
        )
        if self._seen is None or self._seen[0] != record:
            self._seen = (record, now)
        unchanged_for = now - self._seen[1]
        if unchanged_for >= duration:
            return None
        return (
            f"{other} (renewed {max(0.0, now - renewed):.0f} s ago by its clock; free within "
            f"{duration - unchanged_for:.0f} s if not renewed)"
        )

    def acquire(self, wait_s: float, poll_s: float, clock: Callable[[], float]) -> None:
        deadline = clock() + wait_s
        while True:
            current = self._read()
            other = self._held_by_other(current)
            if other is None:
                try:
                    self._write(current, self.holder, self.b.lease_duration_s)
                    return
                except _Stale:
                    continue  # another writer got there first (or our own lost answer): read again
            if clock() >= deadline:
                raise ClusterBusy(
                    f"pipeline lease {self.namespace}/{self.name} is held by {other}; waited {wait_s:g} s. "
                    "Another reconcile of this pipeline is running: let it finish (or, if its writer died, "
                    "run again once the lease has expired)."
                )
            self.b.sleep(poll_s)

    def renew(self) -> None:
        """Called before every write and while rollouts are waited for: renew once a third of the lease
        has passed; raise ClusterBusy if another writer holds it, or if our hold may have lapsed."""
        since = self.b.wall() - self.renewed_at
        if since < self.b.lease_duration_s / 3:
            return
        lapsed = since >= self.b.lease_duration_s
        for _ in range(3):  # a renew whose answer was lost comes back as a 409: read and try again
            current = self._read()
            holder = self._holder(current)
            if current is None or holder != self.holder:
                raise ClusterBusy(
                    f"lost the pipeline lease {self.namespace}/{self.name}"
                    + (f" to {holder}" if holder else "")
                    + f" (not renewed for {since:.0f} s)"
                )
            try:
                self._write(current, self.holder, self.b.lease_duration_s)
            except _Stale:
                continue
            if lapsed:  # still ours, but another writer could have taken and released it meanwhile
                raise ClusterBusy(
                    f"the pipeline lease {self.namespace}/{self.name} went {since:.0f} s without renewal "
                    f"(longer than its {self.b.lease_duration_s} s): another writer may have run meanwhile"
                )
            return
        raise ClusterBusy(
            f"could not renew the pipeline lease {self.namespace}/{self.name}: it keeps changing"
        )

    def release(self) -> None:
        """Best effort: on failure the lease simply expires."""
        try:
            current = self._read()
            if current is not None and self._holder(current) == self.holder:
                self._write(current, "", 1)
        except (ClusterError, _Stale):
            pass


def _json(resp, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(resp.data)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ClusterError(f"{what}: the API server's answer is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ClusterError(f"{what}: the API server's answer is not a JSON object")
    return obj


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
