"""Fleet specs: several pipelines planned together under one cluster quota (YAML, validated like a
pipeline spec, errors naming the file and the field).

    name: shop
    pipelines:
      - {spec: ../pipelines/video-cpu.yaml, weight: 2}
      - {spec: ../pipelines/paper/nlp.yaml}
    quota: {cpu: 96}

A quota key is a resource kind ('cpu' cores, 'gpu' devices) or a hardware name a shape gives ('h100',
'epyc'); a replica draws its units from every pool whose key matches it, so `{gpu: 16, h100: 8}` allows
16 GPUs of which at most 8 H100s. Every shape a pipeline may run must fall under some quota key: a kind
without a quota is an error, never unlimited, so a fleet plan cannot promise capacity nobody granted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import Field, ValidationError, model_validator

from ..pipelines import Pipeline, load_pipeline
from ..spec import DnsLabel, Name, SpecError, Text, _Strict
from ..userfiles import UserFileError, read_yaml
from ..validation import FieldProblems, first_repeat, format_problems, problems_of

SCHEMA_VERSION: Final = 1
FLEET_DOCS = "docs/fleet.md lists the fields"


class FleetError(ValueError):
    """A fleet spec that cannot be used. `problems` lists (yaml_path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid fleet spec {source}:\n{format_problems(problems)}")


class FleetPipeline(_Strict):
    spec: Text = Field(description="the pipeline's spec file, relative to the fleet file")
    # How much the pipeline's objective counts in the fleet's sum (its accuracy per unit of quota).
    weight: Annotated[float, Field(gt=0, le=1e6)] = 1.0


class FleetSpec(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: DnsLabel
    description: str = ""
    pipelines: list[FleetPipeline] = Field(min_length=1)
    # Units per pool: cores for 'cpu' and CPU hardware, devices for 'gpu' and GPU hardware.
    quota: dict[Name, Annotated[float, Field(ge=0, le=1e9)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_files(self) -> FleetSpec:
        repeat = first_repeat(p.spec for p in self.pipelines)
        if repeat is not None:
            j, i = repeat
            raise FieldProblems(
                [(f"pipelines[{j}].spec", f"'{self.pipelines[j].spec}' is pipelines[{i}] too")]
            )
        return self

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> FleetSpec:
        if not isinstance(data, Mapping):
            raise FleetError(
                source, [("", f"expected a mapping at the top level, got {type(data).__name__}")]
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise FleetError(source, problems_of(exc, data, what=FLEET_DOCS)) from None


@dataclass(frozen=True)
class FleetMember:
    pipeline: Pipeline
    weight: float

    @property
    def name(self) -> str:
        return self.pipeline.spec.name


@dataclass(frozen=True)
class Fleet:
    """A validated fleet: its spec, each pipeline loaded (spec and profiles), and the quota."""

    spec: FleetSpec
    source: Path
    members: tuple[FleetMember, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def quota(self) -> dict[str, float]:
        return dict(self.spec.quota)

    @property
    def pipeline_names(self) -> list[str]:
        return [m.name for m in self.members]

    def member(self, name: str) -> FleetMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(
            f"fleet '{self.name}' has no pipeline '{name}' (it has {', '.join(self.pipeline_names)})"
        )


def is_fleet_file(path: str | Path) -> bool:
    """Whether a YAML file is a fleet spec (it lists pipelines) rather than a pipeline spec (stages).
    A file that cannot be read is not one: the pipeline loader then reports what is wrong with it."""
    try:
        data = read_yaml(path)
    except (UserFileError, OSError):
        return False
    return isinstance(data, Mapping) and "pipelines" in data and "stages" not in data


def uncovered_shapes(pipeline: Pipeline, quota: Mapping[str, float]) -> list[str]:
    """What a pipeline may run that no quota key covers, one line each."""
    out = []
    for stage in pipeline.spec.stages:
        for variant in stage.variants:
            for shape in variant.shapes:
                kind = shape.resources.kind
                if kind not in quota and shape.hardware not in quota:
                    out.append(
                        f"stage '{stage.name}' variant '{variant.name}' runs on {shape.hardware} "
                        f"{shape.resources.key}: add a quota for '{kind}' or '{shape.hardware}'"
                    )
    return out


def unused_quota(members: Sequence[FleetMember], quota: Mapping[str, float]) -> list[tuple[str, str]]:
    """Quota keys no shape of any pipeline matches: a misspelt key would otherwise limit nothing."""
    names = {
        name
        for m in members
        for stage in m.pipeline.spec.stages
        for variant in stage.variants
        for shape in variant.shapes
        for name in (shape.resources.kind, shape.hardware)
    }
    return [
        (
            f"quota.{key}",
            f"no pipeline of the fleet runs on '{key}' (their shapes' kinds and hardware: "
            f"{', '.join(sorted(names))}): fix its spelling or remove it",
        )
        for key in quota
        if key not in names
    ]


def load_fleet(path: str | Path, *, registry=None, runtime: str | None = None) -> Fleet:
    """Read and validate a fleet spec and every pipeline it lists. Raises FleetError naming each problem:
    a bad field, a pipeline spec that does not load, a repeated pipeline name, a shape no quota covers.
    `registry` and `runtime` go to each pipeline's `load_pipeline`."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except UserFileError as exc:
        raise FleetError(str(path), [("", exc.problem)]) from None
    spec = FleetSpec.from_dict(data if data is not None else {}, source=str(path))
    problems: list[tuple[str, str]] = []
    members: list[FleetMember] = []
    first: dict[str, int] = {}
    for i, entry in enumerate(spec.pipelines):
        where = f"pipelines[{i}].spec"
        spec_path = path.parent / entry.spec
        if not spec_path.is_file():
            problems.append((where, f"no file {spec_path} (the path is relative to the fleet file)"))
            continue
        try:
            pipeline = load_pipeline(spec_path, registry=registry, runtime=runtime)
        except SpecError as exc:
            problems.append((where, str(exc).replace("\n", " ")))
            continue
        name = pipeline.spec.name
        if name in first:
            problems.append(
                (where, f"pipeline '{name}' is pipelines[{first[name]}] too: names must be unique")
            )
            continue
        first[name] = i
        problems += [(where, line) for line in uncovered_shapes(pipeline, spec.quota)]
        members.append(FleetMember(pipeline, entry.weight))
    if members and not problems:
        problems += unused_quota(members, spec.quota)
    if problems:
        raise FleetError(str(path), problems)
    return Fleet(spec, path, tuple(members))
