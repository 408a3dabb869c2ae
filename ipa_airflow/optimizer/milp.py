"""IPA's integer program, built with PuLP and solved in-process with HiGHS (CBC as the fallback).

One binary x[s,o] per stage option, where an option is a (variant, shape, batch) triple: this is IPA's
x[s,m] * y[s,b] product linearised exactly, since exactly one of each is chosen. Replicas are integers
n[s,o] that may be non-zero only for the chosen option. The pipeline accuracy is exact for any number of
stages; the product (PAS) is chained stage by stage with one continuous variable per (stage, variant).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import pulp

from .model_data import ModelData, Option
from .objective import score_choice

# Options whose latency alone cannot fit the SLA are left out of the model (they could never be chosen).
_EPS = 1e-9


@dataclass
class MilpModel:
    problem: pulp.LpProblem
    options: dict[str, list[Option]]  # stage -> options in the model
    x: dict[tuple[str, int], pulp.LpVariable]
    n: dict[tuple[str, int], pulp.LpVariable]
    accuracy: pulp.LpAffineExpression


@dataclass(frozen=True)
class MilpResult:
    status: str  # PuLP's status text: Optimal, Infeasible, ...
    feasible: bool
    choice: tuple[Option, ...] | None
    objective: float | None
    solver: str
    build_s: float
    solve_s: float


def _name(text: str) -> str:
    # LP-format names cannot hold '-', '/', '=' or spaces.
    return "".join(c if c.isalnum() else "_" for c in text)


def _usable_options(data: ModelData) -> dict[str, list[Option]]:
    min_latency = {
        st.name: min((o.total_latency_s for o in st.options), default=math.inf) for st in data.stages
    }
    total_min = sum(min_latency.values())
    usable = {}
    for st in data.stages:
        budget = data.latency_budget_s - (total_min - min_latency[st.name])
        usable[st.name] = [o for o in st.options if o.total_latency_s <= budget + _EPS]
    return usable


def add_one_option_per_stage(prob, data, x, options) -> None:
    for st in data.stages:
        prob += pulp.lpSum(x[st.name, i] for i in range(len(options[st.name]))) == 1, f"one_option[{st.name}]"


def add_throughput(prob, data, x, n, options) -> None:
    """n * throughput >= load for the chosen option; since n is an integer that is n >= ceil(load / h)."""
    for st in data.stages:
        for i, o in enumerate(options[st.name]):
            key = f"{st.name}_{i}"
            prob += n[st.name, i] >= o.replicas * x[st.name, i], f"throughput[{key}]"
            prob += n[st.name, i] <= data.max_replicas * x[st.name, i], f"replicas_only_if_chosen[{key}]"


def add_latency_sla(prob, data, x, options) -> None:
    """Sum over stages of batch latency plus batch-filling time (b - 1) / load stays within the SLA."""
    prob += (
        pulp.lpSum(o.total_latency_s * x[s, i] for s, opts in options.items() for i, o in enumerate(opts))
        <= data.latency_budget_s,
        "latency_sla",
    )


def add_max_cost(prob, data, n, options) -> None:
    if data.max_cost is not None:
        prob += (
            pulp.lpSum(o.unit_cost * n[s, i] for s, opts in options.items() for i, o in enumerate(opts))
            <= data.max_cost,
            "max_cost",
        )


def add_pinned_variants(prob, data, x, options) -> None:
    """FA2 baselines: the variant is fixed; only shape, batch and replicas adapt."""
    for stage, variant in data.policy.pinned_variants.items():
        others = [x[stage, i] for i, o in enumerate(options[stage]) if o.variant != variant]
        if others:
            prob += pulp.lpSum(others) == 0, f"pinned_variant[{stage}]"


def add_fixed_replicas(prob, data, n, options) -> None:
    """RIM baseline: replicas are provisioned statically."""
    for stage, replicas in data.policy.fixed_replicas.items():
        prob += (
            pulp.lpSum(n[stage, i] for i in range(len(options[stage]))) == replicas,
            f"fixed_replicas[{stage}]",
        )


def add_stage_budgets(prob, data, x, options) -> None:
    """Per-stage baseline: each stage meets its own share of the latency budget."""
    for stage in options:
        budget = data.stage_budget_s(stage)
        if budget is not None:
            prob += (
                pulp.lpSum(o.total_latency_s * x[stage, i] for i, o in enumerate(options[stage])) <= budget,
                f"stage_budget[{stage}]",
            )


def accuracy_sum(data, x, options) -> pulp.LpAffineExpression:
    return pulp.lpSum(o.accuracy * x[s, i] for s, opts in options.items() for i, o in enumerate(opts))


def add_pas_product(prob, data, x, options) -> pulp.LpAffineExpression:
    """Pipeline accuracy as the product of stage accuracies, exact for any chain length.

    p_1 = sum_m a[1,m] X[1,m]; for later stages w[s,m] = p_{s-1} * X[s,m] (X binary, p in [0, 1]) is exact
    with four linear inequalities, and p_s = sum_m a[s,m] w[s,m].
    """
    prev = None
    for k, st in enumerate(data.stages):
        by_variant: dict[str, list[int]] = {}
        for i, o in enumerate(options[st.name]):
            by_variant.setdefault(o.variant, []).append(i)
        chosen = {m: pulp.lpSum(x[st.name, i] for i in idx) for m, idx in by_variant.items()}
        acc = {m: options[st.name][idx[0]].accuracy for m, idx in by_variant.items()}
        if prev is None:
            prev = pulp.lpSum(acc[m] * chosen[m] for m in chosen)
            continue
        terms = []
        for j, (m, x_m) in enumerate(chosen.items()):
            # Indices keep names unique even where two names differ only in characters LP cannot hold.
            w = prob.add_variable(f"w_{k}_{j}_{_name(m)}", lowBound=0, upBound=1)
            key = f"{st.name}_{m}"
            prob += w <= x_m, f"pas_le_choice[{key}]"
            prob += w <= prev, f"pas_le_prev[{key}]"
            prob += w >= prev - (1 - x_m), f"pas_ge[{key}]"
            terms.append(acc[m] * w)
        prev = pulp.lpSum(terms)
    return prev


def build_model(data: ModelData, options: dict[str, list[Option]] | None = None) -> MilpModel:
    """The whole program, one named constraint family at a time."""
    options = options if options is not None else _usable_options(data)
    prob = pulp.LpProblem(f"ipa_{_name(data.pipeline)}", pulp.LpMaximize)
    x, n = {}, {}
    for k, (s, opts) in enumerate(options.items()):
        for i, o in enumerate(opts):
            tag = f"{k}_{i}_{_name(s)}_{_name(o.variant)}_b{o.batch}"
            x[s, i] = prob.add_variable(f"x_{tag}", cat=pulp.LpBinary)
            n[s, i] = prob.add_variable(f"n_{tag}", lowBound=0, upBound=data.max_replicas, cat=pulp.LpInteger)
    add_one_option_per_stage(prob, data, x, options)
    add_throughput(prob, data, x, n, options)
    add_latency_sla(prob, data, x, options)
    add_max_cost(prob, data, n, options)
    add_pinned_variants(prob, data, x, options)
    add_fixed_replicas(prob, data, n, options)
    add_stage_budgets(prob, data, x, options)
    if data.accuracy_method == "product":
        accuracy = add_pas_product(prob, data, x, options)
    else:
        accuracy = accuracy_sum(data, x, options)
    cost = pulp.lpSum(o.unit_cost * n[s, i] for s, opts in options.items() for i, o in enumerate(opts))
    batch = pulp.lpSum(o.batch * x[s, i] for s, opts in options.items() for i, o in enumerate(opts))
    prob += data.accuracy_weight * accuracy - data.beta * cost - data.gamma * batch, "objective"
    return MilpModel(prob, options, x, n, accuracy)


def _solver(time_limit_s: float | None):
    highs = pulp.HiGHS(msg=False, timeLimit=time_limit_s)
    if highs.available():
        return highs
    return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)


def solve(data: ModelData, *, time_limit_s: float | None = 30.0, lp_file: str | None = None) -> MilpResult:
    t0 = time.perf_counter()
    options = _usable_options(data)
    if any(not opts for opts in options.values()):
        # A stage with no usable option: the program is infeasible before any solver runs.
        return MilpResult("Infeasible", False, None, None, "presolve", time.perf_counter() - t0, 0.0)
    model = build_model(data, options)
    if lp_file:
        model.problem.writeLP(lp_file)
    t1 = time.perf_counter()
    solver = _solver(time_limit_s)
    model.problem.solve(solver)
    t2 = time.perf_counter()
    # PuLP reports a time-limited incumbent as 'Optimal'; its solution status tells the two apart.
    found = model.problem.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    feasible = model.problem.status == pulp.LpStatusOptimal and found
    if feasible and model.problem.sol_status != pulp.LpSolutionOptimal:
        status = "Feasible (time limit: not proven optimal)"
    else:
        status = pulp.LpStatus[model.problem.status]
    choice = None
    objective = None
    if feasible:
        picked = []
        for s, opts in model.options.items():
            i = max(range(len(opts)), key=lambda i: model.x[s, i].value() or 0.0)
            replicas = round(model.n[s, i].value() or 0)
            o = opts[i]
            # With beta = 0 any replica count above the minimum is optimal; report the minimum.
            if not data.policy.fixed_replicas:
                replicas = o.replicas
            picked.append(_with_replicas(o, replicas))
        choice = tuple(picked)
        # The solver's own objective carries its feasibility tolerances; score the choice exactly instead.
        objective = score_choice(data, choice).objective
    return MilpResult(status, feasible, choice, objective, solver.name, t1 - t0, t2 - t1)


def _with_replicas(o: Option, replicas: int) -> Option:
    return replace(o, replicas=replicas) if replicas != o.replicas else o
