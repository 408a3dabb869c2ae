"""A pipeline as the planner needs it: the validated spec (its registry stages resolved to variants) and
the profiles its variants name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .candidates import Candidate, registry_variants, selected
from .forecasting.windows import WindowSpec
from .profiles import ProfileError, ProfileSet
from .spec import PipelineSpec, SpecError, Stage, Variant, load_spec


@dataclass(frozen=True)
class Pipeline:
    spec: PipelineSpec  # registry stages resolved: every variant is a concrete one
    profiles: ProfileSet
    source: Path
    candidates: tuple[Candidate, ...] = ()  # every registry version looked at, and whether it may run
    origin: str = "files"  # 'files', 'mlflow' (read now) or 'cache' (MLflow could not be read)
    note: str = ""  # why a cached pipeline was used, for the decision record
    refreshed_at: str = ""  # when it was read from MLflow (ISO), for a cached one

    def model_uri(self, stage: str, variant: str) -> str | None:
        """The model (version) a stage's variant runs, e.g. 'models:/video-classifier/3'."""
        for v in self.spec.stage(stage).variants:
            if v.name == variant:
                return v.model_uri
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "profiles": self.profiles.to_dict(),
            "source": str(self.source),
            "candidates": [c.to_dict() for c in self.candidates],
            "origin": self.origin,
            "note": self.note,
            "refreshed_at": self.refreshed_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pipeline:
        return cls(
            spec=PipelineSpec.from_dict(d["spec"], source=f"{d['source']} (cached)"),
            profiles=ProfileSet.from_dict(d["profiles"], source=f"{d['source']} (cached profiles)"),
            source=Path(d["source"]),
            candidates=tuple(Candidate.from_dict(c) for c in d.get("candidates", ())),
            origin=str(d.get("origin", "files")),
            note=str(d.get("note", "")),
            refreshed_at=str(d.get("refreshed_at", "")),
        )


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
    the shapes no file covers, and the variants of every stage that names a registered model. SpecError
    names every unusable field or profile; MlflowUnreachable when MLflow does not answer."""
    path = Path(path)
    return resolve(load_spec(path), path, registry=registry, runtime=runtime)


def resolve(spec: PipelineSpec, path: Path, *, registry=None, runtime: str | None = None) -> Pipeline:
    """`load_pipeline` for a spec already read from `path` (its profile files are relative to it)."""
    try:
        profiles = ProfileSet.load(spec.profile_paths(path.parent))
    except ProfileError as exc:
        raise SpecError(str(path), [("profiles", str(exc))]) from None
    candidates: list[Candidate] = []
    if spec.from_registry:
        if registry is None:
            raise SpecError(
                str(path),
                [
                    (
                        f"stages[{i}].registered_model",
                        f"takes its variants from MLflow's '{st.registered_model.name}': "
                        "give --tracking-uri (or set MLFLOW_TRACKING_URI) so they can be read",
                    )
                    for i, st in enumerate(spec.stages)
                    if st.registered_model is not None
                ],
            )
        spec, profiles, candidates = _resolve_registry(spec, profiles, registry, path)
    if registry is not None:
        wanted = {v.profile_id(sh) for st in spec.stages for v in st.variants for sh in v.shapes}
        missing = sorted(wanted - set(profiles.profiles))
        if missing:
            profiles = profiles.merged(registry.profiles_for_spec(spec, runtime=runtime, only=missing))
    problems = missing_profiles(spec, profiles)
    if problems:
        raise SpecError(str(path), problems)
    origin = "mlflow" if spec.from_registry else "files"  # a registry stage needs MLflow (refused above)
    return Pipeline(spec, profiles, path, tuple(candidates), origin=origin)


def _resolve_registry(
    spec: PipelineSpec, profiles: ProfileSet, registry, path: Path
) -> tuple[PipelineSpec, ProfileSet, list[Candidate]]:
    """Every registry stage with its selected, profiled versions added to its listed variants."""
    from .registry.mlflow_profiles import MlflowUnreachable
    from .registry.model_versions import read_versions

    stages, found, seen, problems = [], dict(profiles.profiles), [], []
    looked_up: dict[tuple, dict] = {}  # each version's profiles, read from MLflow once
    for i, stage in enumerate(spec.stages):
        source = stage.registered_model
        if source is None:
            stages.append(stage)
            continue
        try:
            versions = read_versions(registry, source)
        except MlflowUnreachable:
            raise
        except ProfileError as exc:  # RegistryError: the registered model does not exist
            problems.append((f"stages[{i}].registered_model.name", str(exc)))
            continue

        def can_run(version, stage=stage, source=source) -> bool:
            variants, _ = registry_variants(spec.name, stage.name, source, [version])
            return bool(variants) and bool(_profiles_of(registry, variants[0], looked_up))

        picked, passed_over = selected(source.select, versions, can_run)
        variants, looked_at = registry_variants(spec.name, stage.name, source, picked + passed_over)
        kept = []
        for variant in variants:
            got = _profiles_of(registry, variant, looked_up)
            cand = next(c for c in looked_at if c.variant == variant.name)
            if got:
                found.update(got)
                shapes = [sh for sh in variant.shapes if variant.profile_id(sh) in got]
                kept.append(variant.model_copy(update={"shapes": shapes}))
            else:
                wanted = ", ".join(f"{s.hardware} {s.resources.key} {s.dtype}" for s in variant.shapes)
                looked_at[looked_at.index(cand)] = replace(
                    cand,
                    status="unprofiled",
                    reason=f"not profiled yet on {wanted}; the profiling DAG files it",
                )
        seen += looked_at
        clash = {v.name for v in stage.variants} & {v.name for v in kept}
        if clash:
            problems.append(
                (
                    f"stages[{i}].variants",
                    f"the listed variant {sorted(clash)[0]!r} has the name a version of "
                    f"'{source.name}' takes: rename it, or set registered_model.variant_prefix",
                )
            )
            continue
        all_variants = [*stage.variants, *kept]
        if not all_variants:
            why = (
                "; ".join(c.describe() for c in looked_at)
                or f"the selector picks no version of '{source.name}'"
            )
            problems.append((f"stages[{i}].registered_model", f"no version can run: {why}"))
            continue
        stages.append(_with_variants(stage, all_variants))
    if problems:
        raise SpecError(str(path), problems)
    return spec.model_copy(update={"stages": stages}), ProfileSet(found), seen


def _profiles_of(registry, variant, looked_up: dict[tuple, dict]) -> dict:
    """The MLflow profiles of a registry variant's shapes, by the ids the spec gives them."""
    key = (variant.name, variant.model_uri, tuple(variant.profile_id(sh) for sh in variant.shapes))
    if key not in looked_up:
        got = {}
        for shape in variant.shapes:
            profile = registry.find_profile(variant.model_uri, shape)
            if profile is not None:
                got[variant.profile_id(shape)] = replace(profile, model=variant.profile_model)
        looked_up[key] = got
    return looked_up[key]


def with_registry_variants(spec: PipelineSpec, variants: Mapping[str, Mapping[str, Any]]) -> PipelineSpec:
    """The spec with the registry variants a decision names (stage -> the variant's dict) added to their
    stages, as `resolve` would: what the reconcile renders from."""
    stages = []
    for stage in spec.stages:
        extra = variants.get(stage.name)
        if extra is not None and extra["name"] not in {v.name for v in stage.variants}:
            stage = _with_variants(stage, [*stage.variants, Variant.model_validate(dict(extra))])
        stages.append(stage)
    return spec.model_copy(update={"stages": stages})


def _with_variants(stage: Stage, variants: list) -> Stage:
    return stage.model_copy(update={"variants": variants})


def check_pipeline(path: str | Path, *, registry=None) -> list[str]:
    """Everything `load_pipeline` checks, and the spec's Deployment template read and checked too (it
    renders only at reconcile time, so `ipa validate` finds its problems now). Without a registry, a
    registry stage is checked as far as the files go: its listed variants, and a note saying what was
    not read. SpecError; MlflowUnreachable with a registry that does not answer. Returns the notes."""
    from .cluster.desired import load_template

    path = Path(path)
    notes = []
    spec = load_spec(path)
    if spec.from_registry and registry is None:
        try:
            profiles = ProfileSet.load(spec.profile_paths(path.parent))
        except ProfileError as exc:
            raise SpecError(str(path), [("profiles", str(exc))]) from None
        problems = missing_profiles(spec, profiles)
        if problems:
            raise SpecError(str(path), problems)
        notes = [
            f"stage '{st.name}': the versions of MLflow's '{st.registered_model.name}' were not read "
            "(give --tracking-uri to check them)"
            for st in spec.stages
            if st.registered_model is not None
        ]
    else:
        pipeline = load_pipeline(path, registry=registry)
        spec = pipeline.spec
        notes = [c.describe() for c in pipeline.candidates]
    load_template(spec, base=path.parent)
    return notes + horizon_notes(spec)


# The horizon the shipped forecasters predict the peak over.
FORECAST_HORIZON_S = WindowSpec().horizon_s


def horizon_notes(spec: PipelineSpec) -> list[str]:
    """A plan must carry the load until the next decision's plan takes effect: one interval plus the
    slowest variant's start-up. A forecast of a shorter horizon leaves the rest to the fast path."""
    slowest = max(
        [v.startup_s for st in spec.stages for v in st.variants]
        + [st.registered_model.startup_s for st in spec.stages if st.registered_model is not None],
        default=0.0,
    )
    needed = spec.adaptation.interval_s + slowest
    if needed <= FORECAST_HORIZON_S:
        return []
    return [
        f"adaptation: a plan must carry the load for {needed:g} s (interval_s {spec.adaptation.interval_s:g} "
        f"+ the slowest start-up {slowest:g} s), longer than the {FORECAST_HORIZON_S} s the forecasters "
        "predict: decide more often, or rely on the fast path (burst_window_s) for the rest"
    ]
