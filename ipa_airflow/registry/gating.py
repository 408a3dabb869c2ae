"""The SLO gate against MLflow: judge a model version for every pipeline spec that would run it, leave
the verdicts on the version as tags (`gate.GateResult.to_tags`), and move an alias only to a version
that passed. The decisions are `gate.gate_version` and `gate.promotion_refusal`; this reads and writes.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..candidates import RegisteredVersion, gate_tag, registry_variants
from ..gate import GateResult, gate_version, promotion_refusal
from ..pipelines import Pipeline
from ..profiles import ProfileError, ProfileSet
from ..spec import PipelineSpec, SpecError, Stage, load_spec
from .mlflow_profiles import MlflowProfileRegistry, MlflowUnreachable
from .model_versions import set_version_tags

log = logging.getLogger(__name__)

# The adaptation DAG replays a trace through IpaForecastOperator, whose default damping this is.
TRACE_DAMPING = 8.0


class PromotionRefused(RuntimeError):
    """An alias was not moved: the version failed the SLO gate, or was never gated."""


@dataclass(frozen=True)
class SkippedSpec:
    """A spec the gate could not judge the version for (it does not load, or its other stages do not
    resolve): no tag is written for it."""

    spec: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "reason": self.reason}


@dataclass(frozen=True)
class GateRun:
    """The verdicts on one model version, one per (pipeline, stage) that names its registered model; it
    iterates over them. `skipped` lists the specs that could not be judged."""

    name: str
    version: str
    results: tuple[GateResult, ...] = ()
    skipped: tuple[SkippedSpec, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[GateResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> bool:
        """Every pipeline that would run it passed (and there is at least one)."""
        return bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
            "skipped": [s.to_dict() for s in self.skipped],
        }


def spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """The spec files named: a folder stands for its *.yaml files, as the adaptation DAG reads it. A path
    that does not exist is an error naming it (a typo must not gate against no spec at all)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(path.glob("*.yaml"))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(2, "no such spec file or folder", str(path))
    return out


# ---- the gate -----------------------------------------------------------------------------------------
def gate_model_version(
    registry: MlflowProfileRegistry,
    name: str,
    version: str,
    spec_paths: Sequence[str | Path],
    *,
    peak_rps_for: Callable[[PipelineSpec], float],
    now: dt.datetime | None = None,
    policy: str = "ipa",
) -> GateRun:
    """Gate version `version` of registered model `name` for every spec whose stage names it, and write
    each pipeline's verdict on the version. A spec that cannot be judged is skipped with its reason (and
    logged); MLflow not answering raises MlflowUnreachable."""
    now = now or dt.datetime.now(dt.UTC)
    mv = registry._call(
        f"read version {version} of '{name}'", registry.client.get_model_version, name, str(version)
    )
    found = RegisteredVersion(
        name=name,
        version=str(mv.version),
        aliases=tuple(mv.aliases or ()),
        tags=dict(mv.tags or {}),
        run_id=mv.run_id or None,
    )
    results: list[GateResult] = []
    skipped: list[SkippedSpec] = []
    for path in spec_files(spec_paths):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            skipped.append(_skip(path, str(exc)))
            continue
        stages = [
            s for s in spec.stages if s.registered_model is not None and s.registered_model.name == name
        ]
        if not stages:
            continue
        try:
            peak = peak_rps_for(spec)
            verdicts = [
                _gate_stage(registry, path, spec, stage, found, peak, now=now, policy=policy)
                for stage in stages
            ]
        except MlflowUnreachable:
            raise
        except (SpecError, ProfileError) as exc:  # another stage does not resolve: cannot judge
            skipped.append(_skip(path, str(exc)))
            continue
        results += verdicts
        # One verdict per pipeline on the version: a stage that fails it decides (two stages running the
        # same registered model are rare; each is judged with the version alone in it).
        decisive = next((r for r in verdicts if not r.passed), verdicts[0])
        set_version_tags(registry, name, found.version, decisive.to_tags())
    return GateRun(name, found.version, tuple(results), tuple(skipped))


def _skip(path: Path, reason: str) -> SkippedSpec:
    log.warning("the SLO gate skips %s: %s", path, reason)
    return SkippedSpec(str(path), reason)


def _gate_stage(
    registry: MlflowProfileRegistry,
    path: Path,
    spec: PipelineSpec,
    stage: Stage,
    version: RegisteredVersion,
    peak_rps: float,
    *,
    now: dt.datetime,
    policy: str,
) -> GateResult:
    source = stage.registered_model
    assert source is not None  # the caller picked the stages that name the model
    if source.accuracy.metric is not None and version.run_id and not version.run_metrics:
        run = registry._call(
            f"read the source run of {version.name} v{version.version}",
            registry.client.get_run,
            version.run_id,
        )
        version = replace(version, run_metrics=dict(run.data.metrics))
    # The variant the live plan would build were the version selected and not failed before: the gate
    # judges it whatever the selector or an earlier verdict says (a re-profiled version may pass now).
    ungated = replace(version, tags={k: v for k, v in version.tags.items() if k != gate_tag(spec.name)})
    variants, looked_at = registry_variants(spec.name, stage.name, source, [ungated])
    if not variants:  # no accuracy: no plan can weigh it
        return GateResult(
            pipeline=spec.name,
            stage=stage.name,
            model_uri=version.model_uri,
            variant=source.variant_name(version.version),
            passed=False,
            peak_rps=peak_rps,
            reason=looked_at[0].reason,
            plan_summary="",
            binding=(),
            checked_at=now.isoformat(timespec="seconds"),
            pending=True,  # gated again once it has an accuracy
        )
    variant = variants[0]
    profiles = {}
    for shape in variant.shapes:
        profile = registry.find_profile(version.model_uri, shape)
        if profile is not None:
            profiles[variant.profile_id(shape)] = replace(profile, model=variant.profile_model)
    rest = _rest_of_pipeline(path, spec, stage.name, registry)
    return gate_version(rest, stage.name, variant, ProfileSet(profiles), peak_rps, now=now, policy=policy)


def _rest_of_pipeline(path: Path, spec: PipelineSpec, stage: str, registry) -> Pipeline:
    """The pipeline as the live plan loads it, with `stage` emptied (gate_version puts the version there
    alone): `load_pipeline` on the spec would leave out a version not selected or failed before, and
    refuse a stage with no runnable version, the very case of a first version or a re-gate."""
    from .. import pipelines

    emptied = spec.model_copy(
        update={
            "stages": [
                s.model_copy(update={"variants": [], "registered_model": None}) if s.name == stage else s
                for s in spec.stages
            ]
        }
    )
    return pipelines.resolve(emptied, path, registry=registry)


# ---- moving an alias ----------------------------------------------------------------------------------
def promote(
    registry: MlflowProfileRegistry, name: str, version: str, alias: str, *, force: bool = False
) -> str:
    """Point `alias` of registered model `name` at `version`, unless the version failed the SLO gate for
    a pipeline or was never gated (PromotionRefused naming the pipelines and reasons); `force` moves it
    anyway. Returns what was done, for the log."""
    if not alias.strip():
        raise ValueError("the alias is empty")
    mv = registry._call(
        f"read version {version} of '{name}'", registry.client.get_model_version, name, str(version)
    )
    what = f"'{name}' v{mv.version}"
    refusal = promotion_refusal(dict(mv.tags or {}), what=what, alias=alias)
    if refusal is not None and not force:
        raise PromotionRefused(refusal)
    registry._call(
        f"set alias '{alias}' of '{name}'",
        registry.client.set_registered_model_alias,
        name,
        alias,
        str(mv.version),
    )
    done = f"alias '{alias}' of '{name}' now points at version {mv.version}"
    return f"{done}, forced: {refusal}" if refusal is not None else f"{done} (it passed the SLO gate)"


# ---- the load to gate at ------------------------------------------------------------------------------
def recent_peak_rps(
    settings,
    *,
    now: dt.datetime,
    window_s: int = 3600,
    prometheus_url: str | None = None,
    damping: float = TRACE_DAMPING,
    spec=None,
) -> float:
    """The highest per-second load of the last `window_s` seconds, read where the adaptation DAG's
    forecast reads it (`settings.load`): the replayed trace at the second `now` stands for, or the
    Prometheus query (whose server is an Airflow connection's: pass its URL), for `spec`'s first stage
    when the query names {pipeline} and {stage} (the default does)."""
    import numpy as np

    from ..forecasting.sources import MAX_POINTS_PER_QUERY, PrometheusSource, TraceReplay, read_trace

    if window_s < 1:
        raise ValueError(f"the window must be at least 1 s, not {window_s}")
    end = now.timestamp()
    if settings.load.source == "trace":
        # TraceReplay's origin 0: the forecast operator replays second int(logical_date) of the trace.
        rates = TraceReplay(read_trace(settings.load.trace, damping=damping)).rates(
            end=end, window_s=window_s
        )
    else:
        if not prometheus_url:
            raise ValueError(
                "the load source is Prometheus: give its URL (the ipa_prometheus_default connection's)"
            )
        # Prometheus answers at most 11,000 points a query: a long window is read at a coarser step.
        step = float(max(1, math.ceil(window_s / MAX_POINTS_PER_QUERY)))
        source = PrometheusSource(prometheus_url, settings.load.prometheus_query)
        if spec is not None:
            source = source.for_pipeline(spec)
        rates = source.rates(end=end, window_s=window_s, step_s=step)
    return float(np.max(rates))
