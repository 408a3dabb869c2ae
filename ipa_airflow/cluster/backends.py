"""What the reconciler needs from a cluster, and the errors it distinguishes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class ClusterError(RuntimeError):
    """The cluster refused or could not be reached; nothing further was applied."""


class FieldConflict(ClusterError):
    """Another field manager owns a field we would set (e.g. an HPA owns spec.replicas)."""


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


class ClusterBackend(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        """Server-side apply of our fields; returns the object as the server has it."""
        ...
