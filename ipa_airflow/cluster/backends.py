"""What the reconciler needs from a cluster, and the errors it distinguishes."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class ClusterError(RuntimeError):
    """The cluster refused or could not be reached; nothing further was applied."""


class FieldConflict(ClusterError):
    """Another field manager owns a field we would set (e.g. an HPA owns spec.replicas)."""


class ClusterUnreachable(ClusterError):
    """No answer (connection refused or reset, timeout): a write may or may not have landed."""


class ClusterBusy(ClusterError):
    """Another writer holds the pipeline's lock; nothing was applied."""


@dataclass(frozen=True)
class RolloutStatus:
    generation: int
    observed_generation: int
    replicas: int
    updated: int
    available: int

    @property
    def complete(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated >= self.replicas
            and self.available >= self.replicas
        )

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> RolloutStatus:
        status = d.get("status") or {}
        return cls(
            generation=int(d.get("metadata", {}).get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            replicas=int(d.get("spec", {}).get("replicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
        )


def writer_identity() -> str:
    """Who holds a pipeline's lock, readable in the error a second writer gets: host, pid, a nonce."""
    return f"{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:8]}"


class WriterLock(Protocol):
    def renew(self) -> None:
        """Keep the lock while a long rollout is waited for; raises ClusterBusy if it was lost."""
        ...


class ClusterBackend(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        """Server-side apply of our fields; returns the object as the server has it."""
        ...

    def delete(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Delete a Deployment (only the object with `uid`, when given); absent is not an error."""
        ...

    def writer_lock(
        self,
        namespace: str,
        pipeline: str,
        *,
        holder: str,
        wait_s: float,
        clock: Callable[[], float] | None = None,
    ) -> AbstractContextManager[WriterLock]:
        """One writer per pipeline: wait up to `wait_s` for another holder, then raise ClusterBusy."""
        ...
