"""Keeping or replacing the running plan: forced switches, the min_gain hysteresis, held loads, and the
running configuration scored as a plan."""

from dataclasses import replace

import numpy as np
import pytest

from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.optimizer import ConfigError, plan, score_config
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.simulation.controllers import make_policy
from ipa_airflow.simulation.simulator import Simulator
from ipa_airflow.switching import carried_load, choose, holds_capacity, shortfall
from tests.conftest import PIPELINES


@pytest.fixture(scope="module")
def cpu():
    return load_pipeline(PIPELINES / "video-cpu.yaml")


def _config(p):
    return [s.config_key for s in p.stages]


def test_capacity_is_held_while_the_proposal_would_not_carry_a_recent_load(cpu):
    big, small = plan(cpu.spec, cpu.profiles, 30.0), plan(cpu.spec, cpu.profiles, 6.0)
    offered = carried_load(small, cpu.spec)
    assert carried_load(big, cpu.spec) >= 30.0 > offered >= 6.0
    assert holds_capacity(big, small, [6.0, offered + 0.1, 6.0, 6.0], cpu.spec) is not None
    assert holds_capacity(big, small, [6.0, offered, 6.0, 6.0], cpu.spec) is None
    assert holds_capacity(small, big, [30.0] * 4, cpu.spec) is None  # a scale-up is no give-back


def test_a_running_plan_is_scored_like_a_solved_one(cpu):
    solved = plan(cpu.spec, cpu.profiles, 8.0)
    again = score_config(cpu.spec, cpu.profiles, 8.0, _config(solved))
    assert again.plan_id == solved.plan_id
    assert again.objective == pytest.approx(solved.objective)
    assert [s.capacity_rps for s in again.stages] == [s.capacity_rps for s in solved.stages]
    gone = [("detect", "yolo-x", "epyc", "cpu=1", "fp32", 1, 2), *_config(solved)[1:]]
    with pytest.raises(ConfigError, match="yolo-x"):
        score_config(cpu.spec, cpu.profiles, 8.0, gone)


def test_nothing_running_or_same_plan(cpu):
    p = plan(cpu.spec, cpu.profiles, 8.0)
    assert choose(None, p, 8.0, cpu.spec).changed
    same = choose(p, p, 8.0, cpu.spec)
    assert not same.changed and same.plan is p


def test_a_plan_that_cannot_carry_the_load_is_replaced_at_once(cpu):
    small = plan(cpu.spec, cpu.profiles, 4.0)
    big = plan(cpu.spec, cpu.profiles, 30.0)
    assert shortfall(small, 30.0, cpu.spec) is not None
    s = choose(small, big, 30.0, cpu.spec)
    assert s.changed and s.plan is big and "below 30.0" in s.reason


def test_a_batch_that_cannot_fill_within_the_sla_forces_a_switch(cpu):
    p = plan(cpu.spec, cpu.profiles, 8.0)
    stage = p.stages[0]
    slow = replace(p, stages=(replace(stage, batch=8, latency_s=0.2), *p.stages[1:]))
    # At 1 req/s eight requests take 7 s to gather: far over the 1.5-s SLA.
    assert "over the latency budget" in shortfall(slow, 1.0, cpu.spec)


def test_under_per_stage_a_stage_over_its_own_share_forces_a_switch(cpu):
    running = plan(cpu.spec, cpu.profiles, 8.0, policy="per-stage")
    proposal = plan(cpu.spec, cpu.profiles, 8.0, policy="ipa")
    first = running.stages[0]
    share = cpu.spec.latency_budget_s / 2
    # The first stage alone takes 60 % of the budget: the chain still fits, the stage's own share not.
    slow = replace(
        running,
        stages=(replace(first, batch=1, latency_s=0.6 * cpu.spec.latency_budget_s), running.stages[1]),
    )
    assert shortfall(slow, 8.0, cpu.spec) is None
    shares = {s.stage: 0.5 for s in running.stages}
    assert f"over its share of {share * 1000:.0f} ms" in shortfall(slow, 8.0, cpu.spec, shares)
    assert choose(slow, proposal, 8.0, cpu.spec, shares).changed
    assert not choose(slow, replace(proposal, objective=slow.objective), 8.0, cpu.spec).changed


def test_small_gains_keep_the_running_plan_large_ones_switch(cpu):
    running = plan(cpu.spec, cpu.profiles, 8.0)
    better = replace(running, stages=running.stages[:1] + (replace(running.stages[1], replicas=9),))
    min_gain = cpu.spec.adaptation.min_gain
    kept = choose(running, replace(better, objective=running.objective + min_gain / 2), 8.0, cpu.spec)
    assert not kept.changed and kept.plan is running and "min_gain" in kept.reason
    taken = choose(running, replace(better, objective=running.objective + 2 * min_gain), 8.0, cpu.spec)
    assert taken.changed and taken.plan.stages[1].replicas == 9


def test_a_wobbling_forecast_does_not_flip_the_plan(cpu):
    """Around the load where two plans tie, without min_gain every wobble of the forecast is a restart."""
    rng = np.random.default_rng(0)
    fitted = forecaster("exp-smoothing").fit(rng.poisson(8, 4 * 3600).astype(float))
    counts = 7.5 + 0.8 * np.sin(np.arange(1200) / 25.0)
    history = np.full(3600, 7.5)

    def reconfigurations(spec):
        pol = make_policy("ipa", spec, cpu.profiles, fitted)
        return Simulator(spec, cpu.profiles, counts, pol, history=history).run().reconfigurations

    eager = cpu.spec.model_copy(
        update={"adaptation": cpu.spec.adaptation.model_copy(update={"min_gain": 0.0, "stabilisation": 1})}
    )
    assert reconfigurations(cpu.spec) < reconfigurations(eager)
