"""Plans: what the optimizer decided for one pipeline at one load. Plain, serialisable values.

A plan crosses process boundaries (Airflow XCom, files, MLflow), so it is a frozen dataclass with
`to_dict`/`from_dict` and a schema version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StagePlan:
    stage: str
    variant: str
    hardware: str
    resources: str  # per replica: 'cpu=2', 'gpu=1'
    dtype: str
    batch: int
    replicas: int
    latency_s: float  # one batch, at the spec's percentile
    queue_s: float  # batch-filling time at the planned load
    throughput_rps: float  # one replica
    capacity_rps: float  # all replicas
    accuracy: float  # the score the objective used
    cost: float

    @property
    def config_key(self) -> tuple:
        """What a deployment must change for: everything but the derived numbers."""
        return (
            self.stage,
            self.variant,
            self.hardware,
            self.resources,
            self.dtype,
            self.batch,
            self.replicas,
        )


def config_id(pipeline: str, config: Sequence[Sequence[Any]]) -> str:
    """The id of a configuration: one `StagePlan.config_key` per stage, in stage order."""
    blob = json.dumps([pipeline, [list(c) for c in config]])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Plan:
    pipeline: str
    policy: str
    load_rps: float
    sla_s: float
    feasible: bool
    stages: tuple[StagePlan, ...]
    accuracy: float
    cost: float
    objective: float
    latency_s: float
    terms: Mapping[str, float]  # the objective's parts: alpha*accuracy, beta*cost, gamma*batch
    binding: tuple[str, ...]  # constraints that bind (or, when infeasible, that cannot be met)
    solver: str
    status: str
    solve_time_s: float
    message: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def plan_id(self) -> str:
        """Stable id of the configuration (not of the numbers around it): equal plans, equal ids."""
        return config_id(self.pipeline, [s.config_key for s in self.stages])

    def stage(self, name: str) -> StagePlan:
        for s in self.stages:
            if s.stage == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        d["terms"] = dict(self.terms)
        d["binding"] = list(self.binding)
        d["extra"] = dict(self.extra)
        d["plan_id"] = self.plan_id
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        version = d.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"plan schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        d = dict(d)
        d.pop("plan_id", None)
        d["stages"] = tuple(StagePlan(**s) for s in d["stages"])
        d["binding"] = tuple(d.get("binding", ()))
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))
