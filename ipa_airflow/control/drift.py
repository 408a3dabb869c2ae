"""Drift: each stage's observed p99 against what its profile predicts for what runs (pure).

`assess` is stepped once per decision, as `decide` is: the state (a streak of decisions with a gap per
stage and running config) goes in and comes back out. A gap that lasts `persist` decisions marks its
stage for re-profiling once; `reprofile_events` turns those marks into the asset-event extras the
profiling DAG reads from `ipa://mlflow/model-versions`.

What the model server measures: MLServer's REST histogram (`rest_server_request_duration_seconds`)
times a request from arrival to response. With adaptive batching that includes the wait for the batch to
fill (at most MLSERVER_MODEL_MAX_BATCH_TIME, which the reconciler sets to the plan's `queue_s`) and the
batch's own run, so the prediction is the profile's p99 at the running batch plus `queue_s`: the
optimizer's `Option.total_latency_s` for that stage, at p99 whatever the spec's percentile.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..pipelines import Pipeline
from ..plans import Plan, StagePlan
from ..profiles import ProfileError
from ..spec import Shape, Variant

DEFAULT_THRESHOLD = 0.5  # |observed / predicted - 1| above this is a gap
DEFAULT_PERSIST = 3  # decisions in a row with a gap before a re-profiling event
REASON = "drift"  # the `reason` of a re-profiling event
_VERSION_URI = re.compile(r"models:/(.+)/(\d+)")


def predicted_p99_ms(pipeline: Pipeline, stage_plan: StagePlan) -> float:
    """What the running stage's profile predicts for a request's p99 (ms): one batch of the running size
    at p99, plus the batch-filling wait the server is told to allow (the plan's `queue_s`). ProfileError
    when the pipeline no longer offers the config or lacks its profile."""
    sp = stage_plan
    found = _variant_and_shape(pipeline, sp)
    if found is None:
        raise ProfileError(
            f"stage '{sp.stage}' runs {sp.variant} on {sp.hardware} {sp.resources} {sp.dtype}, which "
            f"pipeline '{pipeline.spec.name}' no longer offers"
        )
    variant, shape = found
    profile = pipeline.profiles.get(variant.profile_id(shape), wanted_by=f"{sp.stage}/{variant.name}")
    return profile.latency_ms(sp.batch, "p99") + sp.queue_s * 1000.0


def _variant_and_shape(pipeline: Pipeline, sp: StagePlan) -> tuple[Variant, Shape] | None:
    try:
        variants = pipeline.spec.stage(sp.stage).variants
    except KeyError:
        return None
    for v in variants:
        if v.name != sp.variant:
            continue
        for shape in v.shapes:
            if (shape.hardware, shape.resources.key, shape.dtype) == (sp.hardware, sp.resources, sp.dtype):
                return v, shape
    return None


def config_key(stage_plan: StagePlan) -> str:
    """What a streak belongs to: the stage and what it runs, less the replica count (scaling out does not
    change one request's latency, so it does not end an episode)."""
    s = stage_plan
    return f"{s.stage}|{s.variant}|{s.hardware}|{s.resources}|{s.dtype}|b{s.batch}"


@dataclass(frozen=True)
class StageGap:
    """One stage's observed p99 against its profile's prediction, in one decision."""

    stage: str
    variant: str
    model_uri: str | None  # 'models:/name/3'; None for a zoo variant (nothing to re-profile through MLflow)
    hardware: str
    resources: str
    dtype: str
    batch: int
    observed_p99_ms: float
    predicted_p99_ms: float
    ratio: float  # observed / predicted - 1 (0 when the histogram cannot tell the two apart)
    streak: int  # decisions in a row, this one included, with |ratio| above the threshold
    reprofile: bool  # the streak reached `persist` on this decision: re-profile (once per episode)
    note: str = ""

    @property
    def version(self) -> tuple[str, str] | None:
        """(registered model, version) of a 'models:/<name>/<version>' URI, else None."""
        m = _VERSION_URI.fullmatch(self.model_uri or "")
        return (m.group(1), m.group(2)) if m else None

    def describe(self) -> str:
        """'detect (frcnn-mnv3 b4 on epyc cpu=1 fp32): p99 310 ms observed, 120 ms predicted (+158%),
        gap for 2 decisions'."""
        text = (
            f"{self.stage} ({self.variant} b{self.batch} on {self.hardware} {self.resources} {self.dtype}): "
            f"p99 {self.observed_p99_ms:.0f} ms observed, {self.predicted_p99_ms:.0f} ms predicted "
            f"({self.ratio:+.0%})"
        )
        if self.streak:
            text += f", gap for {self.streak} decision{'s' if self.streak > 1 else ''}"
        return f"{text}; {self.note}" if self.note else text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageGap:
        uri = d.get("model_uri")
        return cls(
            stage=str(d["stage"]),
            variant=str(d["variant"]),
            model_uri=None if uri is None else str(uri),
            hardware=str(d["hardware"]),
            resources=str(d["resources"]),
            dtype=str(d["dtype"]),
            batch=int(d["batch"]),
            observed_p99_ms=float(d["observed_p99_ms"]),
            predicted_p99_ms=float(d["predicted_p99_ms"]),
            ratio=float(d["ratio"]),
            streak=int(d["streak"]),
            reprofile=bool(d["reprofile"]),
            note=str(d.get("note", "")),
        )


@dataclass(frozen=True)
class DriftState:
    """Per `config_key`, how many decisions in a row saw a gap. Only what runs now is kept: a config that
    stopped running has its streak dropped, so running it again starts a new episode."""

    streaks: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"streaks": dict(self.streaks)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DriftState:
        return cls({str(k): int(v) for k, v in ((d or {}).get("streaks") or {}).items()})


def assess(
    plan: Plan,
    pipeline: Pipeline,
    observed_p99_ms: Mapping[str, float | None],
    state: DriftState | None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    persist: int = DEFAULT_PERSIST,
    buckets_ms: Sequence[float] = (),
) -> tuple[list[StageGap], DriftState]:
    """The gap of every stage of `plan` (what ran while the p99 was observed) that has an observation,
    and the state for the next decision.

    - Faster than predicted counts as much as slower: either way the profile no longer describes what
      serves, and the planner prices every option of the stage from it.
    - A stage without an observation (no requests in the window, a failed scrape) is left out and its
      streak kept as it was: a missing sample says nothing about the profile, and resetting on it would
      let a flaky metric put the event off for ever.
    - `buckets_ms`: the histogram's bucket bounds. histogram_quantile only knows which bucket the p99 is
      in, and interpolates inside it; with MLServer's default buckets (100, 250, 500 ms...) an estimate
      can be off by more than the threshold. With bounds given, the observed p99 is taken as the point of
      its bucket nearest the prediction: same bucket, no gap; elsewhere, the smallest gap it can be.
    - `reprofile` is set on the decision whose streak reaches `persist`, and not again until the gap
      closes or the config changes: one event per episode, also when re-profiling leaves the gap (the
      serving overhead the profiler does not see), which would otherwise re-profile every decision."""
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"the drift threshold must be a positive number, got {threshold}")
    if persist < 1:
        raise ValueError(f"persist must be at least 1 decision, got {persist}")
    before = dict(state.streaks) if state is not None else {}
    gaps: list[StageGap] = []
    after: dict[str, int] = {}
    for sp in plan.stages:
        key = config_key(sp)
        observed = observed_p99_ms.get(sp.stage)
        if observed is None or not math.isfinite(observed) or observed <= 0:
            if key in before:
                after[key] = before[key]
            continue
        try:
            predicted = predicted_p99_ms(pipeline, sp)
        except ProfileError:  # the pipeline changed under what runs: the next plan replaces it
            continue
        ratio = _resolved(observed, predicted, buckets_ms) / predicted - 1.0
        streak = before.get(key, 0) + 1 if abs(ratio) > threshold else 0
        after[key] = streak
        uri = pipeline.model_uri(sp.stage, sp.variant)
        gap = StageGap(
            stage=sp.stage,
            variant=sp.variant,
            model_uri=uri,
            hardware=sp.hardware,
            resources=sp.resources,
            dtype=sp.dtype,
            batch=sp.batch,
            observed_p99_ms=float(observed),
            predicted_p99_ms=predicted,
            ratio=ratio,
            streak=streak,
            reprofile=streak == persist,
        )
        gaps.append(_with_note(gap, persist))
    return gaps, DriftState(after)


def _resolved(observed: float, predicted: float, buckets_ms: Sequence[float]) -> float:
    """The observed p99 as close to the prediction as its histogram bucket allows."""
    bounds = sorted(b for b in buckets_ms if math.isfinite(b))
    if not bounds:
        return observed
    i = bisect.bisect_left(bounds, observed)  # the bucket (bounds[i-1], bounds[i]] holds the estimate
    lo = bounds[i - 1] if i > 0 else 0.0
    hi = bounds[i] if i < len(bounds) else math.inf
    return min(max(predicted, lo), hi)


def _with_note(gap: StageGap, persist: int) -> StageGap:
    version = gap.version
    if gap.reprofile and version is None:
        note = (
            f"re-profiling due, but {gap.model_uri or 'a zoo model'} is not a registered model version: "
            "no event; profile it again with `ipa profile`"
        )
    elif gap.reprofile and version is not None:
        note = f"re-profiling {version[0]} v{version[1]} on {gap.hardware} {gap.resources} {gap.dtype}"
    elif gap.streak > persist:
        note = f"re-profiling was asked for at decision {persist} of this gap"
    elif gap.streak:
        note = f"re-profiling once the gap lasts {persist} decisions"
    else:
        return gap
    return replace(gap, note=note)


def reprofile_events(gaps: Sequence[StageGap]) -> list[dict[str, Any]]:
    """The extras of the `ipa://mlflow/model-versions` events that re-profile each drifting version on
    its shape: what the profiling DAG reads ('name' and 'version'), and why. Emit them as one event
    `{"versions": [...]}` or one event each. A zoo variant has none (its gap's note says so)."""
    events = []
    for g in gaps:
        version = g.version
        if not g.reprofile or version is None:
            continue
        events.append(
            {
                "name": version[0],
                "version": version[1],
                "reason": REASON,
                "stage": g.stage,
                "variant": g.variant,
                "hardware": g.hardware,
                "resources": g.resources,
                "dtype": g.dtype,
                "gap": round(g.ratio, 4),
                "observed_p99_ms": round(g.observed_p99_ms, 3),
                "predicted_p99_ms": round(g.predicted_p99_ms, 3),
            }
        )
    return events
