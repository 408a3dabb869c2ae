"""One profiling run: what to measure on this machine (`prepare`), then the sweep, kept on disk and
filed in MLflow (`profile_and_register`). `ipa profile`, IpaProfileOperator and the demo all go through
these two. Split in two so the caller can show progress with what `prepare` resolved (the model version,
the device) before minutes of measuring start.

A job's `method` says how it measures: `in-process` (a bare model call, `sweep.py`) or `served` (through
MLServer, `served.py`); both are kept and filed by the same code."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .served import DEFAULT_BATCH_TIME_S, IN_PROCESS, METHODS, SERVED, Method
from .sweep import SweepRequest
from .timing import Timing, TimingSettings


@dataclass(frozen=True)
class ProfileJob:
    request: SweepRequest  # its device resolved (auto -> cpu or cuda) and its hardware named
    zoo: str | None  # a zoo model, or
    model_ref: str | None  # a registered model version, resolved: models:/name/version
    name: str | None  # the profile's model name for a registered version
    label: str  # what is measured on which device, for progress lines
    method: Method = IN_PROCESS
    batch_time_s: float = DEFAULT_BATCH_TIME_S  # served: MLSERVER_MODEL_MAX_BATCH_TIME


def hardware_slug(device_name: str) -> str:
    """A hardware name from a device's name ('NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3')."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")[:40] or "unknown"


def prepare(
    *,
    zoo: str | None,
    model_uri: str | None,
    name: str | None,
    batch_sizes: tuple[int, ...],
    device: str,
    threads: int,
    dtype: str,
    hardware: str | None,
    registry,
    log: bool,
    say: Callable[[str], None] = lambda message: None,
    method: Method = IN_PROCESS,
    batch_time_s: float = DEFAULT_BATCH_TIME_S,
) -> ProfileJob:
    """Resolve what to measure. With `log`, first file what earlier runs could not: MLflow down fails
    now, before torch loads and measuring starts. `registry` may be None when nothing goes to MLflow.
    A served job is checked first (a registered version, on CPU, MLServer installed, enough cores)."""
    from . import torch_runner
    from .filing import push_pending

    if method not in METHODS:
        raise ValueError(f"a profile is measured {' or '.join(METHODS)}, not {method!r}")
    if method == SERVED:
        import os

        from ..serving.environment import mlserver_executable
        from .served import check_served_args, split_cores

        check_served_args(zoo=zoo, device=device, dtype=dtype)
        mlserver_executable()
        split_cores(threads, os.sched_getaffinity(0))
        device = "cpu"
    if log:
        push_pending(registry, say=say)
    device = torch_runner.resolve_device(device)
    if not hardware:
        env = torch_runner.environment(device, threads, dtype)
        hardware = hardware_slug(env.get("gpu") or env.get("cpu", ""))
    request = SweepRequest(hardware, batch_sizes, device, threads, dtype)
    model_ref = registered = None
    if model_uri:
        model_ref, registered, _ = registry.resolve_model_ref(model_uri)
    if method == SERVED:
        label = f"{model_ref} served by MLServer on {threads} core(s)"
        return ProfileJob(request, zoo, model_ref, name or registered, label, SERVED, batch_time_s)
    return ProfileJob(request, zoo, model_ref, name or registered, f"{zoo or model_ref} on {device}")


def profile_and_register(
    job: ProfileJob,
    registry,
    *,
    log: bool = True,
    out: Path | None = None,
    on_cell: Callable[[Timing], None] | None = None,
    settings: TimingSettings | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The one profile-and-register path (`ipa profile`, IpaProfileOperator, the demo): measure, then
    keep and file: on disk first (`out`, else the spool under IPA_HOME), then MLflow, which also tags a
    registered model version with the profile's summary (`filing.file_profile`), so a failure to file
    says where the profile is kept and how to file it instead of losing minutes of measurement.
    `settings` overrides how long each cell is timed (the demo's quick timing). Returns the summary
    `ipa profile --json` prints, with the MLflow run id when `log`. A served job says its progress
    (each server started, each batch size measured) through `say`."""
    from .filing import keep, keep_and_file

    if job.method == SERVED:
        result, summary = _served(job, registry, on_cell=on_cell, settings=settings, say=say)
    else:
        from .sweep import summarise

        result = _in_process(job, registry, on_cell=on_cell, settings=settings)
        summary = summarise(result)
    if log:
        summary["run_id"] = keep_and_file(registry, result.profile, out=out).run_id
        summary["tracking_uri"] = registry.tracking_uri
    elif out is not None:
        keep(result.profile, out=out)
    if out is not None:
        summary["out"] = str(out)
    return summary


def _in_process(job: ProfileJob, registry, **kwargs):
    from .sweep import profile_registered, profile_zoo

    if job.zoo:
        return profile_zoo(job.zoo, job.request, **kwargs)
    if job.model_ref and job.name:
        return profile_registered(
            job.model_ref, job.name, job.request, tracking_uri=registry.tracking_uri, **kwargs
        )
    raise ValueError("give a zoo model or a registered model version to profile")


def _served(job: ProfileJob, registry, **kwargs):
    from . import served, served_driver

    if not (job.model_ref and job.name):
        raise ValueError("a served profile measures a registered model version: give its models:/ URI")
    run = served_driver.profile_served(
        job.model_ref,
        job.name,
        job.request,
        tracking_uri=registry.tracking_uri,
        batch_time_s=job.batch_time_s,
        **kwargs,
    )
    return run.result, served.summarise(run.result, run.cells)
