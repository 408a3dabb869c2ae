"""Adaptation policies: IPA and its baselines, each the same program with extra restrictions.

- ipa: variant, batch and replicas all adapt.
- fa2-low / fa2-high: the variant is pinned to the lightest / heaviest (or the spec's choice).
- rim: replicas are fixed (static provisioning); variant and batch adapt.
- per-stage: each stage must meet its share of the latency budget on its own (equal shares unless the
  spec's baselines.per_stage_shares say), as when every model is adapted alone against its own SLO
  (InfAdapter, or one autoscaler per model); the joint program's advantage over it is what planning
  the pipeline as a whole is worth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..spec import PipelineSpec, Stage


@dataclass(frozen=True)
class Policy:
    name: str = "ipa"
    pinned_variants: Mapping[str, str] = field(default_factory=dict)  # stage -> variant
    fixed_replicas: Mapping[str, int] = field(default_factory=dict)  # stage -> replicas
    budget_shares: Mapping[str, float] = field(default_factory=dict)  # stage -> share of the latency budget


def _lightest(stage: Stage) -> str:
    return min(stage.variants, key=lambda v: (v.accuracy, v.name)).name


def _heaviest(stage: Stage) -> str:
    return max(stage.variants, key=lambda v: (v.accuracy, v.name)).name


def _ipa(spec: PipelineSpec) -> Policy:
    return Policy("ipa")


def _fa2_low(spec: PipelineSpec) -> Policy:
    return Policy(
        "fa2-low", {s.name: spec.baselines.fa2_low.get(s.name) or _lightest(s) for s in spec.stages}
    )


def _fa2_high(spec: PipelineSpec) -> Policy:
    return Policy(
        "fa2-high", {s.name: spec.baselines.fa2_high.get(s.name) or _heaviest(s) for s in spec.stages}
    )


def _rim(spec: PipelineSpec) -> Policy:
    rim = spec.baselines.rim_replicas
    fixed = dict(rim) if isinstance(rim, Mapping) else {s.name: rim for s in spec.stages}
    return Policy("rim", fixed_replicas=fixed)


def _per_stage(spec: PipelineSpec) -> Policy:
    shares = spec.baselines.per_stage_shares or {s.name: 1 / len(spec.stages) for s in spec.stages}
    return Policy("per-stage", budget_shares=dict(shares))


POLICIES: dict[str, Callable[[PipelineSpec], Policy]] = {
    "ipa": _ipa,
    "fa2-low": _fa2_low,
    "fa2-high": _fa2_high,
    "rim": _rim,
    "per-stage": _per_stage,
}


def policy_for(name: str, spec: PipelineSpec) -> Policy:
    try:
        return POLICIES[name](spec)
    except KeyError:
        raise ValueError(f"unknown policy '{name}'; choose one of {', '.join(POLICIES)}") from None
