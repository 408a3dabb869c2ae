"""Pipeline specs: the YAML a user writes, validated once, with errors that name the YAML path.

A pipeline is a chain of stages under one end-to-end latency SLA. Each stage has model variants; each
variant has one or more resource shapes (what one replica gets: CPU cores or a GPU), each backed by a
measured profile. Everything downstream (optimizer, reconciler, simulator) reads the derived indices
here instead of walking raw dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from .spec_settings import (  # noqa: F401 - re-exported: the spec's sections are part of its API
    PLAN_QUANTILES,
    AccuracyMethod,
    Adaptation,
    Baselines,
    DeploymentSettings,
    Limits,
    Objective,
    _Strict,
)
from .spec_variants import (  # noqa: F401 - re-exported: what a stage runs is part of the spec's API
    RESOURCE_KINDS,
    AccuracySource,
    Name,
    RegisteredModel,
    ResourceKind,
    Resources,
    Shape,
    Variant,
    VersionSelector,
)
from .userfiles import UserFileError, read_yaml
from .validation import (
    DNS_LABEL,
    FieldProblems,
    first_repeat,
    format_problems,
    problems_of,
)

SCHEMA_VERSION: Final = 1

# Every model below is strict (a boolean is not a number, "4" is not 4) and refuses .inf/.nan, so each
# number a spec holds is finite and of the type its field says. Bounds are per field.
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Weight = Annotated[float, Field(ge=0, le=1e6)]  # objective weights: larger ones only break solvers
Text = Annotated[str, Field(min_length=1)]
# Pipeline, stage and namespace names end up in Kubernetes object names: DNS-1123 labels.
DNS_LABEL_MAX = 63
DnsLabel = Annotated[str, Field(min_length=1, max_length=DNS_LABEL_MAX, pattern=DNS_LABEL)]


class SpecError(ValueError):
    """A spec that cannot be used. `problems` lists (yaml_path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid pipeline spec {source}:\n{format_problems(problems)}")


def deployment_name(pipeline: str, stage: str) -> str:
    """The Deployment that runs a stage: '<pipeline>-<stage>'. Never shortened: a shortened name could be
    another stage's, so a name that is not a DNS-1123 label of at most 63 characters is an error."""
    name = f"{pipeline}-{stage}"
    if len(name) > DNS_LABEL_MAX:
        raise ValueError(
            f"the Deployment name '{name}' (pipeline '{pipeline}' + '-' + stage '{stage}') is {len(name)} "
            f"characters; Kubernetes allows {DNS_LABEL_MAX}: shorten the pipeline's or the stage's name"
        )
    if not re.fullmatch(DNS_LABEL, name):
        raise ValueError(
            f"the Deployment name '{name}' is not a DNS-1123 label (lower case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return name


class Stage(_Strict):
    name: DnsLabel
    variants: list[Variant] = Field(default_factory=list)
    registered_model: RegisteredModel | None = None

    @model_validator(mode="after")
    def _has_variants(self) -> Stage:
        if not self.variants and self.registered_model is None:
            raise FieldProblems(
                [("variants", "list the stage's variants, or name a 'registered_model' to take them from")]
            )
        return self

    @model_validator(mode="after")
    def _unique_variants(self) -> Stage:
        repeat = first_repeat(v.name for v in self.variants)
        if repeat is not None:
            j, i = repeat
            name = self.variants[j].name
            raise FieldProblems(
                [
                    (
                        f"variants[{j}].name",
                        f"duplicate variant name '{name}' in stage '{self.name}' (also variants[{i}])",
                    )
                ]
            )
        return self


def _default_unit_costs() -> dict[ResourceKind, float]:
    return {"cpu": 1.0, "gpu": 1.0}


class PipelineSpec(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: DnsLabel
    description: str = ""
    namespace: DnsLabel = "default"
    sla_s: Annotated[float, Field(gt=0)] = Field(description="end-to-end latency SLA in seconds")
    latency_percentile: Literal["p50", "p95", "p99"] = "p99"
    objective: Objective = Field(default_factory=Objective)
    limits: Limits = Field(default_factory=Limits)
    cost_per_unit: dict[ResourceKind, NonNegative] = Field(default_factory=_default_unit_costs)
    profiles: list[Text] = Field(default_factory=list, description="profile files, relative to the spec")
    baselines: Baselines = Field(default_factory=Baselines)
    adaptation: Adaptation = Field(default_factory=Adaptation)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    stages: list[Stage] = Field(min_length=1)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # True == 1 would pass the Literal
            raise ValueError(f"schema_version must be {SCHEMA_VERSION}, not a boolean")
        return v

    def _cross_checks(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        # Each stage runs as the Deployment '<pipeline>-<stage>': the full name must be valid and unique,
        # or two stages would share one Deployment and one of them would never run.
        first_stage: dict[str, int] = {}
        rendered: dict[str, int] = {}
        for i, stage in enumerate(self.stages):
            where = f"stages[{i}].name"
            if stage.name in first_stage:
                problems.append(
                    (where, f"duplicate stage name '{stage.name}' (also stages[{first_stage[stage.name]}])")
                )
                continue
            first_stage[stage.name] = i
            try:
                name = deployment_name(self.name, stage.name)
            except ValueError as exc:
                problems.append((where, str(exc)))
                continue
            if name in rendered:
                problems.append(
                    (where, f"renders the Deployment name '{name}', as stages[{rendered[name]}] does")
                )
            rendered.setdefault(name, i)
        by_stage = {s.name: {v.name for v in s.variants} for s in self.stages}
        # A registry stage's variant names are known once MLflow is read: a pin that could name one of its
        # versions ('<prefix>-v<N>') is checked then.
        from_registry = {
            variant
            for st in self.stages
            if st.registered_model is not None
            for variant in [
                v for field in ("fa2_low", "fa2_high") for v in getattr(self.baselines, field).values()
            ]
            if re.fullmatch(re.escape(st.registered_model.prefix) + r"-v\d+", variant)
        }
        for field in ("fa2_low", "fa2_high"):
            for stage, variant in getattr(self.baselines, field).items():
                if stage not in by_stage:
                    problems.append(
                        (f"baselines.{field}", f"unknown stage '{stage}' (stages: {sorted(by_stage)})")
                    )
                elif variant not in by_stage[stage] and variant not in from_registry:
                    problems.append((f"baselines.{field}.{stage}", f"unknown variant '{variant}'"))
        rim = self.baselines.rim_replicas
        if isinstance(rim, dict):
            missing = set(by_stage) - set(rim)
            if missing:
                problems.append(("baselines.rim_replicas", f"no replica count for stages {sorted(missing)}"))
            unknown = set(rim) - set(by_stage)
            if unknown:
                problems.append(("baselines.rim_replicas", f"unknown stages {sorted(unknown)}"))
        counts = list(rim.values()) if isinstance(rim, dict) else [rim]
        if counts and max(counts) > self.limits.max_replicas:
            problems.append(
                (
                    "baselines.rim_replicas",
                    f"rim_replicas ({max(counts)}) is above limits.max_replicas ({self.limits.max_replicas})",
                )
            )
        shares = self.baselines.per_stage_shares
        if shares:
            if set(shares) != set(by_stage):
                problems.append(
                    (
                        "baselines.per_stage_shares",
                        f"give a share for every stage {sorted(by_stage)}, not {sorted(shares)}",
                    )
                )
            elif sum(shares.values()) > 1 + 1e-9:
                problems.append(
                    (
                        "baselines.per_stage_shares",
                        f"the shares add up to {sum(shares.values()):g}: the stages' shares of the latency "
                        "budget can add up to 1 at most",
                    )
                )
        if not [b for b in self.limits.batch_sizes if b <= self.limits.max_batch]:
            problems.append(("limits", "no batch size is within max_batch"))
        return problems

    @model_validator(mode="after")
    def _checked(self) -> PipelineSpec:
        problems = self._cross_checks()
        if problems:
            raise FieldProblems(problems)
        return self

    # Derived indices, computed once so no downstream module works them out again.
    @property
    def from_registry(self) -> bool:
        """Whether a stage takes variants from MLflow: then `pipelines.resolve` must run before planning."""
        return any(s.registered_model is not None for s in self.stages)

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def replica_cost(self, resources: Resources) -> float:
        """What one replica given `resources` costs, in the spec's cost units."""
        return resources.units * self.cost_per_unit.get(resources.kind, 1.0)

    @property
    def latency_budget_s(self) -> float:
        """The end-to-end latency a plan may use: the SLA less the headroom kept for queueing."""
        return self.sla_s * (1 - self.limits.latency_headroom)

    @property
    def batch_sizes(self) -> list[int]:
        return [b for b in self.limits.batch_sizes if b <= self.limits.max_batch]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"pipeline '{self.name}' has no stage '{name}'")

    def accuracy_scores(self, stage: Stage) -> dict[str, float]:
        """Per-variant accuracy used by the objective: a fraction in [0, 1], or the rank k/(V-1)."""
        if not self.objective.rank_normalize:
            return {v.name: v.accuracy / 100.0 for v in stage.variants}
        ordered = sorted(stage.variants, key=lambda v: v.accuracy)
        if len(ordered) == 1:
            return {ordered[0].name: 1.0}
        return {v.name: k / (len(ordered) - 1) for k, v in enumerate(ordered)}

    def profile_paths(self, base: Path) -> list[Path]:
        return [(base / p).resolve() for p in self.profiles]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> PipelineSpec:
        if not isinstance(data, Mapping):
            raise SpecError(source, [("", f"expected a mapping at the top level, got {type(data).__name__}")])
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise SpecError(source, problems_of(exc, data)) from None


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec file. Raises SpecError naming every bad field (and a repeated key's line)."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except UserFileError as exc:
        raise SpecError(str(path), [("", exc.problem)]) from None
    return PipelineSpec.from_dict(data if data is not None else {}, source=str(path))
