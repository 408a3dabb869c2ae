"""Measured profiles of model variants: latency and throughput against batch size on one hardware shape.

A `Profile` holds the measured points of one (model, hardware, dtype, resources) and a fitted latency
curve that fills the batch sizes that were not measured. A `ProfileSet` is what the optimizer reads;
it loads from the JSON files shipped in `profiles/` (and, later, from MLflow).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from .userfiles import UserFileError, read_json
from .validation import RESOURCES_KEY, FieldProblems, first_repeat, problems_of

SCHEMA_VERSION = 1
PERCENTILES = ("p50", "p95", "p99", "mean")


class ProfileError(LookupError):
    """A profile is missing or unusable; the message names what and how to get it."""


@dataclass(frozen=True)
class BatchPoint:
    """One measured batch size: latency of one batch (ms) and the throughput of one replica (req/s)."""

    batch: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    cv: float | None = None  # coefficient of variation of the timed calls
    peak_memory_mb: float | None = None  # GPU memory on CUDA, resident set size on CPU

    def latency_ms(self, percentile: str) -> float:
        return float(getattr(self, f"{percentile}_ms"))


@dataclass(frozen=True)
class LatencyCurve:
    """latency(b) = c0 + c1*b + c2*b^2 with non-negative coefficients, so it never falls as b grows."""

    coeffs: tuple[float, float, float]
    max_rel_error: float
    rmse_ms: float

    def __call__(self, batch: float) -> float:
        c0, c1, c2 = self.coeffs
        return c0 + c1 * batch + c2 * batch * batch

    @classmethod
    def fit(cls, batches: Iterable[int], latencies_ms: Iterable[float]) -> LatencyCurve:
        b = np.asarray(list(batches), dtype=float)
        y = np.asarray(list(latencies_ms), dtype=float)
        if len(b) == 0:
            raise ProfileError("cannot fit a latency curve to no points")
        from scipy.optimize import nnls  # here, not at the top: scipy takes ~0.4 s to import (`ipa --help`)

        # Weighted by 1/y so the fit minimises relative error: batch-1 latency matters as much as batch-64.
        design = np.stack([np.ones_like(b), b, b * b], axis=1) / y[:, None]
        coeffs, _ = nnls(design, np.ones_like(y))
        pred = np.stack([np.ones_like(b), b, b * b], axis=1) @ coeffs
        rel = np.abs(pred - y) / y
        return cls(
            coeffs=(float(coeffs[0]), float(coeffs[1]), float(coeffs[2])),
            max_rel_error=float(rel.max()),
            rmse_ms=float(np.sqrt(np.mean((pred - y) ** 2))),
        )


@dataclass(frozen=True)
class Profile:
    model: str
    hardware: str
    dtype: str
    resources: str  # canonical 'cpu=2' / 'gpu=1', as Resources.key
    points: tuple[BatchPoint, ...]
    task: str = "classification"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    accuracy_meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """'model/hardware/dtype/resources', the id a spec's shape names by default. A served profile
        (measured through the model server) ends in '/served': it never stands in for the in-process
        profile of the same shape, and a shape plans on it only by naming it (`profile:`)."""
        return profile_id(self.model, self.hardware, self.dtype, self.resources, self.provenance)

    @cached_property
    def _by_batch(self) -> dict[int, BatchPoint]:
        return {p.batch: p for p in self.points}

    @property
    def measured_batches(self) -> list[int]:
        return sorted(self._by_batch)

    @cached_property
    def _curves(self) -> dict[str, LatencyCurve]:
        batches = self.measured_batches
        return {
            pct: LatencyCurve.fit(batches, [self._by_batch[b].latency_ms(pct) for b in batches])
            for pct in PERCENTILES
        }

    def curve(self, percentile: str = "p99") -> LatencyCurve:
        return self._curves[percentile]

    def latency_ms(self, batch: int, percentile: str = "p99") -> float:
        """Measured latency where measured, else the fitted curve (never below the measured neighbours)."""
        point = self._by_batch.get(batch)
        if point is not None:
            return point.latency_ms(percentile)
        fitted = self.curve(percentile)(batch)
        below = [self._by_batch[b].latency_ms(percentile) for b in self.measured_batches if b < batch]
        return max([fitted, *below])

    def throughput_rps(self, batch: int) -> float:
        """Requests per second one replica sustains serving batches of this size back to back."""
        point = self._by_batch.get(batch)
        if point is not None:
            return point.throughput_rps
        return batch / (self.latency_ms(batch, "mean") / 1000.0)

    def is_extrapolated(self, batch: int) -> bool:
        return batch > max(self._by_batch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "hardware": self.hardware,
            "dtype": self.dtype,
            "resources": self.resources,
            "task": self.task,
            "points": [asdict(p) for p in self.points],
            "provenance": dict(self.provenance),
            "accuracy_meta": dict(self.accuracy_meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "profile") -> Profile:
        """A profile from its dict (a file's entry, an MLflow artifact). Raises ProfileError naming every
        bad field: a latency or throughput that is not a finite number above 0, a batch that is not a
        whole number, percentiles out of order, a batch measured twice."""
        try:
            checked = _ProfileIn.model_validate(d)
        except ValidationError as exc:
            raise ProfileError(_describe(source, problems_of(exc, d, what=_FIELDS_DOC), d)) from None
        return checked.to_profile()


@dataclass(frozen=True)
class ProfileSet:
    """Profiles by id. `get` fails with a message that says which profile is missing and what exists."""

    profiles: Mapping[str, Profile]

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.profiles.values())

    def __len__(self) -> int:
        return len(self.profiles)

    def get(self, profile_id: str, *, wanted_by: str = "") -> Profile:
        try:
            return self.profiles[profile_id]
        except KeyError:
            model = profile_id.split("/", 1)[0]
            near = sorted(pid for pid in self.profiles if pid.split("/", 1)[0] == model)
            who = f" (needed by {wanted_by})" if wanted_by else ""
            hint = f"; profiles of '{model}' that exist: {', '.join(near)}" if near else ""
            raise ProfileError(
                f"no profile '{profile_id}'{who}{hint}. Profile it with `ipa profile` or add its file "
                "to the spec's 'profiles' list."
            ) from None

    def merged(self, other: ProfileSet) -> ProfileSet:
        return ProfileSet({**self.profiles, **other.profiles})

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "profiles": [p.to_dict() for p in self.profiles.values()]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "profile file") -> ProfileSet:
        """A profile file's content. Raises ProfileError naming every bad field (profile, point, field)."""
        if not isinstance(d, Mapping):
            raise ProfileError(
                f'{source}: expected a JSON object {{"schema_version": 1, "profiles": [...]}}, '
                f"got {type(d).__name__}"
            )
        if "points" in d and "profiles" not in d:
            raise ProfileError(
                f"{source} holds one profile, not a profile file: wrap it as "
                '{"schema_version": 1, "profiles": [<the profile>]}'
            )
        try:
            checked = _ProfileFileIn.model_validate(d)
        except ValidationError as exc:
            raise ProfileError(_describe(source, problems_of(exc, d, what=_FIELDS_DOC), d)) from None
        profiles = [p.to_profile() for p in checked.profiles]
        return cls({p.id: p for p in profiles})

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> ProfileSet:
        """The profiles of several files. The same profile id in two files with different measurements is
        refused (which one would win depends on the order the files are listed in)."""
        merged: dict[str, Profile] = {}
        origin: dict[str, Path] = {}
        for path in paths:
            path = Path(path)
            try:
                data = read_json(path)
            except UserFileError as exc:
                raise ProfileError(f"profile file {exc}") from None
            for pid, profile in cls.from_dict(data, source=f"profile file {path}").profiles.items():
                if pid in merged and merged[pid] != profile:
                    raise ProfileError(
                        f"profile '{pid}' is in both {origin[pid]} and {path}, with different measurements: "
                        "keep it in one file"
                    )
                merged[pid], origin[pid] = profile, path
        return cls(merged)


def profile_id(model: str, hardware: str, dtype: str, resources: str, provenance: Mapping[str, Any]) -> str:
    base = f"{model}/{hardware}/{dtype}/{resources}"
    return f"{base}/served" if provenance.get("method") == "served" else base


def import_reference_jsonl(path: str | Path, *, hardware: str, source: str) -> ProfileSet:
    """Convert a torchvision profile dump (one JSON object per model, dtype and batch) into a ProfileSet.

    The first line holds the environment; each later line one (model, dtype, threads, batch) cell.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    env = lines[0].get("env", {})
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in lines[1:]:
        cells.setdefault((row["model"], row["dtype"], int(row.get("threads", 0))), []).append(row)
    profiles: dict[str, Profile] = {}
    for (model, dtype, threads), rows in sorted(cells.items()):
        first = rows[0]
        on_gpu = first["device"] == "cuda"
        points = tuple(
            BatchPoint(
                batch=int(r["batch"]),
                p50_ms=r["p50_ms"],
                p95_ms=r["p95_ms"],
                p99_ms=r["p99_ms"],
                mean_ms=r["mean_ms"],
                throughput_rps=r["batch"] / (r["mean_ms"] / 1000.0),
            )
            for r in sorted(rows, key=lambda r: r["batch"])
        )
        provenance = {
            "source": source,
            "environment": env,
            "device": first["device"],
            "threads": threads,
            "input": first.get("input"),
            "iters": first.get("iters"),
            "method": "eager torchvision, random weights, inference_mode; latency of one batch after warm-up",
        }
        profile = Profile(
            model=model,
            hardware=hardware,
            dtype=dtype,
            resources="gpu=1" if on_gpu else f"cpu={threads:g}",
            task=first.get("task", "classification"),
            points=points,
            provenance=provenance,
            accuracy_meta=first.get("accuracy_meta", {}),
        )
        profiles[profile.id] = profile
    return ProfileSet(profiles)


def published_accuracy(profile: Profile) -> float | None:
    """The accuracy published with the model's weights (ImageNet acc@1 or COCO box mAP), in percent."""
    meta = profile.accuracy_meta
    for key in ("acc@1", "box_map"):
        value = meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


# ---- the profile file's schema: what from_dict accepts -------------------------------------------------
_FIELDS_DOC = "docs/spec.md#profile-files lists the fields"
_Positive = Annotated[float, Field(gt=0)]
_Text = Annotated[str, Field(min_length=1)]


class _In(BaseModel):
    # strict: a batch "1" or a latency `true` is refused, not converted; no NaN or infinity anywhere
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _PointIn(_In):
    batch: Annotated[StrictInt, Field(gt=0)]
    p50_ms: _Positive
    p95_ms: _Positive
    p99_ms: _Positive
    mean_ms: _Positive
    throughput_rps: _Positive
    cv: Annotated[float, Field(ge=0)] | None = None
    peak_memory_mb: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> _PointIn:
        if not self.p50_ms <= self.p95_ms <= self.p99_ms:
            raise FieldProblems(
                [
                    (
                        "",
                        f"p50 {self.p50_ms:g} ms, p95 {self.p95_ms:g} ms, p99 {self.p99_ms:g} ms: a "
                        "higher percentile cannot be faster (p50 <= p95 <= p99)",
                    )
                ]
            )
        return self


class _ProfileIn(_In):
    model: _Text
    hardware: _Text
    dtype: _Text
    resources: Annotated[str, Field(pattern=RESOURCES_KEY)]
    task: str = "classification"
    points: list[_PointIn] = Field(min_length=1)
    provenance: dict[str, Any] = Field(default_factory=dict)
    accuracy_meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _some_resources(cls, v: str) -> str:
        if float(v.partition("=")[2]) <= 0:
            raise ValueError(f"'{v}': a replica needs more than nothing")
        return v

    @model_validator(mode="after")
    def _each_batch_once(self) -> _ProfileIn:
        repeat = first_repeat(p.batch for p in self.points)
        if repeat is not None:
            j, i = repeat
            batch = self.points[j].batch
            raise FieldProblems([(f"points[{j}].batch", f"batch {batch} measured twice (also points[{i}])")])
        return self

    def to_profile(self) -> Profile:
        points = tuple(sorted((BatchPoint(**p.model_dump()) for p in self.points), key=lambda p: p.batch))
        return Profile(
            model=self.model,
            hardware=self.hardware,
            dtype=self.dtype,
            resources=self.resources,
            task=self.task,
            points=points,
            provenance=self.provenance,
            accuracy_meta=self.accuracy_meta,
        )


class _ProfileFileIn(_In):
    schema_version: Annotated[StrictInt, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    profiles: list[_ProfileIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_id_once(self) -> _ProfileFileIn:
        ids = [profile_id(p.model, p.hardware, p.dtype, p.resources, p.provenance) for p in self.profiles]
        repeat = first_repeat(ids)
        if repeat is not None:
            j, i = repeat
            raise FieldProblems([(f"profiles[{j}]", f"profile '{ids[j]}' given twice (also profiles[{i}])")])
        return self


def _describe(source: str, found: list[tuple[str, str]], data: Any) -> str:
    """The problems as lines, each profile named by its id beside its index:
    'profiles[3] (m/h/fp32/cpu=1).points[0].p99_ms: ...'."""
    lines = []
    for path, msg in found:
        match = re.match(r"profiles\[(\d+)\]", path)
        entries = data.get("profiles") if isinstance(data, Mapping) else None
        if match and isinstance(entries, list) and int(match.group(1)) < len(entries):
            entry = entries[int(match.group(1))]
            if isinstance(entry, Mapping):
                pid = "/".join(str(entry.get(k, "?")) for k in ("model", "hardware", "dtype", "resources"))
                path = f"{match.group(0)} ({pid}){path[match.end() :]}"
        lines.append(f"  {path or '<root>'}: {msg}")
    return f"{source} is malformed:\n" + "\n".join(lines)
