"""Where a new model version is profiled: every shape the specs ask of its registered model (pure).

A spec asks for a registered model in two ways: a stage that takes its variants from it
(`registered_model.name`, on the stage's `shapes`), or a listed variant whose `model_uri` is one of its
versions (on that variant's shapes). Each distinct (hardware, dtype, resources) is one target: measured on
this Airflow worker when the hardware is the worker's own, else in a pod on that hardware's node pool.
Profiles are filed under the spec's hardware name, which is what the planner looks them up by.

A model no spec asks for is profiled as before: on the worker, at each configured thread count, fp32.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..spec import PipelineSpec, Shape

Where = Literal["worker", "pod"]
WHERES: tuple[Where, ...] = ("worker", "pod")
# What `ipa profile --dtype` measures; a spec's int8 shape needs a quantised model the profiler does not make.
MEASURED_DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ProfilingTarget:
    """One profile to measure: a model version on one hardware kind with what one replica gets."""

    model_uri: str  # models:/<name>/<version>
    hardware: str  # the spec's hardware name: the profile is filed under it
    dtype: str
    cpu: float | None  # cores of one replica (exactly one of cpu and gpu)
    gpu: int | None  # devices of one replica
    where: Where

    @property
    def resources(self) -> str:
        """The spec's resources key ('cpu=2', 'gpu=1'): what the profile is filed under."""
        return f"gpu={self.gpu:g}" if self.gpu is not None else f"cpu={self.cpu:g}"

    @property
    def device(self) -> str:
        return "cuda" if self.gpu is not None else "cpu"

    @property
    def threads(self) -> int:
        """CPU threads the profiler runs with: the replica's cores (1 on a GPU; only whole cores are
        targets, see `why_not_measurable`)."""
        return int(self.cpu) if self.cpu is not None else 1

    @property
    def label(self) -> str:
        """'video-classifier v3 on epyc cpu=2 fp32': the mapped task's name in the Airflow UI."""
        return f"{model_label(self.model_uri)} on {self.hardware} {self.resources} {self.dtype}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "hardware": self.hardware,
            "dtype": self.dtype,
            "cpu": self.cpu,
            "gpu": self.gpu,
            "where": self.where,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfilingTarget:
        where = data["where"]
        if where not in WHERES:
            raise ValueError(f"a profiling target runs on one of {list(WHERES)}, not {where!r}")
        cpu, gpu = data.get("cpu"), data.get("gpu")
        return cls(
            model_uri=str(data["model_uri"]),
            hardware=str(data["hardware"]),
            dtype=str(data["dtype"]),
            cpu=None if cpu is None else float(cpu),
            gpu=None if gpu is None else int(gpu),
            where=where,
        )

    def operator_kwargs(self) -> dict[str, Any]:
        """The mapped operator's arguments: IpaProfileOperator's on the worker, IpaProfilePodOperator's
        in a pod (plain values: they cross XCom)."""
        if self.where == "worker":
            return {
                "model_uri": self.model_uri,
                "hardware": self.hardware,
                "device": self.device,
                "threads": self.threads,
                "dtype": self.dtype,
            }
        return {
            "model_uri": self.model_uri,
            "hardware": self.hardware,
            "dtype": self.dtype,
            "cpu": self.cpu,
            "gpu": self.gpu,
        }


def model_label(model_uri: str) -> str:
    """'models:/video-classifier/3' -> 'video-classifier v3'; any other URI as it is."""
    m = re.fullmatch(r"models:/(.+)/(\d+)", model_uri)
    return f"{m[1]} v{m[2]}" if m else model_uri


def split_version_uri(model_uri: str) -> tuple[str, str]:
    """'models:/video-classifier/3' -> ('video-classifier', '3')."""
    m = re.fullmatch(r"models:/([^/@]+)/([^/]+)", model_uri)
    if not m:
        raise ValueError(f"'{model_uri}' is not a model version URI (models:/<name>/<version>)")
    return m[1], m[2]


def registered_name(model_uri: str) -> str | None:
    """The registered model a 'models:/<name>/<version>' or 'models:/<name>@<alias>' URI names."""
    m = re.fullmatch(r"models:/([^/@]+)(?:/[^/]*|@.*)", model_uri)
    return m[1] if m else None


def asked_shapes(name: str, specs: Sequence[PipelineSpec]) -> list[Shape]:
    """Every shape any spec asks of registered model `name`, in spec order (repeats included)."""
    shapes: list[Shape] = []
    for spec in specs:
        for stage in spec.stages:
            if stage.registered_model is not None and stage.registered_model.name == name:
                shapes += stage.registered_model.shapes
            for variant in stage.variants:
                if variant.model_uri and registered_name(variant.model_uri) == name:
                    shapes += variant.shapes
    return shapes


def why_not_measurable(shape: Shape) -> str | None:
    """Why `ipa profile` cannot measure `shape` so that the planner finds it; None when it can. The
    profiler files what it ran (whole threads, one GPU, a dtype it casts to), and a profile filed under
    other resources than the shape's never matches it."""
    res = shape.resources
    if shape.dtype not in MEASURED_DTYPES:
        return f"the profiler measures {', '.join(MEASURED_DTYPES)}, not {shape.dtype}"
    if res.gpu is not None and res.gpu != 1:
        return f"the profiler measures one GPU per replica, not {res.key}"
    if res.cpu is not None and res.cpu != int(res.cpu):
        return f"the profiler runs whole CPU threads, not {res.key}"
    return None


def _target(model_uri: str, shape: Shape, worker_hardware: str) -> ProfilingTarget:
    res = shape.resources
    return ProfilingTarget(
        model_uri=model_uri,
        hardware=shape.hardware,
        dtype=shape.dtype,
        cpu=None if res.cpu is None else float(res.cpu),
        gpu=res.gpu,
        where="worker" if shape.hardware == worker_hardware else "pod",
    )


def profiling_targets(
    name: str,
    version: str,
    specs: Sequence[PipelineSpec],
    *,
    worker_hardware: str,
    fallback_threads: Sequence[int],
) -> list[ProfilingTarget]:
    """The profiles to measure for version `version` of registered model `name`: one per distinct
    measurable shape the specs ask of it, in spec order; shapes the profiler cannot measure are left out
    (`unmeasurable_shapes` says which). No spec asking for the model: worker targets under
    `worker_hardware`, one per fallback thread count, fp32."""
    uri = f"models:/{name}/{version}"
    shapes = asked_shapes(name, specs)
    if not shapes:
        return [
            ProfilingTarget(uri, worker_hardware, "fp32", float(t), None, "worker")
            for t in dict.fromkeys(fallback_threads)
        ]
    found: dict[tuple[str, str, str], ProfilingTarget] = {}
    for shape in shapes:
        if why_not_measurable(shape) is None:
            found.setdefault(
                (shape.hardware, shape.dtype, shape.resources.key), _target(uri, shape, worker_hardware)
            )
    return list(found.values())


def unmeasurable_shapes(name: str, specs: Sequence[PipelineSpec]) -> list[str]:
    """The shapes asked of `name` that `profiling_targets` leaves out, each with why (for the task log)."""
    seen: dict[str, str] = {}
    for shape in asked_shapes(name, specs):
        why = why_not_measurable(shape)
        if why is not None:
            seen.setdefault(f"{shape.hardware} {shape.resources.key} {shape.dtype}", why)
    return [f"{what}: {why}" for what, why in seen.items()]
