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
    BaseModel,
    ConfigDict,
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
)
from .userfiles import UserFileError, read_yaml
from .validation import (
    DNS_LABEL,
    LABEL_VALUE,
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
# Variant and hardware names end up in label values and profile ids: a Kubernetes label value in lower case.
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]
# Pipeline, stage and namespace names end up in Kubernetes object names: DNS-1123 labels.
DNS_LABEL_MAX = 63
DnsLabel = Annotated[str, Field(min_length=1, max_length=DNS_LABEL_MAX, pattern=DNS_LABEL)]

ResourceKind = Literal["cpu", "gpu"]
RESOURCE_KINDS = ("cpu", "gpu")


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Resources(_Strict):
    """What one replica is given. Exactly one of cpu (cores) or gpu (whole devices)."""

    # Bounds keep the canonical key ('cpu=0.5') and the rendered quantities free of exponents; a
    # thousandth of a core is Kubernetes' smallest CPU unit.
    cpu: Annotated[float, Field(ge=0.001, le=1024)] | None = None
    gpu: Annotated[StrictInt, Field(gt=0, le=64)] | None = None
    memory_gb: Annotated[float, Field(ge=0.001, le=65536)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Resources:
        if (self.cpu is None) == (self.gpu is None):
            raise ValueError("give exactly one of 'cpu' (cores) or 'gpu' (devices) per replica")
        return self

    @property
    def kind(self) -> ResourceKind:
        return "gpu" if self.gpu is not None else "cpu"

    @property
    def units(self) -> float:
        if self.gpu is not None:
            return float(self.gpu)
        assert self.cpu is not None  # _one_kind: exactly one of the two is set
        return float(self.cpu)

    @property
    def key(self) -> str:
        """Canonical text form, e.g. 'cpu=2' or 'gpu=1', used to match profiles."""
        return f"{self.kind}={self.units:g}"


class Shape(_Strict):
    """One way to run a replica of a variant: the hardware kind, what a replica gets, and its profile."""

    hardware: Name
    resources: Resources
    dtype: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    profile: Text | None = Field(
        default=None, description="profile id; default '<variant model>/<hardware>/<dtype>/<resources>'"
    )


class Variant(_Strict):
    name: Name
    accuracy: Annotated[float, Field(ge=0, le=100)] = Field(description="published accuracy, in percent")
    metric: Text = "accuracy"
    model: Text | None = Field(default=None, description="profile model name; defaults to the variant name")
    model_uri: Text | None = None
    image: Text | None = None
    startup_s: Annotated[float, Field(ge=0, le=86400)] = 10.0
    shapes: list[Shape] = Field(min_length=1)

    @field_validator("model_uri")
    @classmethod
    def _model_uri(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("models:/", "runs:/", "s3://", "gs://", "file:", "/")):
            raise ValueError("model_uri must look like 'models:/<name>/<version>' or an artifact URI")
        return v

    @property
    def profile_model(self) -> str:
        return self.model or self.name

    def profile_id(self, shape: Shape) -> str:
        return shape.profile or f"{self.profile_model}/{shape.hardware}/{shape.dtype}/{shape.resources.key}"


class VersionSelector(_Strict):
    """Which versions of a registered model are candidates: every version an alias names, every version
    with the tag, and the newest N (the union of what is given; at least one)."""

    aliases: list[Text] = Field(default_factory=list)
    tag: Annotated[str, Field(pattern=r"^[^=]+=.*$")] | None = Field(
        default=None, description="'key=value', e.g. 'ipa.candidate=true'"
    )
    newest: Annotated[StrictInt, Field(gt=0, le=100)] | None = None

    @model_validator(mode="after")
    def _something(self) -> VersionSelector:
        if not self.aliases and self.tag is None and self.newest is None:
            raise ValueError("give at least one of 'aliases', 'tag' or 'newest'")
        return self


class AccuracySource(_Strict):
    """Where a version's accuracy comes from: a tag of the version, or a metric of its source run (what
    `mlflow.evaluate` logged). `scale` says how the value is written: 'fraction' (0-1, MLflow's
    convention) or 'percent'."""

    tag: Text | None = None
    metric: Text | None = None
    scale: Literal["fraction", "percent"] = "fraction"

    @model_validator(mode="after")
    def _one_source(self) -> AccuracySource:
        if (self.tag is None) == (self.metric is None):
            raise ValueError("give exactly one of 'tag' (of the version) or 'metric' (of its source run)")
        return self

    @property
    def label(self) -> str:
        return f"tag '{self.tag}'" if self.tag is not None else f"metric '{self.metric}' of the source run"


class RegisteredModel(_Strict):
    """A stage's variants taken from an MLflow registered model: each selected version is a variant named
    '<prefix>-v<version>', run and profiled on `shapes`."""

    name: Text = Field(description="the registered model's name in MLflow")
    select: VersionSelector
    accuracy: AccuracySource
    shapes: list[Shape] = Field(min_length=1)
    startup_s: Annotated[float, Field(ge=0, le=86400)] = 10.0
    image: Text | None = None
    # Variant names end up in label values (63 characters), with '-v<version>' appended.
    variant_prefix: Annotated[str, Field(min_length=1, max_length=50, pattern=LABEL_VALUE)] | None = None

    @model_validator(mode="after")
    def _own_profiles(self) -> RegisteredModel:
        # Each version has its own profile ('<prefix>-v<N>/<hardware>/...'); one fixed id would give
        # every version the latencies of whichever was read last.
        for k, shape in enumerate(self.shapes):
            if shape.profile is not None:
                raise FieldProblems(
                    [
                        (
                            f"shapes[{k}].profile",
                            "each version is profiled on its own: leave 'profile' out here",
                        )
                    ]
                )
        return self

    @property
    def prefix(self) -> str:
        if self.variant_prefix:
            return self.variant_prefix
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:50].strip("-")
        return slug or "model"

    def variant_name(self, version: str) -> str:
        return f"{self.prefix}-v{version}"


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
