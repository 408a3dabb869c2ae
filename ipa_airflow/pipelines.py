"""A pipeline as the planner needs it: the validated spec and the profiles its variants name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .profiles import ProfileError, ProfileSet
from .spec import PipelineSpec, SpecError, load_spec


@dataclass(frozen=True)
class Pipeline:
    spec: PipelineSpec
    profiles: ProfileSet
    source: Path


def missing_profiles(spec: PipelineSpec, profiles: ProfileSet) -> list[tuple[str, str]]:
    """(yaml_path, message) for every shape whose profile is not in the set."""
    problems = []
    for i, stage in enumerate(spec.stages):
        for j, variant in enumerate(stage.variants):
            for k, shape in enumerate(variant.shapes):
                pid = variant.profile_id(shape)
                files = ", ".join(spec.profiles) or "the spec (no profiles listed)"
                if pid not in profiles.profiles:
                    problems.append(
                        (
                            f"stages[{i}].variants[{j}].shapes[{k}]",
                            f"no profile '{pid}' in {files}; "
                            "profile it with `ipa profile` or fix hardware/dtype/resources",
                        )
                    )
    return problems


def load_pipeline(path: str | Path, *, registry=None, runtime: str | None = None) -> Pipeline:
    """Load a spec and its profiles: the files it lists first, then MLflow (when a registry is given) for
    the shapes no file covers. SpecError names every unusable field or profile."""
    path = Path(path)
    spec = load_spec(path)
    try:
        profiles = ProfileSet.load(spec.profile_paths(path.parent))
    except ProfileError as exc:
        raise SpecError(str(path), [("profiles", str(exc))]) from None
    if registry is not None:
        wanted = {v.profile_id(sh) for st in spec.stages for v in st.variants for sh in v.shapes}
        missing = sorted(wanted - set(profiles.profiles))
        if missing:
            profiles = profiles.merged(registry.profiles_for_spec(spec, runtime=runtime, only=missing))
    problems = missing_profiles(spec, profiles)
    if problems:
        raise SpecError(str(path), problems)
    return Pipeline(spec, profiles, path)


def check_pipeline(path: str | Path) -> Pipeline:
    """`load_pipeline` (without MLflow), and the spec's Deployment template read and checked too: the
    template renders only at reconcile time, so `ipa validate` finds its problems now. SpecError."""
    from .cluster.desired import load_template

    pipeline = load_pipeline(path)
    load_template(pipeline.spec, base=pipeline.source.parent)
    return pipeline
