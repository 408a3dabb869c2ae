"""The planner's decision, a pure function of a context: `decide(ctx) -> (Decision, state)`.

Built as Ray Serve builds its autoscaling policies, a core and small wrappers around it:
- `planning_load`: the forecast now at the planning quantile (never below the rate measured now);
- the core: the program, solved under the context's policy for that load;
- `held_load`: capacity is given back only to a plan that carries every one of the last
  `adaptation.stabilisation` loads (the forecast carries the earlier ones; a burst the fast path met
  counts as one); while a recent load needs it, the program is solved again for the highest of them,
  capped at what runs carries;
- `keep_or_switch`: what runs is kept unless it cannot carry the load, or the proposal gains at least
  `adaptation.min_gain` (`switching.choose`). What runs is scored at the same load, so the two compare.
The planner keeps no state of its own: the state in the context is handed back as it came.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ..optimizer import ConfigError, policy_for, score_config
from ..optimizer import plan as solve
from ..plans import Plan
from ..switching import Switch, carried_load, choose, holds_capacity
from .context import Context
from .decision import Decision

log = logging.getLogger(__name__)


def planning_load(ctx: Context) -> float:
    """The load to plan for: the forecast now at the planning quantile, and never less than the rate
    measured now (a forecast that has not caught up with a burst yet)."""
    return max(forecast_load(ctx), ctx.measured_rps or 0.0)


def forecast_load(ctx: Context) -> float:
    """The forecast now at the planning quantile."""
    return ctx.forecast.at(ctx.quantile or ctx.spec.adaptation.quantile)


def recent_loads(ctx: Context) -> list[float]:
    """The loads the capacity hold compares, oldest first: the earlier `stabilisation` - 1 forecasts at
    the planning quantile, `planning_load` now, and the highest rate the fast path measured over the same
    span (when the driver measures it)."""
    a = ctx.spec.adaptation
    loads = [*ctx.forecast.held(ctx.quantile or a.quantile, a.stabilisation)[:-1], planning_load(ctx)]
    return loads + ([ctx.measured_peak_rps] if ctx.measured_peak_rps is not None else [])


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
    return choose(running_plan(ctx, load), proposal, load, ctx.spec, shares, recent_loads(ctx))


def load_basis(ctx: Context) -> dict[str, Any]:
    """The numbers behind `planning_load` and the capacity hold, for the record."""
    return {
        "quantile": ctx.quantile or ctx.spec.adaptation.quantile,
        "point": ctx.forecast.point,
        "now": forecast_load(ctx),
        "measured": ctx.measured_rps,
        "measured_peak": ctx.measured_peak_rps,
        "recent": recent_loads(ctx),
    }


def held_load(ctx: Context, proposal: Plan, load: float) -> float:
    """The load to plan for once the hold has spoken: `load`, or, when the proposal would give back
    capacity a recent load still needs, the highest recent load, capped at what runs carries. The hold
    keeps capacity, not the variants: a better plan (a new model version, say) is solved for the held load
    and may still take over; nothing is ever planned above what runs because of an older forecast."""
    running = running_plan(ctx, load)
    recent = recent_loads(ctx)
    if running is None or holds_capacity(running, proposal, recent, ctx.spec) is None:
        return load
    return max(load, min(max(recent), carried_load(running, ctx.spec)))


def decide(ctx: Context) -> tuple[Decision, Any]:
    load = planning_load(ctx)
    proposal = solve(ctx.spec, ctx.pipeline.profiles, load, policy=ctx.policy)
    held = held_load(ctx, proposal, load)
    if held > load:
        load, first = held, proposal
        proposal = solve(ctx.spec, ctx.pipeline.profiles, load, policy=ctx.policy)
        proposal = replace(proposal, solve_time_s=proposal.solve_time_s + first.solve_time_s)
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
