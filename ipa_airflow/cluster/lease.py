"""One writer per pipeline on Kubernetes: a coordination.k8s.io/v1 Lease, as Kubernetes' own controllers
elect a leader. The Kubernetes backend holds one while a reconcile runs (`KubernetesBackend.writer_lock`)."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .backends import ClusterBusy, ClusterError
from .desired import FIELD_MANAGER

if TYPE_CHECKING:
    from .kubernetes_backend import KubernetesBackend

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # Kubernetes' MicroTime, as Go's RFC3339Micro


class Stale(Exception):
    """A write raced another writer (409 on a resourceVersion precondition): read again and decide."""


class Lease:
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
        return None if obj is None else decode_json(obj, f"lease {self.namespace}/{self.name}")

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
                except Stale:
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
            except Stale:
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
        except (ClusterError, Stale):
            pass


def decode_json(resp, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(resp.data)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ClusterError(f"{what}: the API server's answer is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ClusterError(f"{what}: the API server's answer is not a JSON object")
    return obj
