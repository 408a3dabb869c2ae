"""Property tests: on hundreds of random small programs every solver finds the brute-force optimum."""

import pytest
from hypothesis import HealthCheck, given, settings

from ipa_airflow.optimizer import brute_force, chain_search, milp
from ipa_airflow.optimizer.model_data import ModelData
from ipa_airflow.optimizer.policies import POLICIES, policy_for
from tests.synthetic import instances


def _agree(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("method", ["sum", "average", "product"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=instances())
def test_milp_and_chain_search_equal_brute_force(method, policy, data):
    spec, profiles, load = data
    spec = spec.model_copy(update={"objective": spec.objective.model_copy(update={"accuracy": method})})
    md = ModelData.build(spec, profiles, load, policy_for(policy, spec))
    reference = brute_force.solve(md)
    m = milp.solve(md)
    c = chain_search.solve(md)
    assert m.feasible == reference.feasible
    assert c.feasible == reference.feasible
    assert _agree(m.objective, reference.objective), (m.objective, reference.objective)
    assert _agree(c.objective, reference.objective), (c.objective, reference.objective)


@pytest.fixture(scope="module")
def h100():
    from ipa_airflow.profiles import ProfileSet
    from tests.conftest import PROFILES

    return ProfileSet.load([PROFILES / "h100_torchvision.json"])


@pytest.mark.parametrize("load", [50.0, 800.0, 5000.0])
def test_chain_search_equals_the_textbook_milp_beyond_brute_force(h100, load):
    """4 heterogeneous stages x 4 variants x 7 batches: 28^4 combinations, past brute force here."""
    from ipa_airflow.bench.solver_grid import bench_spec

    spec = bench_spec(4, 4, h100, "product", heterogeneous=True)
    md = ModelData.build(spec, h100, load, policy_for("ipa", spec))
    reference = milp.solve(md, time_limit_s=120)
    assert reference.status == "Optimal"
    ours = chain_search.solve(md)
    assert _agree(ours.objective, reference.objective)


def test_a_time_limited_milp_is_not_reported_optimal(h100):
    from ipa_airflow.bench.solver_grid import bench_spec

    spec = bench_spec(9, 9, h100, "product", heterogeneous=True)
    md = ModelData.build(spec, h100, 800.0, policy_for("ipa", spec))
    result = milp.solve(md, time_limit_s=0.05)
    assert result.status != "Optimal"
