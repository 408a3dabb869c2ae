"""The SLO gate, pure: can a pipeline meet its SLA at the recent peak load when one stage runs a given
model version alone? The planner answers (`optimizer.plan`); the answer, the best plan's figures and the
binding constraint become tags on the model version (`candidates.gate_tag`), where people browse them in
the MLflow UI and where the live plan reads them (a version that failed is no candidate for that
pipeline). `registry.gating` reads MLflow and writes the tags; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from .candidates import GATE_TAG, gate_tag
from .pipelines import Pipeline
from .plans import Plan
from .profiles import ProfileSet
from .spec import Variant

PASS, FAIL, PENDING = "pass", "fail", "pending"
# Model-version tag values: MLflow 3 keeps 100,000 characters, older servers' schemas 5,000. The UI shows
# far less; a value cut here says so, and how much was left out.
TAG_VALUE_MAX = 5000
# `optimizer._infeasible_plan` ends its message with what it returned instead; the gate returns nothing.
_BEST_EFFORT = ". Returned the best-effort plan"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one model version for one pipeline (the stage that would run it)."""

    pipeline: str
    stage: str
    model_uri: str
    variant: str
    passed: bool
    peak_rps: float
    reason: str
    plan_summary: str  # the best plan's figures (the best-effort plan's when it fails); '' without a plan
    binding: tuple[str, ...]  # constraints that bind, or, when it fails, that cannot be met
    checked_at: str  # ISO time of the check
    # No plan could be made (no profile, no accuracy yet): 'pending', not 'fail', so the version is not
    # shut out for good before its profile or accuracy arrives.
    pending: bool = False

    @property
    def verdict(self) -> str:
        return PASS if self.passed else PENDING if self.pending else FAIL

    def to_tags(self) -> dict[str, str]:
        """'ipa.gate.<pipeline>' = 'pass' | 'fail', the details under it. Every field is written, empty
        ones as '-', so no detail of an earlier check outlives a re-check."""
        key = gate_tag(self.pipeline)
        tags = {
            key: self.verdict,
            f"{key}.reason": self.reason,
            f"{key}.stage": self.stage,
            f"{key}.peak_rps": f"{self.peak_rps:.6g}",
            f"{key}.plan": self.plan_summary,
            f"{key}.binding": ", ".join(self.binding),
            f"{key}.checked_at": self.checked_at,
        }
        return {k: fit_tag_value(v or "-") for k, v in tags.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["binding"] = list(self.binding)
        return d

    def describe(self) -> str:
        verdict = self.verdict if self.passed else self.verdict.upper()
        return f"{self.pipeline} ({self.stage}={self.variant}): {verdict}: {self.reason}"


def fit_tag_value(value: str, limit: int = TAG_VALUE_MAX) -> str:
    """`value` cut to `limit` characters, saying how many were left out."""
    if len(value) <= limit:
        return value
    for cut in range(limit, 0, -1):  # the note's length depends on the count it states
        note = f" ... ({len(value) - cut} more characters)"
        if cut + len(note) <= limit:
            return value[:cut] + note
    return value[:limit]


def plan_summary(p: Plan) -> str:
    """One line a model version's page can show, e.g. 'detect=yolov5n b4 x2, classify=resnet-v3 b8 x3:
    cost 5, accuracy 0.71, latency 180 of 300 ms'."""
    stages = ", ".join(f"{s.stage}={s.variant} b{s.batch} x{s.replicas}" for s in p.stages)
    return (
        f"{stages}: cost {p.cost:g}, accuracy {p.accuracy:.4g}, "
        f"latency {p.latency_s * 1000:.0f} of {p.sla_s * 1000:.0f} ms"
    )


def why_infeasible(p: Plan) -> str:
    """The planner's diagnosis of an infeasible plan, without what it returned instead."""
    head, _, _ = p.message.partition(_BEST_EFFORT)
    return head or f"infeasible at {p.load_rps:g} req/s"


def with_stage_alone(pipeline: Pipeline, stage: str, variant: Variant) -> Pipeline:
    """The pipeline with `stage` running `variant` alone (no other variant, no registry source); the other
    stages as they are."""
    spec = pipeline.spec
    spec.stage(stage)  # KeyError naming the pipeline's stages
    stages = [
        st.model_copy(update={"variants": [variant], "registered_model": None}) if st.name == stage else st
        for st in spec.stages
    ]
    return Pipeline(spec.model_copy(update={"stages": stages}), pipeline.profiles, pipeline.source)


def gate_version(
    pipeline: Pipeline,
    stage: str,
    variant: Variant,
    profiles: ProfileSet,
    peak_rps: float,
    *,
    now: dt.datetime,
    policy: str = "ipa",
) -> GateResult:
    """Whether `pipeline` meets its SLA at `peak_rps` with `stage` running `variant` (whose profiles,
    keyed as `variant.profile_id(shape)`, are `profiles`) and nothing else there. A variant without a
    profile on any of its shapes fails: nothing says it can keep up."""
    from .optimizer import plan  # loads the solvers: only when a gate runs

    if not (math.isfinite(peak_rps) and peak_rps >= 0):
        raise ValueError(f"the peak load must be a finite number of req/s, at least 0, not {peak_rps}")
    unplanned = GateResult(
        pipeline=pipeline.spec.name,
        stage=stage,
        model_uri=variant.model_uri or "",
        variant=variant.name,
        passed=False,
        peak_rps=peak_rps,
        reason="",
        plan_summary="",
        binding=(),
        checked_at=now.isoformat(timespec="seconds"),
    )
    profiled = [sh for sh in variant.shapes if variant.profile_id(sh) in profiles.profiles]
    if not profiled:
        wanted = ", ".join(f"{s.hardware} {s.resources.key} {s.dtype}" for s in variant.shapes)
        return replace(
            unplanned,
            pending=True,
            reason=f"not profiled on {wanted}: profile it on the pipeline's shapes, then gate it again",
        )
    alone = with_stage_alone(pipeline, stage, variant.model_copy(update={"shapes": profiled}))
    result = plan(alone.spec, alone.profiles.merged(profiles), peak_rps, policy=policy)
    return replace(
        unplanned,
        passed=result.feasible,
        reason=f"meets the SLA at {peak_rps:g} req/s" if result.feasible else why_infeasible(result),
        plan_summary=plan_summary(result) if result.feasible else f"best effort: {plan_summary(result)}",
        binding=result.binding,
    )


# ---- reading the verdicts back: whether an alias may move to a version -----------------------------
def verdicts(tags: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """pipeline -> (verdict, reason) from a model version's tags: the 'ipa.gate.<pipeline>' keys only
    (pipeline names have no dots, so 'ipa.gate.<pipeline>.<field>' are details)."""
    prefix = f"{GATE_TAG}."
    out = {}
    for key, value in tags.items():
        pipeline = key[len(prefix) :]
        if key.startswith(prefix) and pipeline and "." not in pipeline:
            out[pipeline] = (value, tags.get(f"{key}.reason", ""))
    return dict(sorted(out.items()))


def promotion_refusal(tags: Mapping[str, str], *, what: str, alias: str) -> str | None:
    """Why the alias must not move to the version whose tags these are (`what` names it, e.g.
    "video-classifier v3"), or None when every pipeline that gated it passed."""
    found = verdicts(tags)
    if not found:
        return (
            f"{what} has not been through the SLO gate (no '{GATE_TAG}.<pipeline>' tag): gate it first "
            f"(`ipa models gate`), or --force moves '{alias}' anyway"
        )
    failed = {p: (v, r) for p, (v, r) in found.items() if v != PASS}
    if not failed:
        return None
    why = "; ".join(
        f"{p}: {r or 'no reason recorded'}" if v == FAIL else f"{p}: the gate tag is {v!r}, not '{PASS}'"
        for p, (v, r) in failed.items()
    )
    return (
        f"{what} failed the SLO gate for {', '.join(failed)} ({why}): not moving '{alias}' to it. "
        "Re-profile and gate it again, or --force moves it anyway"
    )
