"""The pipeline the live plan uses, read from MLflow and kept on disk between decisions.

Reading a registry stage costs a few MLflow requests per version, and every decision needs the pipeline;
so the resolved pipeline (spec with its registry variants, profiles, candidates) is kept under IPA_HOME
and read again when it is older than `max_age_s`, when profiles changed since (the profiling DAG's
asset event), or when the spec or its profile files changed. When MLflow does not answer, the kept one is
used and the pipeline says so (`origin` 'cache-fallback' and a `note`), so the decision goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

from .pipelines import Pipeline, load_pipeline
from .spec import load_spec
from .whole_files import write_whole

log = logging.getLogger(__name__)


def cache_file(home: Path, spec_path: str | Path) -> Path:
    path = Path(spec_path).resolve()
    return home / "pipelines" / f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:10]}.json"


def inputs_digest(spec_path: str | Path) -> str:
    """What the cached pipeline was built from on disk: the spec and its profile files."""
    path = Path(spec_path)
    h = hashlib.sha256(path.read_bytes())
    for p in load_spec(path).profile_paths(path.parent):
        h.update(p.read_bytes() if p.exists() else b"<missing>")
    return h.hexdigest()


def save(pipeline: Pipeline, home: Path) -> Path:
    """Keep `pipeline`, written whole (a reader never sees half a file)."""
    data = {**pipeline.to_dict(), "inputs_digest": inputs_digest(pipeline.source)}
    return write_whole(cache_file(home, pipeline.source), json.dumps(data))


def load_cached(spec_path: str | Path, home: Path) -> Pipeline | None:
    """The kept pipeline of this spec; None when there is none, it is unreadable, or the spec or its
    profile files changed since."""
    target = cache_file(home, spec_path)
    try:
        data = json.loads(target.read_text())
        if data.get("inputs_digest") != inputs_digest(spec_path):
            return None
        return Pipeline.from_dict(data)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:  # a damaged file: read MLflow again
        log.warning("ignoring the unreadable cached pipeline %s: %s", target, exc)
        return None


def live_pipeline(
    spec_path: str | Path,
    *,
    registry,
    home: Path,
    now: dt.datetime,
    max_age_s: float = 3600.0,
    profiles_changed_at: dt.datetime | None = None,
) -> Pipeline:
    """The pipeline to decide on now: the kept one while fresh, else read from MLflow (and kept); the
    kept one, said so, when MLflow does not answer. Without a registry, the files alone (nothing kept)."""
    from .registry.mlflow_profiles import MlflowUnreachable

    if registry is None:
        return load_pipeline(spec_path)
    cached = load_cached(spec_path, home)
    if cached is not None and cached.refreshed_at:
        read_at = dt.datetime.fromisoformat(cached.refreshed_at)
        fresh = (now - read_at).total_seconds() < max_age_s
        if fresh and (profiles_changed_at is None or profiles_changed_at <= read_at):
            return replace(cached, origin="cache", note=f"read from MLflow at {cached.refreshed_at}")
    try:
        pipeline = load_pipeline(spec_path, registry=registry)
    except MlflowUnreachable as exc:
        if cached is None:
            raise
        note = f"MLflow did not answer ({exc}); decided on the pipeline read from it at {cached.refreshed_at}"
        log.warning("%s", note)
        return replace(cached, origin="cache-fallback", note=note)
    pipeline = replace(pipeline, refreshed_at=now.isoformat(timespec="seconds"))
    save(pipeline, home)
    return pipeline
