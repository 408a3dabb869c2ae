"""The planner's decision, a pure function of a context: `decide(ctx) -> (Decision, state)`.

Built as Ray Serve builds its autoscaling policies, a core and small wrappers around it:
- `stabilised_load`: the load to plan for is the highest of the last `adaptation.stabilisation`
  forecasts (the forecast carries the earlier ones), so capacity is given back only after N lower ones;
- the core: the program, solved under the context's policy for that load;
- `keep_or_switch`: what runs is kept unless it cannot carry the load, or the proposal gains at least
  `adaptation.min_gain` (`switching.choose`); what runs is scored at the same load, so the two compare.
The planner keeps no state of its own: the state in the context is handed back as it came.
"""

from __future__ import annotations

import logging
from typing import Any

from ..optimizer import ConfigError, policy_for, score_config
from ..optimizer import plan as solve
from ..plans import Plan
from ..switching import Switch, choose, held_load
from .context import Context
from .decision import Decision

log = logging.getLogger(__name__)


def stabilised_load(ctx: Context) -> float:
    """The highest of the newest `stabilisation` forecasts at the planning quantile."""
    a = ctx.spec.adaptation
    q = ctx.quantile or a.quantile
    return held_load(ctx.forecast.held(q, a.stabilisation), a.stabilisation)


def running_plan(ctx: Context, load: float) -> Plan | None:
    """What runs, scored as a plan at `load` (None when nothing runs, or the spec no longer offers it)."""
    if ctx.running is None:
        return None
    try:
        return score_config(ctx.spec, ctx.pipeline.profiles, load, ctx.running, policy=ctx.policy)
    except ConfigError as exc:  # the spec changed under a running pipeline: replace what runs
        log.warning("the running configuration is not one the spec offers (%s); switching", exc)
        return None


def keep_or_switch(ctx: Context, proposal: Plan, load: float) -> Switch:
    shares = policy_for(ctx.policy, ctx.spec).budget_shares
    return choose(running_plan(ctx, load), proposal, load, ctx.spec, shares)


def load_basis(ctx: Context) -> dict[str, Any]:
    """The numbers behind `stabilised_load`, for the record."""
    a = ctx.spec.adaptation
    q = ctx.quantile or a.quantile
    return {
        "quantile": q,
        "point": ctx.forecast.point,
        "now": ctx.forecast.at(q),
        "held": ctx.forecast.held(q, a.stabilisation),
    }


def decide(ctx: Context) -> tuple[Decision, Any]:
    load = stabilised_load(ctx)
    proposal = solve(ctx.spec, ctx.pipeline.profiles, load, policy=ctx.policy)
    switch = keep_or_switch(ctx, proposal, load)
    decision = Decision(
        plan=switch.plan,
        previous_plan_id=ctx.previous_plan_id,
        reason=switch.reason,
        proposal_id=proposal.plan_id,
        load_rps=load,
        solve_s=proposal.solve_time_s,
        models=models_of(ctx, switch.plan),
        pipeline=pipeline_info(ctx, switch.plan),
        load_basis=load_basis(ctx),
    )
    return decision, ctx.state


def models_of(ctx: Context, plan: Plan) -> dict[str, str]:
    """The model each stage of `plan` runs: its registered version, else the zoo model."""
    out = {}
    for s in plan.stages:
        uri = ctx.pipeline.model_uri(s.stage, s.variant)
        out[s.stage] = uri or f"zoo:{_profile_model(ctx, s.stage, s.variant)}"
    return out


def _profile_model(ctx: Context, stage: str, variant: str) -> str:
    for v in ctx.spec.stage(stage).variants:
        if v.name == variant:
            return v.profile_model
    return variant


def pipeline_info(ctx: Context, plan: Plan) -> dict[str, Any]:
    """Where the pipeline came from, every registry version looked at, and the registry variants the
    plan runs: the reconcile renders them (the spec file does not list them), on whatever worker."""
    p = ctx.pipeline
    listed = {(s.name, v.name) for s in ctx.spec.stages if s.registered_model is None for v in s.variants}
    variants = {}
    for s in plan.stages:
        if (s.stage, s.variant) in listed:
            continue
        for v in ctx.spec.stage(s.stage).variants:
            if v.name == s.variant and v.model_uri and ctx.spec.stage(s.stage).registered_model is not None:
                variants[s.stage] = v.model_dump(mode="json", exclude_none=True)
    return {
        "origin": p.origin,
        "note": p.note,
        "refreshed_at": p.refreshed_at,
        "candidates": [c.to_dict() for c in p.candidates],
        "variants": variants,
    }
