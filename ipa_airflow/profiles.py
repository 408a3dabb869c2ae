"""Measured profiles of model variants: latency and throughput against batch size on one hardware shape.

A `Profile` holds the measured points of one (model, hardware, dtype, resources) and a fitted latency
curve that fills the batch sizes that were not measured. A `ProfileSet` is what the optimizer reads;
it loads from the JSON files shipped in `profiles/` (and, later, from MLflow).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

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
        # Weighted by 1/y so the fit minimises relative error: batch-1 latency matters as much as batch-64.
        design = np.stack([np.ones_like(b), b, b * b], axis=1) / y[:, None]
        coeffs, _ = nnls(design, np.ones_like(y))
        pred = np.stack([np.ones_like(b), b, b * b], axis=1) @ coeffs
        rel = np.abs(pred - y) / y
        return cls(
            coeffs=tuple(float(c) for c in coeffs),
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
        return f"{self.model}/{self.hardware}/{self.dtype}/{self.resources}"

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
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        points = tuple(sorted((BatchPoint(**p) for p in d["points"]), key=lambda p: p.batch))
        if not points:
            raise ProfileError(f"profile {d.get('model')}/{d.get('hardware')} has no measured points")
        return cls(
            model=d["model"],
            hardware=d["hardware"],
            dtype=d["dtype"],
            resources=d["resources"],
            task=d.get("task", "classification"),
            points=points,
            provenance=d.get("provenance", {}),
            accuracy_meta=d.get("accuracy_meta", {}),
        )


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
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileSet:
        profiles = [Profile.from_dict(p) for p in d.get("profiles", [])]
        return cls({p.id: p for p in profiles})

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> ProfileSet:
        merged: dict[str, Profile] = {}
        for path in paths:
            path = Path(path)
            try:
                data = json.loads(path.read_text())
            except OSError as exc:
                raise ProfileError(f"cannot read profile file {path}: {exc.strerror}") from None
            except json.JSONDecodeError as exc:
                raise ProfileError(f"profile file {path} is not valid JSON: {exc}") from None
            try:
                merged.update(cls.from_dict(data).profiles)
            except (KeyError, TypeError) as exc:
                raise ProfileError(f"profile file {path} is malformed: missing or bad field {exc}") from None
        return cls(merged)


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
        if key in meta and isinstance(meta[key], int | float) and not math.isnan(meta[key]):
            return float(meta[key])
    return None
