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
