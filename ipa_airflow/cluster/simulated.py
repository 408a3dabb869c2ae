"""The simulated cluster backend: Deployments in memory whose rollouts complete after a start-up delay on
an injected clock. Used by the demo and the simulator, and by the same reconcile tests as Kubernetes."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import ClusterError


class SimulatedBackend:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        startup_s: float = 10.0,
        hold: set[str] | None = None,
        state_file: str | Path | None = None,
    ):
        self.clock = clock
        self.startup_s = startup_s
        self.hold = hold or set()  # names whose rollouts never become available (to test deadlines)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._changed_at: dict[tuple[str, str], float] = {}
        self.applies: list[tuple[str, str, bool]] = []  # (namespace, name, dry_run), for inspection
        # With a state file the cluster outlives the process (the demo's DAG runs share it).
        self.state_file = Path(state_file) if state_file else None
        if self.state_file and self.state_file.exists():
            saved = json.loads(self.state_file.read_text())
            for item in saved["objects"]:
                key = (item["namespace"], item["name"])
                self.objects[key] = item["object"]
                self._changed_at[key] = item["changed_at"]

    def _save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        items = [
            {"namespace": k[0], "name": k[1], "object": v, "changed_at": self._changed_at.get(k, 0.0)}
            for k, v in sorted(self.objects.items())
        ]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"objects": items}, indent=1))
        tmp.replace(self.state_file)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        return [self.get(*k) for k in sorted(self.objects) if k[0] == namespace]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            return None
        self._progress(key, obj)
        return copy.deepcopy(obj)

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        meta = manifest.get("metadata", {})
        if not meta.get("name") or not meta.get("namespace"):
            raise ClusterError("a Deployment needs metadata.name and metadata.namespace")
        key = (meta["namespace"], meta["name"])
        self.applies.append((*key, dry_run))
        current = self.objects.get(key)
        new = copy.deepcopy(manifest)
        gen = (current or {}).get("metadata", {}).get("generation", 0)
        spec_changed = current is None or current.get("spec") != new.get("spec")
        new["metadata"]["generation"] = gen + 1 if spec_changed else gen
        new["status"] = copy.deepcopy((current or {}).get("status", {}))
        if dry_run:
            return new
        self.objects[key] = new
        if spec_changed:
            self._changed_at[key] = self.clock()
        self._progress(key, new)
        self._save()
        return copy.deepcopy(new)

    def _progress(self, key, obj) -> None:
        status = obj.setdefault("status", {})
        replicas = obj["spec"].get("replicas", 1)
        done = key[1] not in self.hold and self.clock() - self._changed_at.get(key, -1e18) >= self.startup_s
        if done:
            status.update(
                observedGeneration=obj["metadata"]["generation"],
                replicas=replicas,
                updatedReplicas=replicas,
                availableReplicas=replicas,
                readyReplicas=replicas,
            )
        else:
            # Make-before-break: the old pods keep serving while new ones start.
            status["observedGeneration"] = obj["metadata"]["generation"]
            status["updatedReplicas"] = 0


def simulated_cluster(state_file: str | Path | None = None, *, startup_s: float = 10.0) -> SimulatedBackend:
    """The simulated cluster that outlives a process: state under IPA_HOME unless a file is given."""
    from ..settings import load_settings

    return SimulatedBackend(
        state_file=state_file or load_settings().home / "cluster" / "simulated.json", startup_s=startup_s
    )
