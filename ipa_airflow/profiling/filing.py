"""Filing measured profiles in MLflow without ever losing one.

Measuring takes minutes; MLflow may be down at the end of them. So a profile goes to disk first (the
user's `--out` file, or the spool IPA_HOME/pending-profiles/), and only then into MLflow; a spooled file is
removed once filed. When filing fails the error says where the profile is and how to file it:
`ipa profiles push [FILES]` (no FILES: every spooled one), which every `ipa profile` also does first.

The files are ordinary profile files (`ProfileSet.load` reads them); what MLflow needs besides the
profile (the model reference and runtime of its staleness key) is in the provenance `ipa profile` writes.
This module is the one profile-and-register path: the CLI and the Airflow operator both call it.

A served profile (`served.py`: measured through MLServer) is filed the same way, beside the in-process one
of the same model and shape, never in its place: its key's runtime names the server
(`mlserver==V,torch==V`), its run has the param `method` and the tag `ipa.profile.method` = served, and
the model version's summary tags go under `ipa.profile_served.` instead of the in-process `ipa.profile.`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..profiles import Profile, ProfileError, ProfileSet
from ..registry.keys import ProfileKey, runtime_of
from ..registry.mlflow_profiles import MlflowUnreachable, RegistryError

PENDING = "pending-profiles"


class NotFiled(RegistryError):
    """MLflow did not take the profile; the message says where it is kept and how to file it."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


def pending_dir(home: Path | None = None) -> Path:
    """The spool of profiles measured but not yet filed in MLflow."""
    if home is None:
        from ..settings import load_settings

        home = load_settings().home
    return Path(home) / PENDING


def pending(home: Path | None = None) -> list[Path]:
    folder = pending_dir(home)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def keep(profile: Profile, *, out: str | Path | None = None, home: Path | None = None) -> Path:
    """Write `profile` as a profile file to `out`, or into the spool; returns where. Written whole or not
    at all (a temporary file renamed), so a crash never leaves half a profile to be filed."""
    if out is not None:
        path = Path(out)
    else:
        slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", profile.id).strip("_")[:80]
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = pending_dir(home) / f"{stamp}-{slug}-{uuid.uuid4().hex[:6]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        tmp.write_text(json.dumps(ProfileSet({profile.id: profile}).to_dict(), indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write the profile to {path}: {exc.strerror or exc}") from None
    return path


def key_of(profile: Profile, *, where: str = "") -> ProfileKey:
    """The staleness key of a profile `ipa profile` measured, from its provenance."""
    from .served import SERVED, profile_method, served_runtime

    prov = profile.provenance
    if not prov.get("model_ref") or not isinstance(prov.get("environment"), dict):
        raise ProfileError(
            f"{where or 'profile'} {profile.id}: no provenance.model_ref and provenance.environment; only "
            "profiles measured by `ipa profile` can be filed in MLflow"
        )
    runtime = served_runtime if profile_method(profile) == SERVED else runtime_of
    return ProfileKey(
        str(prov["model_ref"]),
        profile.hardware,
        profile.dtype,
        profile.resources,
        runtime(prov["environment"]),
    )


def model_version_of(key: ProfileKey) -> tuple[str, str] | None:
    """(name, version) of a registered model version's key ('models:/name/3'); None for zoo models."""
    m = re.fullmatch(r"models:/(.+)/(\d+)", key.model_ref)
    return (m[1], m[2]) if m else None


def file_profile(registry, profile: Profile, *, params: dict | None = None, where: str = "") -> str:
    """One MLflow run holding `profile`, and the model version's tags when it profiles one; the run id.
    The run's param `method` says in-process or served (a param: logged before the run is finished, so
    no reader sees a served run without it)."""
    from .served import SERVED, profile_method

    key = key_of(profile, where=where)
    env = profile.provenance["environment"]
    method = profile_method(profile)
    run_id = registry.log_profile(
        profile,
        key,
        params={
            "device": env.get("device", ""),
            "threads": env.get("threads", ""),
            "model_ref": key.model_ref,
            "method": method,
        }
        | (params or {}),
    )
    version = model_version_of(key)
    if method == SERVED:
        tag_served(registry, run_id, profile, key, version)
    elif version is not None:
        registry.tag_model_version(*version, profile, key, run_id)
    return run_id


def served_version_tags(profile: Profile, key: ProfileKey, run_id: str) -> dict[str, str]:
    """A served profile's summary on its model version's page, beside the in-process one's
    (`ipa.profile.<hardware>.<resources>.<dtype>.*`, which the planner's and polling's readers own)."""
    from ..registry.mlflow_profiles import tag_safe
    from .served import SERVED_TAG_PREFIX

    prefix = f"{SERVED_TAG_PREFIX}.{profile.hardware}.{tag_safe(profile.resources)}.{profile.dtype}"
    first = profile.points[0]
    return {
        f"{prefix}.b1_p99_ms": f"{first.p99_ms:.4g}" if first.batch == 1 else "n/a",
        f"{prefix}.best_throughput_rps": f"{max(p.throughput_rps for p in profile.points):.5g}",
        f"{prefix}.run_id": run_id,
        f"{prefix}.runtime": key.runtime,
    }


def tag_served(
    registry, run_id: str, profile: Profile, key: ProfileKey, version: tuple[str, str] | None
) -> None:
    """Tag a served profile's run as served (for searches in the MLflow UI) and its model version."""
    from .served import METHOD_TAG, SERVED

    client = registry.client
    registry._call("tag the profile run", client.set_tag, run_id, METHOD_TAG, SERVED)
    if version is not None:
        for k, v in served_version_tags(profile, key, run_id).items():
            registry._call("tag the model version", client.set_model_version_tag, *version, k, v)


@dataclass(frozen=True)
class Filed:
    run_id: str
    kept: Path | None  # the --out file; None when the profile went through the spool (removed once filed)


def keep_and_file(
    registry,
    profile: Profile,
    *,
    out: str | Path | None = None,
    home: Path | None = None,
    params: dict | None = None,
) -> Filed:
    """The profile-and-register path: `keep` it, then `file_profile` it; a spooled copy is removed once
    filed. MLflow failing is a NotFiled that names the file and the command that files it later."""
    path = keep(profile, out=out, home=home)
    try:
        run_id = file_profile(registry, profile, params=params)
    except RegistryError as exc:
        raise NotFiled(
            f"{exc}. The profile is kept in {path}: file it with `ipa profiles push {path}` once MLflow "
            "answers"
            + ("" if out is not None else " (or `ipa profiles push`, which files every pending one)"),
            path,
        ) from exc
    if out is None:
        path.unlink(missing_ok=True)
    return Filed(run_id, Path(out) if out is not None else None)


@dataclass
class PushReport:
    filed: list[dict] = field(default_factory=list)  # {"file", "profile_id", "run_id"}
    failed: list[dict] = field(default_factory=list)  # {"file", "error"}
    left: list[str] = field(default_factory=list)  # files not tried: MLflow went away first
    unreachable: str = ""  # why the push stopped early: MLflow did not answer

    def to_dict(self) -> dict:
        return {
            "filed": self.filed,
            "failed": self.failed,
            "left": self.left,
            "unreachable": self.unreachable,
        }


def push(registry, paths: Sequence[str | Path] | None = None, *, home: Path | None = None) -> PushReport:
    """File the profiles in `paths` (default: every spooled one), each file as a whole; spooled files are
    removed once filed. A file that cannot be read is reported and skipped; MLflow unreachable stops the
    push (every other file would fail the same way) and lists what is left."""
    spool = pending_dir(home).resolve()
    todo = [Path(p) for p in paths] if paths else pending(home)
    report = PushReport()
    for i, path in enumerate(todo):
        try:
            profiles = ProfileSet.load([path])
            if not len(profiles):
                raise ProfileError(f"profile file {path} holds no profile")
            run_ids = [file_profile(registry, p, where=str(path)) for p in profiles]
        except MlflowUnreachable as exc:
            report.failed.append({"file": str(path), "error": str(exc)})
            report.left = [str(p) for p in todo[i + 1 :]]
            report.unreachable = str(exc)
            break
        except ProfileError as exc:  # RegistryError too: MLflow answered, but no
            report.failed.append({"file": str(path), "error": str(exc)})
            continue
        for p, run_id in zip(profiles, run_ids, strict=True):
            report.filed.append({"file": str(path), "profile_id": p.id, "run_id": run_id})
        if path.resolve().parent == spool:
            path.unlink(missing_ok=True)
    return report


def push_pending(registry, *, home: Path | None = None, say=lambda message: None) -> PushReport:
    """Before measuring more: file what earlier runs left in the spool. MLflow not answering is an
    error now (it would be once the measuring is done too), naming what waits; a spooled file that
    cannot be read is reported through `say` and left in place."""
    from ..registry.mlflow_profiles import check_reachable

    waiting = pending(home)
    if not waiting:
        check_reachable(registry.tracking_uri)
        return PushReport()
    report = push(registry, waiting, home=home)
    if report.unreachable:
        raise MlflowUnreachable(
            f"{report.unreachable}. {len(pending(home))} profile(s) measured earlier wait in "
            f"{pending_dir(home)}; `ipa profiles push` files them once MLflow answers"
        )
    if report.filed:
        say(f"filed {len(report.filed)} profile(s) measured earlier, from {pending_dir(home)}")
    for failed in report.failed:
        say(f"warning: {failed['file']} not filed: {failed['error']}")
    if not report.filed:  # every pending file was unreadable: MLflow was never asked, so ask it now
        check_reachable(registry.tracking_uri)
    return report
