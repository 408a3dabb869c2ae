"""Plans: what the optimizer decided for one pipeline at one load. Plain, serialisable values.

A plan crosses process boundaries (Airflow XCom, files, MLflow), so it is a frozen dataclass with
`to_dict`/`from_dict` and a schema version. `from_dict` checks what it reads (a plan file can be edited
by hand): every field present and of its type, every figure finite, batch and replicas whole and >= 1.
`check_plan_fits_spec` then checks that each stage runs something the spec offers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .userfiles import UserFileError, parse_json, read_json
from .validation import RESOURCES_KEY, format_problems, problems_of

if TYPE_CHECKING:
    from .spec import PipelineSpec

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
    def from_dict(cls, d: Mapping[str, Any], source: str = "plan") -> Plan:
        """A plan from its dict (a file, an XCom). Raises ValueError naming every bad field."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: expected a JSON object (a plan written by `ipa plan --out`)")
        version = d.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise ValueError(
                f"{source}: plan schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
            )
        try:
            checked = _PlanIn.model_validate(d)
        except ValidationError as exc:
            found = problems_of(exc, d, what="docs/spec.md#plan-files lists the fields")
            raise ValueError(f"{source} is not a valid plan:\n{format_problems(found)}") from None
        return checked.to_plan()

    def to_json(self) -> str:
        # Never write NaN/Infinity: it is not JSON, and no plan with such a figure can be applied.
        d = self.to_dict()
        bad = _non_finite(d)
        if bad:
            raise ValueError(
                f"plan {self.plan_id} for {self.load_rps:g} req/s has figures that are not finite "
                f"({', '.join(bad)}): it cannot be written or applied"
            )
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> Plan:
        try:
            data = parse_json(text, source)
        except UserFileError as exc:
            raise ValueError(str(exc)) from None
        return cls.from_dict(data, source=source)


def _non_finite(node: Any, path: str = "") -> list[str]:
    if isinstance(node, float):
        return [] if math.isfinite(node) else [f"{path}={node}"]
    if isinstance(node, Mapping):
        return [b for k, v in node.items() for b in _non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list | tuple):
        return [b for i, v in enumerate(node) for b in _non_finite(v, f"{path}[{i}]")]
    return []


def load_plan(path: str | Path, spec: PipelineSpec | None = None) -> Plan:
    """Read a plan file (as `ipa plan --out` writes it). Raises ValueError naming the file and, for a bad
    plan, every bad field: missing or unreadable file, not JSON, wrong schema; with `spec`, also a plan
    that does not fit it (check_plan_fits_spec)."""
    path = Path(path)
    try:
        data = read_json(path)
    except UserFileError as exc:
        raise ValueError(f"plan file {exc}") from None
    plan = Plan.from_dict(data, source=f"plan file {path}")
    if spec is not None:
        try:
            check_plan_fits_spec(plan, spec)
        except ValueError as exc:
            raise ValueError(f"plan file {path}: {exc}") from None
    return plan


def check_plan_fits_spec(plan: Plan, spec: PipelineSpec) -> None:
    """Refuse a plan that asks for something the spec does not offer: another pipeline, stages missing,
    repeated or out of order, a variant, shape (hardware, resources, dtype) or batch size the stage does
    not list, a batch-filling time over the SLA, more replicas than limits.max_replicas, a cost over
    limits.max_cost. Raises ValueError
    naming each stage and field, before anything is rendered or applied."""
    problems: list[str] = []
    if plan.pipeline != spec.name:
        raise ValueError(f"plan is for pipeline '{plan.pipeline}', the spec is '{spec.name}'")
    names = [s.stage for s in plan.stages]
    if names != spec.stage_names:
        problems.append(f"the plan's stages {names} are not the spec's {spec.stage_names} (in that order)")
    cost = 0.0
    for i, s in enumerate(plan.stages):
        where = f"stages[{i}] ({s.stage})"
        try:
            stage = spec.stage(s.stage)
        except KeyError:
            continue  # reported above
        variant = next((v for v in stage.variants if v.name == s.variant), None)
        if variant is None:
            offered = [v.name for v in stage.variants]
            problems.append(f"{where}.variant: '{s.variant}' is not one of the stage's variants {offered}")
            continue
        shape = next(
            (
                sh
                for sh in variant.shapes
                if (sh.hardware, sh.resources.key, sh.dtype) == (s.hardware, s.resources, s.dtype)
            ),
            None,
        )
        if shape is None:
            offered = [f"{sh.hardware} {sh.resources.key} {sh.dtype}" for sh in variant.shapes]
            problems.append(
                f"{where}: shape '{s.hardware} {s.resources} {s.dtype}' (hardware, resources, dtype) is not "
                f"one of variant '{s.variant}'s shapes {offered}"
            )
        else:
            cost += s.replicas * spec.replica_cost(shape.resources)
        if s.batch not in spec.batch_sizes:
            problems.append(
                f"{where}.batch: {s.batch} is not one of the spec's batch sizes {spec.batch_sizes}"
            )
        if s.queue_s > spec.sla_s:
            # rendered as the model server's MLSERVER_MODEL_MAX_BATCH_TIME: requests would wait that long
            problems.append(
                f"{where}.queue_s: {s.queue_s:g} s of batch filling is over the SLA ({spec.sla_s:g} s)"
            )
        if s.replicas > spec.limits.max_replicas:
            problems.append(
                f"{where}.replicas: {s.replicas} is over limits.max_replicas ({spec.limits.max_replicas})"
            )
    if spec.limits.max_cost is not None and cost > spec.limits.max_cost + 1e-9:
        problems.append(
            f"its stages cost {cost:g} (replicas x cost_per_unit), over limits.max_cost "
            f"({spec.limits.max_cost:g})"
        )
    if problems:
        raise ValueError(
            "plan does not fit the spec: " + "; ".join(problems) + ". Plan again with `ipa plan`."
        )


# ---- what from_dict accepts (a field added to Plan or StagePlan is added here too; a test checks) -------
_NonNegative = Annotated[float, Field(ge=0)]
_Text = Annotated[str, Field(min_length=1)]


class _In(BaseModel):
    # strict: "4" is not 4 and true is not 1; no NaN or infinity; no unknown keys
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _StagePlanIn(_In):
    stage: _Text
    variant: _Text
    hardware: _Text
    resources: Annotated[str, Field(pattern=RESOURCES_KEY)]
    dtype: _Text
    batch: Annotated[StrictInt, Field(ge=1)]
    replicas: Annotated[StrictInt, Field(ge=1)]  # a stage is never scaled to zero
    latency_s: _NonNegative
    queue_s: _NonNegative
    throughput_rps: _NonNegative
    capacity_rps: _NonNegative
    accuracy: _NonNegative
    cost: _NonNegative


class _PlanIn(_In):
    pipeline: _Text
    policy: _Text
    load_rps: _NonNegative
    sla_s: Annotated[float, Field(gt=0)]
    feasible: bool
    stages: list[_StagePlanIn] = Field(min_length=1)
    accuracy: _NonNegative
    cost: _NonNegative
    objective: float
    latency_s: _NonNegative
    terms: dict[str, float]
    binding: list[str] = Field(default_factory=list)
    solver: str
    status: str
    solve_time_s: _NonNegative
    message: str = ""
    schema_version: StrictInt = SCHEMA_VERSION
    extra: dict[str, Any] = Field(default_factory=dict)
    plan_id: str | None = None  # derived from the stages; recomputed, never trusted

    def to_plan(self) -> Plan:
        d = self.model_dump(exclude={"plan_id", "stages", "binding"})
        stages = tuple(StagePlan(**s.model_dump()) for s in self.stages)
        return Plan(**d, stages=stages, binding=tuple(self.binding))
