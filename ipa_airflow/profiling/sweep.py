"""A profiling sweep: one model at a list of batch sizes on one device, summarised as a Profile.

`sweep()` is the measurement loop; `profile_zoo` and `profile_registered` only differ in how they get
a runnable model and what they record about it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..profiles import BatchPoint, Profile
from ..registry.keys import ProfileKey, runtime_of
from . import torch_runner  # by module: a test that patches it must not leave its patch here
from .timing import Timing, TimingSettings, measure
from .torch_runner import PeakMemory, environment


@dataclass(frozen=True)
class SweepRequest:
    hardware: str  # the name specs use for this hardware kind, e.g. 'h100' or 'epyc'
    batch_sizes: tuple[int, ...]
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1  # CPU threads = cores one replica is charged for
    dtype: str = "fp32"


@dataclass(frozen=True)
class SweepResult:
    profile: Profile
    key: ProfileKey
    timings: tuple[Timing, ...]
    wall_s: float


def sweep(
    request: SweepRequest,
    runner_for_batch: Callable[[int, str, str], Callable[[], None]],
    *,
    model: str,
    model_ref: str,
    task: str,
    input_desc: str,
    accuracy_meta: dict[str, Any],
    settings: TimingSettings | None = None,
    on_cell: Callable[[Timing], None] | None = None,
) -> SweepResult:
    import torch

    t0 = time.perf_counter()
    device = torch_runner.resolve_device(request.device)
    if device == "cpu":
        torch.set_num_threads(request.threads)
    memory = PeakMemory(device)
    timings, points = [], []
    for b in sorted(request.batch_sizes):
        run = runner_for_batch(b, device, request.dtype)
        memory.reset()
        timing = measure(run, b, settings or TimingSettings())
        timings.append(timing)
        points.append(
            BatchPoint(
                b,
                timing.p50_ms,
                timing.p95_ms,
                timing.p99_ms,
                timing.mean_ms,
                timing.throughput_rps,
                cv=round(timing.cv, 5),
                peak_memory_mb=round(memory.read_mb(), 1),
            )
        )
        if on_cell:
            on_cell(timing)
    env = environment(device, request.threads if device == "cpu" else 0, request.dtype)
    resources = f"cpu={request.threads:g}" if device == "cpu" else "gpu=1"
    profile = Profile(
        model=model,
        hardware=request.hardware,
        dtype=request.dtype,
        resources=resources,
        task=task,
        points=tuple(points),
        provenance={
            "source": "ipa profile",
            "model_ref": model_ref,
            "environment": env,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "input": input_desc,
            "method": "eval + inference_mode; warm-up until timings settle, then timed calls of one batch "
            "with the device synchronised; cells with CV over the limit measured again",
            "iters": {str(t.batch): len(t.samples_ms) for t in timings},
            "warmup_calls": {str(t.batch): t.warmup_calls for t in timings},
            "remeasured": [t.batch for t in timings if t.remeasured],
        },
        accuracy_meta=accuracy_meta,
    )
    key = ProfileKey(model_ref, request.hardware, request.dtype, resources, runtime_of(env))
    return SweepResult(profile, key, tuple(timings), time.perf_counter() - t0)


def profile_zoo(name: str, request: SweepRequest, **kwargs) -> SweepResult:
    from .torch_runner import batch_runner
    from .zoo import build, zoo_model

    zm = zoo_model(name)
    module = build(name)
    return sweep(
        request,
        lambda b, device, dtype: batch_runner(module, zm.task, zm.input_size, b, device, dtype),
        model=name,
        model_ref=f"zoo:{name}",
        task=zm.task,
        input_desc=zm.input_desc,
        accuracy_meta={
            "metric": zm.metric,
            "accuracy": zm.accuracy,
            "weights": zm.weights,
            "accuracy_source": zm.accuracy_source,
        },
        **kwargs,
    )


def profile_registered(
    model_ref: str, name: str, request: SweepRequest, *, tracking_uri: str | None = None, **kwargs
) -> SweepResult:
    """Profile a registered model version; `model_ref` is the resolved 'models:/name/version', loaded from
    the MLflow at `tracking_uri` (default: MLflow's own setting)."""
    from .mlflow_models import load_model

    loaded = load_model(model_ref, torch_runner.resolve_device(request.device), tracking_uri=tracking_uri)
    return sweep(
        request,
        loaded.runner,
        model=name,
        model_ref=model_ref,
        task=loaded.flavor,
        input_desc=loaded.input_desc,
        accuracy_meta={},
        **kwargs,
    )


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--batch-sizes must be comma-separated positive integers, got '{text}'") from None
    if not sizes or any(b <= 0 for b in sizes):
        raise ValueError(f"--batch-sizes must be comma-separated positive integers, got '{text}'")
    return tuple(sorted(set(sizes)))


def summarise(result: SweepResult) -> dict[str, Any]:
    """The machine-readable summary `ipa profile --json` prints."""
    return {
        "profile_id": result.profile.id,
        "model_ref": result.key.model_ref,
        "staleness_key": result.key.digest,
        "runtime": result.key.runtime,
        "wall_s": round(result.wall_s, 2),
        "environment": result.profile.provenance["environment"],
        "cells": [
            {
                "batch": t.batch,
                "p50_ms": round(t.p50_ms, 3),
                "p95_ms": round(t.p95_ms, 3),
                "p99_ms": round(t.p99_ms, 3),
                "mean_ms": round(t.mean_ms, 3),
                "p99_over_p50": round(t.p99_ms / t.p50_ms, 3),
                "cv": round(t.cv, 4),
                "iters": len(t.samples_ms),
                "remeasured": t.remeasured,
                "throughput_rps": round(t.throughput_rps, 2),
                "peak_memory_mb": p.peak_memory_mb,
            }
            for t, p in zip(result.timings, result.profile.points, strict=True)
        ],
        "curve_p99": {
            "coeffs": result.profile.curve("p99").coeffs,
            "max_rel_error": round(result.profile.curve("p99").max_rel_error, 4),
        },
    }
