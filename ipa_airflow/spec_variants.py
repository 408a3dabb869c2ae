"""What a stage may run: a variant and its resource shapes, or the versions of an MLflow registered model
(how they are selected, where their accuracy comes from). `spec.py` holds the stage and the pipeline and
re-exports these."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from .spec_settings import Text, _Strict
from .validation import LABEL_VALUE, FieldProblems

# Variant and hardware names end up in label values and profile ids: a Kubernetes label value in lower case.
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]
ResourceKind = Literal["cpu", "gpu"]
RESOURCE_KINDS = ("cpu", "gpu")


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
