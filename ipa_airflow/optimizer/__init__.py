"""The planner: from a spec, its profiles and a predicted load to a `Plan`.

`plan()` builds the program's data once, solves it with the chosen solver, re-checks the answer
independently, and, when nothing meets the SLA, says which constraint cannot be met and returns the
best-effort plan of highest capacity instead of raising.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from ..plans import Plan, StagePlan
from ..profiles import ProfileSet
from ..spec import PipelineSpec
from .model_data import ModelData, Option, StageData
from .objective import score_choice
from .policies import POLICIES, Policy, policy_for

SOLVERS = ("auto", "milp", "chain", "brute")
# A feasible plan whose latency uses more than this share of the SLA reports the SLA as binding.
_BINDING_SHARE = 0.95

__all__ = [
    "plan",
    "plan_from_data",
    "score_config",
    "ConfigError",
    "ModelData",
    "Option",
    "Policy",
    "POLICIES",
    "SOLVERS",
    "policy_for",
]


class ConfigError(ValueError):
    """A configuration that the spec cannot express (a variant, shape or batch size it does not offer)."""


def plan(
    spec: PipelineSpec,
    profiles: ProfileSet,
    load_rps: float,
    *,
    policy: str = "ipa",
    solver: str = "auto",
) -> Plan:
    data = ModelData.build(spec, profiles, load_rps, policy_for(policy, spec))
    return plan_from_data(data, solver=solver)


def score_config(
    spec: PipelineSpec,
    profiles: ProfileSet,
    load_rps: float,
    config: Sequence[Sequence],
    *,
    policy: str | Policy = "ipa",
) -> Plan:
    """A given configuration (what runs now, or what a baseline pins) as a Plan at `load_rps`: the same
    numbers and objective a solved plan has, so the two compare directly.

    `config` holds one `StagePlan.config_key` per stage: (stage, variant, hardware, resources, dtype,
    batch, replicas)."""
    pol = policy if isinstance(policy, Policy) else policy_for(policy, spec)
    data = ModelData.build(spec, profiles, max(load_rps, 1e-6), pol)
    by_stage = {c[0]: tuple(c) for c in config}
    choice = []
    for st in data.stages:
        key = by_stage.get(st.name)
        if key is None:
            raise ConfigError(f"the configuration has no stage '{st.name}'")
        _, variant, hardware, resources, dtype, batch, replicas = key
        match = [
            o
            for o in st.options + st.too_slow
            if (o.variant, o.hardware, o.resources, o.dtype, o.batch)
            == (variant, hardware, resources, dtype, batch)
        ]
        if not match:
            raise ConfigError(
                f"stage '{st.name}': the spec offers no {variant} on {hardware} {resources} {dtype} "
                f"at batch {batch}"
            )
        choice.append(replace(match[0], replicas=int(replicas)))
    ev = score_choice(data, choice)
    return make_plan(data, tuple(choice), ev, ev.feasible, ev.violations, "given", "given", 0.0, "")


def _pick_solver(data: ModelData, solver: str) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver '{solver}'; choose one of {', '.join(SOLVERS)}")
    if solver != "auto":
        return solver
    # The MILP is IPA's program as published; the chain search is exact too and much faster for the
    # product objective, whose MILP linearisation is weak. It does not model a cost cap.
    if data.accuracy_method == "product" and data.max_cost is None:
        return "chain"
    return "milp"


def plan_from_data(data: ModelData, *, solver: str = "auto") -> Plan:
    # The solvers load PuLP and HiGHS: imported when a plan is solved, not with the package (`ipa --help`).
    from . import brute_force, chain_search, milp

    chosen = _pick_solver(data, solver)
    t0 = time.perf_counter()
    if chosen == "milp":
        exact = milp.solve(data)
        choice, status, solver_name = exact.choice, exact.status, f"milp/{exact.solver}"
    elif chosen == "chain":
        chain = chain_search.solve(data)
        choice, status, solver_name = chain.choice, "Optimal" if chain.feasible else "Infeasible", "chain"
    else:
        brute = brute_force.solve(data)
        choice, status, solver_name = brute.choice, "Optimal" if brute.feasible else "Infeasible", "brute"
    elapsed = time.perf_counter() - t0
    if choice is None:
        return _infeasible_plan(data, solver_name, status, elapsed)
    ev = score_choice(data, choice)
    if not ev.feasible:
        raise AssertionError(f"solver {solver_name} returned a plan that breaks {ev.violations}")
    binding = ("latency_sla",) if ev.latency_s >= _BINDING_SHARE * data.latency_budget_s else ()
    return make_plan(data, choice, ev, True, binding, solver_name, status, elapsed, "")


def make_plan(data, choice, ev, feasible, binding, solver, status, elapsed, message) -> Plan:
    """The one place a Plan is assembled from chosen options (the planner and the fleet program)."""
    stages = tuple(
        StagePlan(
            stage=o.stage,
            variant=o.variant,
            hardware=o.hardware,
            resources=o.resources,
            dtype=o.dtype,
            batch=o.batch,
            replicas=o.replicas,
            latency_s=o.latency_s,
            queue_s=o.queue_s,
            throughput_rps=o.throughput_rps,
            capacity_rps=o.capacity_rps,
            accuracy=o.accuracy,
            cost=o.cost,
        )
        for o in choice
    )
    return Plan(
        pipeline=data.pipeline,
        policy=data.policy.name,
        load_rps=data.load_rps,
        sla_s=data.sla_s,
        feasible=feasible,
        stages=stages,
        accuracy=ev.accuracy,
        cost=ev.cost,
        objective=ev.objective,
        latency_s=ev.latency_s,
        terms={
            "accuracy": data.alpha * ev.accuracy,
            "cost": data.beta * ev.cost,
            "batch": data.gamma * ev.batch_sum,
        },
        binding=tuple(binding),
        solver=solver,
        status=status,
        solve_time_s=elapsed,
        message=message,
    )


def _best_effort(data: ModelData, stage: StageData) -> Option:
    """The option of highest capacity: the fastest one that covers the load, else the one closest to it."""
    fixed = data.policy.fixed_replicas.get(stage.name)
    pinned = data.policy.pinned_variants.get(stage.name)
    candidates = [o for o in stage.options + stage.too_slow if pinned is None or o.variant == pinned]
    if fixed is not None:
        candidates = [replace(o, replicas=fixed) for o in candidates]
    covering = [o for o in candidates if o.replicas <= data.max_replicas and o.capacity_rps >= data.load_rps]
    if covering:
        return min(covering, key=lambda o: (o.total_latency_s, o.cost))
    capped = [_at_most(o, data.max_replicas) for o in candidates]
    return max(capped, key=lambda o: (o.capacity_rps, -o.total_latency_s))


def _at_most(o: Option, replicas: int) -> Option:
    return replace(o, replicas=min(o.replicas, replicas))


def _diagnose(data: ModelData, choice: Sequence[Option]) -> tuple[list[str], str]:
    restricted = data.restricted()
    covering = data.restricted(stage_budgets=False)
    binding, reasons = [], []
    for st, cov in zip(restricted.stages, covering.stages, strict=True):
        if st.options:
            continue
        if not cov.options:
            best = next(o for o in choice if o.stage == st.name)
            binding.append(f"throughput[{st.name}]")
            reasons.append(
                f"stage '{st.name}' reaches at most {best.capacity_rps:.1f} req/s with {best.replicas} "
                f"replicas of {best.variant} at batch {best.batch}, "
                f"below the load of {data.load_rps:.1f} req/s"
            )
        else:
            fastest = min(o.total_latency_s for o in cov.options)
            share_s = data.stage_budget_s(st.name)
            assert share_s is not None  # only the stage's own budget tells the two filters apart
            binding.append(f"stage_budget[{st.name}]")
            reasons.append(
                f"stage '{st.name}' needs {fastest * 1000:.1f} ms at this load, over its share of "
                f"{share_s * 1000:.1f} ms of the latency budget"
            )
    fastest = sum(min(o.total_latency_s for o in st.options) for st in restricted.stages if st.options)
    if fastest > data.latency_budget_s:
        binding.append("latency_sla")
        budget = (
            f"the SLA of {data.sla_s * 1000:.1f} ms"
            if data.latency_budget_s == data.sla_s
            else f"the latency budget of {data.latency_budget_s * 1000:.1f} ms (the SLA less its headroom)"
        )
        reasons.append(f"the fastest configuration takes {fastest * 1000:.1f} ms, over {budget}")
    if not binding and data.max_cost is not None:
        binding.append("max_cost")
        reasons.append(f"no configuration that meets the SLA costs at most {data.max_cost:g}")
    return binding, "; ".join(reasons) or "no configuration satisfies every constraint"


def _infeasible_plan(data: ModelData, solver: str, status: str, elapsed: float) -> Plan:
    choice = tuple(_best_effort(data, st) for st in data.stages)
    binding, reason = _diagnose(data, choice)
    ev = score_choice(data, choice)
    message = (
        f"infeasible at {data.load_rps:.1f} req/s: {reason}. "
        "Returned the best-effort plan of highest capacity."
    )
    return make_plan(data, choice, ev, False, binding, solver, status, elapsed, message)
