"""A profiling sweep: one zoo model (or loaded model) at a list of batch sizes on one device -> Profile."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from ..profiles import BatchPoint, Profile
from .timing import Timing, TimingSettings, measure
from .torch_runner import batch_runner, environment
from .zoo import build, zoo_model


def profile_zoo_model(
    name: str,
    batch_sizes: Sequence[int],
    *,
    device: str = "cpu",
    threads: int = 1,
    dtype: str = "fp32",
    hardware: str,
    settings: TimingSettings | None = None,
    on_cell: Callable[[Timing], None] | None = None,
) -> tuple[Profile, list[Timing]]:
    import torch

    if device == "cpu":
        torch.set_num_threads(threads)
    zm = zoo_model(name)
    model = build(name)
    timings = []
    for b in batch_sizes:
        runner = batch_runner(model, zm.task, zm.input_size, b, device, dtype)
        timing = measure(runner, b, settings or TimingSettings())
        timings.append(timing)
        if on_cell:
            on_cell(timing)
    points = tuple(
        BatchPoint(t.batch, t.p50_ms, t.p95_ms, t.p99_ms, t.mean_ms, t.throughput_rps) for t in timings
    )
    resources = f"cpu={threads:g}" if device == "cpu" else "gpu=1"
    provenance = {
        "source": "ipa profile (zoo)",
        "environment": environment(device, threads, dtype),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input": zm.input_size,
        "method": "torchvision architecture, random weights, eval + inference_mode; warm-up until stable, "
        "then timed calls of one batch with the device synchronised",
        "cv": {str(t.batch): round(t.cv, 4) for t in timings},
        "iters": {str(t.batch): len(t.samples_ms) for t in timings},
    }
    profile = Profile(
        model=name,
        hardware=hardware,
        dtype=dtype,
        resources=resources,
        task=zm.task,
        points=points,
        provenance=provenance,
        accuracy_meta={"metric": zm.metric, "accuracy": zm.accuracy, "weights": zm.weights},
    )
    return profile, timings
