"""The simulated cluster with pods: what the simulator's servers follow.

`SimulatedBackend` (in memory) plus the part of Kubernetes' Deployment and ReplicaSet controllers a
simulation needs, run level-triggered whenever a Deployment is read or written, on an injected clock:
- pods are keyed by the pod template they were created from; a pod is ready `startup_s(deployment)`
  seconds after it was created (the variant's start-up time);
- a Deployment whose template changed gets all its new pods at once (the whole surge), and keeps the
  old pods serving until every new one is ready (make-before-break); old pods that never became ready
  are dropped at once;
- replicas follow `spec.replicas` within a template: new pods start up, removed ones go youngest first
  (not yet ready, then the most recently ready), as the ReplicaSet controller picks them;
- a rollout is complete (`availableReplicas`) when the current template's pods are all ready;
- the pods of a Deployment named in `hold` never become ready.
`on_change(key, created, deleted)` tells the simulator which pods came and went.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .simulated import SimulatedBackend

Key = tuple[str, str]  # (namespace, Deployment name)


@dataclass(eq=False)  # a pod is itself: compared by identity
class Pod:
    uid: int
    deployment: Key
    template: str  # hash of the pod template it was created from
    ready_at: float
    source: dict[str, Any]  # the Deployment as it was when the pod was created: what the pod runs


class PodCluster(SimulatedBackend):
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        startup_s: Callable[[dict[str, Any]], float],
        on_change: Callable[[Key, list[Pod], list[Pod]], None] | None = None,
    ):
        super().__init__(clock=clock, startup_s=0.0, sleep=lambda s: None)
        self.startup_of = startup_s
        self.on_change = on_change
        self.pods: dict[Key, list[Pod]] = {}
        self.warm = False  # pods created meanwhile are ready at once (a cluster already running)
        self._uid = itertools.count()
        self._hashes: dict[Key, tuple[int, str]] = {}  # per Deployment: (generation, template hash)

    def settle(self) -> None:
        """Run the controllers now (the simulator calls it when a pod becomes ready)."""
        for key, obj in list(self.objects.items()):
            self._progress(key, obj)

    def delete(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        super().delete(namespace, name, uid=uid)
        key = (namespace, name)
        if key not in self.objects:
            gone = self.pods.pop(key, [])
            self._hashes.pop(key, None)
            if gone and self.on_change:
                self.on_change(key, [], gone)

    # ---- the controllers ------------------------------------------------------------------------------
    def _template(self, key: Key, obj: dict[str, Any]) -> str:
        gen = obj["metadata"]["generation"]
        cached = self._hashes.get(key)
        if cached is None or cached[0] != gen:
            blob = json.dumps(obj["spec"].get("template", {}), sort_keys=True)
            cached = (gen, hashlib.sha256(blob.encode()).hexdigest()[:16])
            self._hashes[key] = cached
        return cached[1]

    def _progress(self, key, obj) -> None:
        now = self.clock()
        template = self._template(key, obj)
        want = int(obj["spec"].get("replicas", 1))
        pods = self.pods.setdefault(key, [])
        # Pods of an earlier template that never became ready are superseded: dropped at once.
        deleted = [p for p in pods if p.template != template and p.ready_at > now]
        current = [p for p in pods if p.template == template]
        created: list[Pod] = []
        if len(current) < want:
            if key[1] in self.hold:  # never ready (to test deadlines and rollback)
                ready_at = math.inf
            else:
                ready_at = now if self.warm else now + self.startup_of(obj)
            source = copy.deepcopy(obj)
            created = [
                Pod(next(self._uid), key, template, ready_at, source) for _ in range(want - len(current))
            ]
            current += created
        elif len(current) > want:
            youngest_first = sorted(current, key=lambda p: (p.ready_at, p.uid), reverse=True)
            deleted += youngest_first[: len(current) - want]
            current = youngest_first[len(current) - want :]
        if all(p.ready_at <= now for p in current):  # the rollout is done: the old pods go
            deleted += [p for p in pods if p.template != template and p not in deleted]
        if created or deleted:
            gone = {p.uid for p in deleted}
            self.pods[key] = [p for p in pods if p.uid not in gone] + created
            if self.on_change:
                self.on_change(key, created, deleted)
        ready = sum(p.ready_at <= now for p in current)
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": len(self.pods[key]),
            "updatedReplicas": len(current),
            # The current template's ready pods only, so a complete rollout means the new pods serve.
            "availableReplicas": ready,
            "readyReplicas": ready,
        }
