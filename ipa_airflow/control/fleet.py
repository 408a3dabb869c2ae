"""The fleet's decision: several pipelines under one quota decided together, a pure function of their
contexts, `decide_fleet(contexts, fleet) -> {pipeline: Decision}`. Every driver (the adaptation DAG, the
loop operator, the simulator) calls this one function when a fleet spec is configured.

- Each pipeline's load is `planning_load(ctx)`, as alone; the joint program (`fleet.plan_fleet`) gives
  each pipeline its proposal, the most weighted objective the quota holds.
- Each pipeline then keeps or switches by the single-pipeline rule (`switching.choose`, with the
  capacity hold over `recent_loads(ctx)`), with one more condition: what is kept must fit. The kept
  plans plus the other pipelines' chosen plans may not take more of any pool than its quota; while they
  would, kept pipelines are switched to the fleet's proposal, the one freeing the most of the pools over
  quota first (ties by name). Freeing the most first needs the fewest forced switches, and each switch
  restarts pods; switching everyone always fits, because the proposals together do.
- Each Decision says what the quota cost it: `load_basis["fleet"]` holds its objective alone and in the
  fleet, the quota cost, its usage and the pools' use; the reason says when the quota binds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..optimizer import policy_for
from ..plans import Plan
from ..switching import Switch, choose
from .context import Context
from .decide import load_basis, models_of, pipeline_info, planning_load, recent_loads, running_plan
from .decision import Decision

if TYPE_CHECKING:  # the fleet package loads PuLP: imported when a fleet is decided, not with control
    from ..fleet import Fleet, FleetPlan

_TOL = 1e-9


def plan_usage(plan: Plan, pools: tuple[str, ...]) -> dict[str, float]:
    """What `plan` takes of each pool: a replica draws its shape's units ('cpu=2': 2 cores) from every
    pool named by its resource kind or its hardware (docs/fleet.md)."""
    out = dict.fromkeys(pools, 0.0)
    for s in plan.stages:
        kind, _, units = s.resources.partition("=")
        for pool in pools:
            if pool in (kind, s.hardware):
                out[pool] += s.replicas * float(units)
    return out


@dataclass(frozen=True)
class _Choice:
    """One pipeline's side of the fleet decision before the quota check of what is kept."""

    ctx: Context
    load: float
    proposal: Plan
    switch: Switch
    proposal_use: dict[str, float]
    kept_use: dict[str, float] | None  # what the running plan takes, when it is kept (else None)

    @property
    def kept(self) -> bool:
        return self.kept_use is not None


def decide_fleet(contexts: Mapping[str, Context], fleet: Fleet) -> dict[str, Decision]:
    """Every pipeline of `fleet` decided together (pipeline name -> Decision, in the fleet's order).

    `contexts` holds one context per pipeline of the fleet, keyed by its name; each context's pipeline
    (as its driver loaded it, registry variants included) is what is planned, with the fleet's weights
    and quota. Raises ValueError for a missing or unknown pipeline, a key that is not its context's
    pipeline, contexts under different policies, or a shape no quota covers."""
    from ..fleet import FleetMember
    from ..fleet import plan_fleet as joint
    from ..fleet.spec import Fleet, uncovered_shapes

    _check(contexts, fleet, uncovered_shapes)
    policies = {ctx.policy for ctx in contexts.values()}
    if len(policies) > 1:
        raise ValueError(
            f"the pipelines of fleet '{fleet.name}' are decided under one policy, got "
            f"{', '.join(sorted(policies))}"
        )
    names = fleet.pipeline_names
    members = tuple(FleetMember(contexts[m.name].pipeline, m.weight) for m in fleet.members)
    loads = {n: planning_load(contexts[n]) for n in names}
    fp = joint(Fleet(fleet.spec, fleet.source, members), loads, policy=policies.pop())
    pools = tuple(fleet.quota)
    quota = fleet.quota
    choices = {n: _choose(contexts[n], fp.outcome(n).plan, loads[n], pools) for n in names}
    forced = _fit_kept(choices, pools, quota)
    use = _total(choices.values(), pools)
    return {n: _decision(choices[n], fp, n in forced, use, quota) for n in names}


def _check(contexts: Mapping[str, Context], fleet: Fleet, uncovered_shapes) -> None:
    names = fleet.pipeline_names
    missing = [n for n in names if n not in contexts]
    unknown = [n for n in contexts if n not in names]
    if missing or unknown:
        said = [f"no context for {', '.join(missing)}"] if missing else []
        said += [f"no pipeline {', '.join(unknown)} in the fleet"] if unknown else []
        raise ValueError(
            f"fleet '{fleet.name}' ({', '.join(names)}) is decided on one context per pipeline: "
            + "; ".join(said)
        )
    for name, ctx in contexts.items():
        if ctx.spec.name != name:
            raise ValueError(f"the context given for '{name}' is pipeline '{ctx.spec.name}'")
        lines = uncovered_shapes(ctx.pipeline, fleet.quota)
        if lines:
            raise ValueError(
                f"pipeline '{name}' as loaded runs shapes fleet '{fleet.name}' has no quota for: "
                + "; ".join(lines)
            )


def _choose(ctx: Context, proposal: Plan, load: float, pools: tuple[str, ...]) -> _Choice:
    """The single-pipeline keep-or-switch rule against the fleet's proposal."""
    running = running_plan(ctx, load)
    shares = policy_for(ctx.policy, ctx.spec).budget_shares
    switch = choose(running, proposal, load, ctx.spec, shares, recent_loads(ctx))
    # What runs, kept: not when it is the proposal itself (then the proposal, with the fleet's figures).
    kept = running is not None and switch.plan is running and running.plan_id != proposal.plan_id
    return _Choice(
        ctx,
        load,
        proposal,
        switch,
        plan_usage(proposal, pools),
        plan_usage(switch.plan, pools) if kept else None,
    )


def _uses(c: _Choice) -> dict[str, float]:
    return c.kept_use if c.kept_use is not None else c.proposal_use


def _total(choices, pools: tuple[str, ...]) -> dict[str, float]:
    return {pool: math.fsum(_uses(c)[pool] for c in choices) for pool in pools}


def _over(use: Mapping[str, float], quota: Mapping[str, float]) -> list[str]:
    return [p for p in quota if use[p] > quota[p] + _TOL * max(1.0, quota[p])]


def _fit_kept(choices: dict[str, _Choice], pools: tuple[str, ...], quota: Mapping[str, float]) -> set[str]:
    """Switch kept pipelines to their proposal until every pool fits; the names switched so. The one
    freeing the most of the pools over quota (as shares of their quotas) goes first: the fewest forced
    switches (each restarts pods) for the room needed; ties by name, so the order is deterministic."""
    forced: set[str] = set()
    while True:
        over = _over(_total(choices.values(), pools), quota)
        if not over:
            return forced

        def freed(name: str, over=over) -> float:
            c = choices[name]
            assert c.kept_use is not None
            gives = {p: max(0.0, c.kept_use[p] - c.proposal_use[p]) for p in over}
            # A pool of quota 0 (drained): any unit given back there counts most; none counts nothing.
            return math.fsum(
                gives[p] / quota[p] if quota[p] > 0 else (math.inf if gives[p] > 0 else 0.0) for p in over
            )

        candidates = [n for n, c in choices.items() if c.kept and freed(n) > 0]
        if not candidates:
            return forced  # the proposals themselves do not fit (a quota below every floor): said below
        name = min(candidates, key=lambda n: (-freed(n), n))
        c = choices[name]
        choices[name] = _Choice(c.ctx, c.load, c.proposal, c.switch, c.proposal_use, None)
        forced.add(name)


def _decision(
    c: _Choice, fp: FleetPlan, forced: bool, use: Mapping[str, float], quota: Mapping[str, float]
) -> Decision:
    ctx, name = c.ctx, c.ctx.spec.name
    outcome = fp.outcome(name)
    plan = c.proposal if forced or not c.kept else c.switch.plan
    cost = outcome.quota_cost
    binds = not outcome.sla_met or (cost is not None and cost > _TOL * max(1.0, abs(outcome.plan.objective)))
    if forced:
        kept_use = ", ".join(f"{c.kept_use[p]:g} {p}" for p in quota if c.kept_use and c.kept_use[p] > 0)
        reason = (
            f"the quota binds: what runs ({kept_use}) does not fit beside the other pipelines' plans, so "
            f"the fleet's proposal replaces it (alone it would be kept: {c.switch.reason})"
        )
    else:
        reason = c.switch.reason
        if binds and plan is c.proposal:
            reason += "; " + _quota_note(outcome, fp)
    if not fp.fits:
        reason += f"; {fp.message}"
    fleet_info: dict[str, Any] = {
        "fleet": fp.fleet,
        "weight": outcome.weight,
        "objective_alone": outcome.alone_objective,
        "objective_in_fleet": outcome.plan.objective,  # the fleet's proposal
        "objective": plan.objective,  # what runs next (the proposal, or what runs kept)
        "quota_cost": cost,
        "quota_binds": binds,
        "sla_met_in_fleet": outcome.sla_met,
        "kept_over_quota": forced,
        "usage": plan_usage(plan, tuple(quota)),
        "pools": {p: {"used": use[p], "quota": quota[p]} for p in quota},
        "missed": list(fp.missed),
        "fits": fp.fits,
    }
    return Decision(
        plan=plan,
        previous_plan_id=ctx.previous_plan_id,
        reason=reason,
        proposal_id=c.proposal.plan_id,
        load_rps=c.load,
        solve_s=fp.solve_time_s,  # the whole fleet's program, solved once for all its pipelines
        models=models_of(ctx, plan),
        pipeline=pipeline_info(ctx, plan),
        load_basis={**load_basis(ctx), "fleet": fleet_info},
    )


def _quota_note(outcome, fp: FleetPlan) -> str:
    if not outcome.sla_met:
        return f"the quota binds: {outcome.plan.message or 'it misses its SLA in the fleet'}"
    return (
        f"the quota binds: objective {outcome.plan.objective:.4f} in the fleet against "
        f"{outcome.alone_objective:.4f} alone"
    )
