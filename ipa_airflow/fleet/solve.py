"""The fleet program: every pipeline's program, unchanged, plus one capacity constraint per quota pool
across all of them, maximising the weighted sum of the pipelines' objectives. Exact.

Each pipeline's program is replaced by its Pareto set over (usage per pool, objective) at its load
(pareto.py): any plan off that set is beaten by one on it, whatever the others do. What remains is a
multiple-choice knapsack, one plan per pipeline, solved as a small MILP in HiGHS (gap 0):

    max  sum_p w_p sum_i v[p,i] y[p,i]
    s.t. one_plan[p]:   sum_i y[p,i] = 1                      for every pipeline p
         quota[k]:      sum_p sum_i u[p,i,k] y[p,i] <= Q_k     for every pool k
         y binary

When the quota cannot hold an SLA-meeting plan for every pipeline, each pipeline also has floor items:
one replica per stage of the smallest shape (one per usage of the pools not beaten in every pool, so
that with several pools a floor can move to the pool with room), which misses its SLA. The program then
first minimises the weight of the pipelines that miss (misses[...]), and with that fixed maximises the
objective: the most valuable plan that fits, the pipelines that miss named, never an exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulp

from ..optimizer import make_plan
from ..optimizer.model_data import ModelData, Option
from ..optimizer.objective import score_choice
from ..plans import Plan
from .pareto import Front, option_kind_units, option_usage, pareto_front, plan_usage, pools_of

_TOL = 1e-9


@dataclass(frozen=True)
class FleetInput:
    """One pipeline of the fleet at its load: the program's data and how much its objective counts."""

    data: ModelData
    weight: float = 1.0

    @property
    def name(self) -> str:
        return self.data.pipeline


@dataclass(frozen=True)
class PipelineOutcome:
    pipeline: str
    weight: float
    load_rps: float
    plan: Plan  # what it runs in the fleet
    alone_objective: float | None  # its single-pipeline optimum, as if it owned the cluster (None: none)
    usage: Mapping[str, float]  # what its plan takes of each pool
    sla_met: bool

    @property
    def quota_cost(self) -> float | None:
        """What sharing the quota cost this pipeline: its objective alone less its objective in the fleet."""
        if self.alone_objective is None or not self.sla_met:
            return None
        return self.alone_objective - self.plan.objective

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "weight": self.weight,
            "load_rps": self.load_rps,
            "sla_met": self.sla_met,
            "objective": self.plan.objective,
            "alone_objective": self.alone_objective,
            "quota_cost": self.quota_cost,
            "usage": dict(self.usage),
            "plan": self.plan.to_dict(),
        }


@dataclass(frozen=True)
class PoolUse:
    pool: str
    used: float
    quota: float

    @property
    def fits(self) -> bool:
        return self.used <= self.quota + _TOL * max(1.0, self.quota)


@dataclass(frozen=True)
class FleetPlan:
    fleet: str
    pipelines: tuple[PipelineOutcome, ...]
    pools: tuple[PoolUse, ...]
    objective: float  # the weighted sum of the pipelines' objectives
    fits: bool  # every pool within its quota
    status: str  # Optimal, or why no plan fits
    solver: str
    solve_time_s: float  # fronts and knapsack (the programs' data built before)
    timings: Mapping[str, float] = field(default_factory=dict)
    front_points: int = 0  # plans the knapsack chose among
    # The program's optimum: the weighted objective before the quota left over went to pipelines that
    # miss their SLA (equal to `objective` when none does).
    program_objective: float = 0.0
    message: str = ""

    @property
    def missed(self) -> tuple[str, ...]:
        """The pipelines whose plan misses their SLA."""
        return tuple(o.pipeline for o in self.pipelines if not o.sla_met)

    def outcome(self, pipeline: str) -> PipelineOutcome:
        for o in self.pipelines:
            if o.pipeline == pipeline:
                return o
        raise KeyError(pipeline)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "objective": self.objective,
            "fits": self.fits,
            "missed": list(self.missed),
            "status": self.status,
            "solver": self.solver,
            "solve_time_s": self.solve_time_s,
            "timings": dict(self.timings),
            "front_points": self.front_points,
            "program_objective": self.program_objective,
            "message": self.message,
            "pools": [{"pool": p.pool, "used": p.used, "quota": p.quota} for p in self.pools],
            "pipelines": [o.to_dict() for o in self.pipelines],
        }


def floor_choice(data: ModelData, pools: Sequence[str], quota: Mapping[str, float]) -> tuple[Option, ...]:
    """The least a pipeline can run: one replica per stage of the option that takes the smallest share
    of the quota (then the fastest). It keeps every stage up (a stage at zero drops every request)."""
    choice = []
    for st in data.stages:
        every = st.options + st.too_slow
        pinned = data.policy.pinned_variants.get(st.name)
        candidates = [o for o in every if pinned is None or o.variant == pinned] or list(every)

        def share(o: Option) -> tuple[float, float]:
            _, units = option_kind_units(o)
            hits = pools_of(o, pools)
            return sum(
                units / quota[pools[k]] if quota[pools[k]] > 0 else math.inf for k in hits
            ), -o.throughput_rps

        choice.append(replace(min(candidates, key=share), replicas=1))
    return tuple(choice)


def floor_choices(
    data: ModelData, pools: Sequence[str], quota: Mapping[str, float]
) -> list[tuple[Option, ...]]:
    """Every least way to run one replica per stage: `floor_choice` first, then one plan per usage of the
    pools that no other floor beats in every pool (the fastest option for each). With several pools one
    floor is not enough: two pipelines whose floors both take the one core of `{cpu: 1, gpu: 1}` fit when
    one of them runs on the GPU instead."""
    d = len(pools)
    combos: dict[tuple[float, ...], tuple[Option, ...]] = {tuple([0.0] * d): ()}
    for st in data.stages:
        pinned = data.policy.pinned_variants.get(st.name)
        every = st.options + st.too_slow
        candidates = [o for o in every if pinned is None or o.variant == pinned] or list(every)
        fastest: dict[tuple[float, ...], Option] = {}
        for o in candidates:
            one = replace(o, replicas=1)
            u = option_usage(one, pools)
            if u not in fastest or one.throughput_rps > fastest[u].throughput_rps:
                fastest[u] = one
        grown: dict[tuple[float, ...], tuple[Option, ...]] = {}
        for base, choice in combos.items():
            for u, o in fastest.items():
                total = tuple(a + b for a, b in zip(base, u, strict=True))
                grown.setdefault(total, (*choice, o))
        combos = {u: c for u, c in grown.items() if not any(_beats(v, u) for v in grown)}
    first = floor_choice(data, pools, quota)
    lean = plan_usage(first, pools)
    return [first, *(c for u, c in combos.items() if u != lean)]


def _beats(v: Sequence[float], u: Sequence[float]) -> bool:
    """v uses no more of any pool than u, and less of one."""
    return all(a <= b for a, b in zip(v, u, strict=True)) and any(a < b for a, b in zip(v, u, strict=True))


@dataclass(frozen=True)
class _Item:
    pipeline: int
    choice: tuple[Option, ...]
    usage: tuple[float, ...]
    objective: float
    sla_met: bool


def solve_fleet(
    inputs: Sequence[FleetInput],
    quota: Mapping[str, float],
    *,
    name: str = "fleet",
    time_limit_s: float | None = 60.0,
) -> FleetPlan:
    """The exact fleet plan of `inputs` (each a pipeline's program at its load) under `quota`."""
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"pipeline names repeat in the fleet: {names}")
    pools = tuple(quota)
    t0 = time.perf_counter()
    fronts: list[Front] = [pareto_front(i.data, pools) for i in inputs]
    t1 = time.perf_counter()
    items: list[_Item] = []
    for p, front in enumerate(fronts):
        items += [_Item(p, pt.choice, pt.usage, pt.objective, True) for pt in front.points]
    floors = [floor_choice(i.data, pools, quota) for i in inputs]
    need_floors = any(not f.points for f in fronts) or not _leanest_fit(fronts, pools, quota)
    if need_floors:
        items += [
            _Item(p, c, plan_usage(c, pools), score_choice(i.data, c).objective, False)
            for p, i in enumerate(inputs)
            for c in floor_choices(i.data, pools, quota)
        ]
    picked, status, solver = _knapsack(inputs, items, pools, quota, need_floors, time_limit_s)
    t2 = time.perf_counter()
    message = ""
    if picked is None:
        # Not even one replica per stage of every pipeline fits: say so, and show the floors.
        picked = [
            _Item(p, c, plan_usage(c, pools), score_choice(i.data, c).objective, False)
            for p, (i, c) in enumerate(zip(inputs, floors, strict=True))
        ]
        message = (
            "the quota cannot hold even one replica per stage of every pipeline: every pipeline is shown "
            "at that floor, which does not fit; raise the quota or remove pipelines"
        )
    program_objective = math.fsum(inputs[it.pipeline].weight * it.objective for it in picked)
    if not message:
        picked = _fill(inputs, picked, pools, quota)
    elapsed = t2 - t0
    outcomes = []
    for p, (inp, item) in enumerate(zip(inputs, sorted(picked, key=lambda it: it.pipeline), strict=True)):
        front = fronts[p]
        alone = max((pt.objective for pt in front.points), default=None)
        outcomes.append(_outcome(inp, item, alone, front, pools, status, solver, elapsed))
    used = [math.fsum(it.usage[k] for it in picked) for k in range(len(pools))]
    pool_use = tuple(PoolUse(pool, used[k], float(quota[pool])) for k, pool in enumerate(pools))
    missed = [o.pipeline for o in outcomes if not o.sla_met]
    if missed and not message:
        message = (
            f"the quota cannot hold an SLA-meeting plan for every pipeline: {', '.join(missed)} "
            f"{'misses its' if len(missed) == 1 else 'miss their'} SLA, given what the quota has left"
        )
    return FleetPlan(
        fleet=name,
        pipelines=tuple(outcomes),
        pools=pool_use,
        objective=math.fsum(o.weight * o.plan.objective for o in outcomes),
        fits=all(p.fits for p in pool_use),
        status=status,
        solver=solver,
        solve_time_s=elapsed,
        timings={"fronts_s": t1 - t0, "knapsack_s": t2 - t1},
        front_points=sum(len(f.points) for f in fronts),
        program_objective=program_objective,
        message=message,
    )


def _leanest_fit(fronts: Sequence[Front], pools: Sequence[str], quota: Mapping[str, float]) -> bool:
    """Whether every pipeline's plan of smallest quota share fits together: then no floor is needed."""
    total = [0.0] * len(pools)
    for front in fronts:
        lean = min(front.points, key=lambda pt: _share(pt.usage, pools, quota))
        total = [a + b for a, b in zip(total, lean.usage, strict=True)]
    return all(total[k] <= quota[pool] + _TOL for k, pool in enumerate(pools))


def _share(usage: Sequence[float], pools: Sequence[str], quota: Mapping[str, float]) -> float:
    return sum(
        u / quota[pool] if quota[pool] > 0 else (math.inf if u > 0 else 0.0)
        for u, pool in zip(usage, pools, strict=True)
    )


def _fill(inputs, picked: list[_Item], pools, quota) -> list[_Item]:
    """Give what the quota has left to the pipelines that miss their SLA, a replica at a time to the
    stage of least capacity, heaviest pipelines first, up to the replicas the load needs: they still
    miss, but serve what they can."""
    left = [quota[pool] - math.fsum(it.usage[k] for it in picked) for k, pool in enumerate(pools)]
    out = {it.pipeline: it for it in picked}
    missed = sorted((p for p, it in out.items() if not it.sla_met), key=lambda p: -inputs[p].weight)
    for p in missed:
        data = inputs[p].data
        full = {
            (o.stage, o.variant, o.hardware, o.resources, o.dtype, o.batch): o.replicas
            for st in data.stages
            for o in st.options + st.too_slow
        }
        choice = list(out[p].choice)
        while True:
            growable = [
                i
                for i, o in enumerate(choice)
                if o.replicas
                < min(
                    data.max_replicas, full[(o.stage, o.variant, o.hardware, o.resources, o.dtype, o.batch)]
                )
                and all(
                    u <= left[k] + _TOL for k, u in enumerate(option_usage(replace(o, replicas=1), pools))
                )
            ]
            if not growable:
                break
            i = min(growable, key=lambda i: choice[i].capacity_rps)
            one = option_usage(replace(choice[i], replicas=1), pools)
            left = [left[k] - one[k] for k in range(len(pools))]
            choice[i] = replace(choice[i], replicas=choice[i].replicas + 1)
        c = tuple(choice)
        out[p] = _Item(p, c, plan_usage(c, pools), score_choice(data, c).objective, False)
    return [out[p] for p in sorted(out)]


def _lp_name(text: str) -> str:
    # LP-format names cannot hold '-', '/', '=' or spaces.
    return "".join(c if c.isalnum() else "_" for c in text)


def _knapsack(inputs, items: list[_Item], pools, quota, with_floors: bool, time_limit_s):
    """The multiple-choice knapsack over the items; with floors, misses first, then the objective."""
    prob = pulp.LpProblem("fleet", pulp.LpMaximize)
    y = [prob.add_variable(f"y_{j}", cat=pulp.LpBinary) for j in range(len(items))]
    for p, inp in enumerate(inputs):
        mine = [y[j] for j, it in enumerate(items) if it.pipeline == p]
        prob += pulp.lpSum(mine) == 1, f"one_plan[{p}_{_lp_name(inp.name)}]"
    for k, pool in enumerate(pools):
        terms = [it.usage[k] * y[j] for j, it in enumerate(items) if it.usage[k] > 0]
        if terms:
            prob += pulp.lpSum(terms) <= quota[pool], f"quota[{k}_{_lp_name(pool)}]"
    value = pulp.lpSum(inputs[it.pipeline].weight * it.objective * y[j] for j, it in enumerate(items))
    solver = pulp.HiGHS(msg=False, gapRel=0.0, gapAbs=1e-9, timeLimit=time_limit_s)
    if with_floors:
        misses = pulp.lpSum(inputs[it.pipeline].weight * y[j] for j, it in enumerate(items) if not it.sla_met)
        prob.setObjective(-misses)
        prob.solve(solver)
        if prob.status != pulp.LpStatusOptimal:
            return None, "Infeasible", "highs"
        least = pulp.value(misses) or 0.0
        prob += misses <= least + 1e-7, "misses[least]"
    prob.setObjective(value)
    prob.solve(solver)
    if prob.status != pulp.LpStatusOptimal:
        return None, pulp.LpStatus[prob.status], "highs"
    status = (
        "Optimal"
        if prob.sol_status == pulp.LpSolutionOptimal
        else "Feasible (time limit: not proven optimal)"
    )
    picked = [it for j, it in enumerate(items) if (y[j].value() or 0.0) > 0.5]
    return picked, status, "knapsack/highs"


def _outcome(
    inp: FleetInput, item: _Item, alone, front: Front, pools, status, solver, elapsed
) -> PipelineOutcome:
    data = inp.data
    ev = score_choice(data, item.choice)
    usage = {pool: item.usage[k] for k, pool in enumerate(pools)}
    if item.sla_met:
        binding = (
            tuple(f"quota[{pool}]" for pool in pools if usage[pool] > 0)
            if (alone is not None and item.objective < alone - 1e-9 * max(1.0, abs(alone)))
            else ()
        )
        if ev.latency_s >= 0.95 * data.latency_budget_s:
            binding = ("latency_sla", *binding)
        message = ""
    else:
        binding = ev.violations
        why = (
            "no plan meets its SLA at this load"
            if not front.points
            else "the quota cannot hold a plan that meets its SLA beside the others'"
        )
        message = f"misses its SLA at {data.load_rps:.1f} req/s: {why}; given what the quota has left"
    plan = make_plan(
        data, item.choice, ev, item.sla_met, binding, f"fleet/{solver}", status, elapsed, message
    )
    return PipelineOutcome(inp.name, inp.weight, data.load_rps, plan, alone, usage, item.sla_met)
