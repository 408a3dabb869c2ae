"""One profiling run: what to measure on this machine (`prepare`), then the sweep, kept on disk and
filed in MLflow (`profile_and_register`). `ipa profile`, IpaProfileOperator and the demo all go through
these two. Split in two so the caller can show progress with what `prepare` resolved (the model version,
the device) before minutes of measuring start."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sweep import SweepRequest
from .timing import Timing, TimingSettings


@dataclass(frozen=True)
class ProfileJob:
    request: SweepRequest  # its device resolved (auto -> cpu or cuda) and its hardware named
    zoo: str | None  # a zoo model, or
    model_ref: str | None  # a registered model version, resolved: models:/name/version
    name: str | None  # the profile's model name for a registered version
    label: str  # what is measured on which device, for progress lines


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
) -> ProfileJob:
    """Resolve what to measure. With `log`, first file what earlier runs could not: MLflow down fails
    now, before torch loads and measuring starts. `registry` may be None when nothing goes to MLflow."""
    from . import torch_runner
    from .filing import push_pending

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
    return ProfileJob(request, zoo, model_ref, name or registered, f"{zoo or model_ref} on {device}")


def profile_and_register(
    job: ProfileJob,
    registry,
    *,
    log: bool = True,
    out: Path | None = None,
    on_cell: Callable[[Timing], None] | None = None,
    settings: TimingSettings | None = None,
) -> dict[str, Any]:
    """The one profile-and-register path (`ipa profile`, IpaProfileOperator, the demo): measure, then
    keep and file: on disk first (`out`, else the spool under IPA_HOME), then MLflow, which also tags a
    registered model version with the profile's summary (`filing.file_profile`), so a failure to file
    says where the profile is kept and how to file it instead of losing minutes of measurement.
    `settings` overrides how long each cell is timed (the demo's quick timing). Returns the summary
    `ipa profile --json` prints, with the MLflow run id when `log`."""
    from .filing import keep, keep_and_file
    from .sweep import profile_registered, profile_zoo, summarise

    if job.zoo:
        result = profile_zoo(job.zoo, job.request, on_cell=on_cell, settings=settings)
    elif job.model_ref and job.name:
        result = profile_registered(
            job.model_ref,
            job.name,
            job.request,
            tracking_uri=registry.tracking_uri,
            on_cell=on_cell,
            settings=settings,
        )
    else:
        raise ValueError("give a zoo model or a registered model version to profile")
    summary = summarise(result)
    if log:
        summary["run_id"] = keep_and_file(registry, result.profile, out=out).run_id
        summary["tracking_uri"] = registry.tracking_uri
    elif out is not None:
        keep(result.profile, out=out)
    if out is not None:
        summary["out"] = str(out)
    return summary
