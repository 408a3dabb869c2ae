"""The fleet program is exact: each pipeline's Pareto set equals the one brute force finds, the fleet's
optimum equals brute force over every combination of every pipeline's plans, and a quota that does not
bind gives every pipeline its single-pipeline optimum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ipa_airflow.fleet import FleetInput, solve_fleet
from ipa_airflow.fleet import brute_force as fleet_brute
from ipa_airflow.fleet.pareto import _nondominated, pareto_front, plan_usage
from ipa_airflow.optimizer import plan_from_data
from ipa_airflow.optimizer.model_data import ModelData
from ipa_airflow.optimizer.policies import policy_for
from tests.synthetic import instances

POOLS = ("cpu",)


def _data(instance, name: str, policy: str = "ipa") -> ModelData:
    spec, profiles, load = instance
    spec = spec.model_copy(update={"name": name})
    return ModelData.build(spec, profiles, load, policy_for(policy, spec))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    instance=instances(max_stages=3, max_variants=3), policy=st.sampled_from(["ipa", "per-stage", "fa2-low"])
)
def test_pareto_front_equals_the_brute_force_front(instance, policy):
    data = _data(instance, "p", policy)
    use, val = fleet_brute.every_plan(data, POOLS)
    front = pareto_front(data, POOLS)
    if len(val) == 0:
        assert front.points == ()
        return
    keep = _nondominated(np.column_stack([use, -val]))
    expected = sorted((round(float(use[i, 0]), 6), round(float(val[i]), 6)) for i in keep)
    got = sorted((round(p.usage[0], 6), round(p.objective, 6)) for p in front.points)
    assert got == expected
    for p in front.points:  # every point is a real plan with the figures it claims
        assert plan_usage(p.choice, POOLS) == p.usage


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fleet=st.lists(instances(max_stages=2, max_variants=2), min_size=2, max_size=3),
    weights=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3),
    share=st.floats(0.2, 1.2),
)
def test_the_fleet_optimum_equals_brute_force(fleet, weights, share):
    inputs = [FleetInput(_data(inst, f"p{i}"), weights[i]) for i, inst in enumerate(fleet)]
    alone = [plan_from_data(i.data) for i in inputs]
    need = sum(plan_usage_of(p) for p in alone)
    quota = {"cpu": max(1.0, round(share * need))}
    try:
        reference = fleet_brute.solve(inputs, quota, limit=2_000_000)
    except fleet_brute.TooLarge:
        assume(False)
        return
    ours = solve_fleet(inputs, quota)
    if reference.objective is None:
        assert not ours.fits and ours.message
        return
    assert ours.fits
    assert _close(sum(o.weight for o in ours.pipelines if not o.sla_met), reference.misses)
    assert _close(ours.program_objective, reference.objective), (ours.program_objective, reference.objective)
    assert ours.pools[0].used <= quota["cpu"] + 1e-9


def plan_usage_of(p) -> float:
    return sum(s.replicas * float(s.resources.split("=")[1]) for s in p.stages)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=st.lists(instances(max_stages=3, max_variants=3), min_size=1, max_size=4))
def test_a_quota_that_does_not_bind_gives_each_pipeline_its_own_optimum(fleet):
    inputs = [FleetInput(_data(inst, f"p{i}")) for i, inst in enumerate(fleet)]
    alone = [plan_from_data(i.data) for i in inputs]
    quota = {"cpu": 1e6}
    ours = solve_fleet(inputs, quota)
    for single, outcome in zip(alone, ours.pipelines, strict=True):
        assert outcome.sla_met == single.feasible
        if single.feasible:
            assert _close(outcome.plan.objective, single.objective)
            assert _close(outcome.alone_objective, single.objective)
            assert outcome.quota_cost == pytest.approx(0.0, abs=1e-9)
            assert outcome.plan.feasible


def test_a_binding_quota_names_what_it_cost_and_never_overcommits(h100_inputs):
    inputs = h100_inputs
    free = solve_fleet(inputs, {"h100": 1e6})
    used = free.pools[0].used
    tight = solve_fleet(inputs, {"h100": round(0.7 * used)})
    assert tight.fits and tight.pools[0].used <= round(0.7 * used)
    assert tight.objective < free.objective
    assert tight.missed == ()
    costs = [o.quota_cost for o in tight.pipelines]
    assert all(c is not None and c >= -1e-9 for c in costs)
    assert any(c > 1e-6 for c in costs)
    assert any(b.startswith("quota[") for o in tight.pipelines for b in o.plan.binding)


def test_a_quota_too_small_for_every_sla_names_the_pipelines_that_miss(h100_inputs):
    inputs = h100_inputs
    lean = sum(min(p.usage[0] for p in pareto_front(i.data, ("h100",)).points) for i in inputs)
    result = solve_fleet(inputs, {"h100": lean - 1})
    assert result.fits
    assert len(result.missed) >= 1
    assert all(name in result.message for name in result.missed)
    for o in result.pipelines:
        assert o.plan.feasible == o.sla_met
    # The quota left over went to the pipelines that miss: nothing is idle that one of them could use.
    assert result.pools[0].used <= lean - 1


def test_a_quota_below_one_replica_per_stage_is_reported_not_raised(h100_inputs):
    result = solve_fleet(h100_inputs, {"h100": 2})
    assert not result.fits
    assert "cannot hold even one replica per stage" in result.message
    assert set(result.missed) == {i.name for i in h100_inputs}
    assert result.to_dict()["fits"] is False


@pytest.fixture(scope="module")
def h100_inputs():
    from ipa_airflow.bench.fleet import synthetic_fleet

    return synthetic_fleet(4, seed=3, load_scale=1.0)


def test_with_several_pools_a_floor_moves_to_the_pool_with_room():
    # Two pipelines that cannot meet their SLA (2 s of latency on a 1 s budget), each runnable on a core
    # or on a GPU, under {cpu: 1, gpu: 1}: one replica each fits, one on the core and one on the GPU.
    from ipa_airflow.optimizer.model_data import Option, StageData

    def data(name: str) -> ModelData:
        core = Option("s0", "v", "xeon", "cpu=1", "fp32", 1, 2.0, 0.0, 10.0, 0.9, 1.0, 1)
        gpu = Option("s0", "v", "h100", "gpu=1", "fp16", 1, 2.0, 0.0, 5.0, 0.9, 1.0, 1)
        return ModelData(name, 5.0, 1.0, 1.0, 0.0, 0.0, "sum", 4, None, 1.0, (StageData("s0", (core, gpu)),))

    inputs = [FleetInput(data("a")), FleetInput(data("b"))]
    quota = {"cpu": 1.0, "gpu": 1.0}
    result = solve_fleet(inputs, quota)
    assert result.fits and result.status == "Optimal" and set(result.missed) == {"a", "b"}
    assert sorted(tuple(o.usage.values()) for o in result.pipelines) == [(0.0, 1.0), (1.0, 0.0)]
    assert "cannot hold even one replica" not in result.message
    reference = fleet_brute.solve(inputs, quota)
    assert reference.objective is not None and _close(result.program_objective, reference.objective)
