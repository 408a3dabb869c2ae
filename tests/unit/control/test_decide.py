"""The one decision every driver makes, stepped tick by tick on contexts written by hand (as Ray Serve
tests its autoscaling policies), and the typed values it hands on."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ipa_airflow.cluster.desired import desired_state, observe
from ipa_airflow.cluster.reconcile import ReconcileResult, reconcile
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.control import (
    Context,
    Decision,
    DecisionRecord,
    Measured,
    burst,
    decide,
    explain,
    next_tick,
    planning_load,
)
from ipa_airflow.forecasting.base import Forecast
from ipa_airflow.optimizer import plan as solve
from ipa_airflow.pipelines import Pipeline, load_pipeline
from ipa_airflow.spec import PLAN_QUANTILES
from ipa_airflow.switching import carried_load
from tests.conftest import PIPELINES

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cpu():
    return load_pipeline(PIPELINES / "video-cpu.yaml")


def _forecast(load: float, earlier=()) -> Forecast:
    at = {f"{q:g}": load for q in PLAN_QUANTILES}
    return Forecast(
        "exp-smoothing",
        20,
        load,
        at,
        NOW.isoformat(),
        earlier=tuple({f"{q:g}": e for q in PLAN_QUANTILES} for e in earlier),
    )


def _ctx(cpu, load, running=None, earlier=()) -> Context:
    return Context(NOW, _forecast(load, earlier), running, cpu)


def _config(plan):
    return tuple(s.config_key for s in plan.stages)


def _through_json(d):
    return json.loads(json.dumps(d))


def test_nothing_running_switches_and_what_runs_is_kept_when_the_program_proposes_it(cpu):
    first, state = decide(_ctx(cpu, 8.0))
    assert first.changed and first.previous_plan_id is None and first.reason == "nothing known to run"
    assert state is None  # the planner keeps no state of its own
    again, _ = decide(_ctx(cpu, 8.0, _config(first.plan)))
    assert not again.changed and again.previous_plan_id == first.plan.plan_id
    assert again.plan.plan_id == again.proposal_id == first.plan.plan_id


def test_the_plan_is_sized_for_the_forecast_now_not_an_older_higher_one(cpu):
    # Newest first: 4 s ago 30 req/s, then 5 and 6. Nothing runs, so nothing is held: plan for 4.
    ctx = _ctx(cpu, 4.0, earlier=(6.0, 5.0, 30.0, 50.0))
    assert planning_load(ctx) == 4.0
    d, _ = decide(ctx)
    assert d.load_rps == 4.0 and d.plan.load_rps == 4.0 and d.load_basis["recent"] == [30.0, 5.0, 6.0, 4.0]


def test_capacity_is_given_back_only_to_a_plan_that_carries_every_recent_load(cpu):
    big, _ = decide(_ctx(cpu, 30.0))
    small, _ = decide(_ctx(cpu, 6.0))
    offered = carried_load(small.plan, cpu.spec)
    rho = cpu.spec.limits.max_utilisation
    # The load fell to 6, but one of the last 4 forecasts was above what a plan for 6 carries: the plan
    # is solved for that one instead, and carries it.
    held, _ = decide(_ctx(cpu, 6.0, _config(big.plan), earlier=(6.0, offered + 1.0, 6.0)))
    assert held.load_rps == offered + 1.0 and held.load_basis["now"] == 6.0
    assert f"{offered + 1.0:.1f} held for the last 4 loads" in explain(held)
    assert min(s.capacity_rps for s in held.plan.stages) * rho >= offered + 1.0
    # Every recent forecast within what the plan for 6 carries: given back, to that plan.
    back, _ = decide(_ctx(cpu, 6.0, _config(big.plan), earlier=(6.0, offered, 6.0)))
    assert back.changed and back.plan.plan_id == back.proposal_id == small.plan.plan_id
    # A burst the fast path met (the highest measured rate of the hold) holds capacity like a forecast.
    burst_held, _ = decide(
        Context(NOW, _forecast(6.0, (6.0,) * 3), _config(big.plan), cpu, measured_peak_rps=25.0)
    )
    assert burst_held.load_rps == 25.0 and carried_load(burst_held.plan, cpu.spec) >= 25.0
    # Never above what runs: a recent load over what runs carries holds only what runs.
    capped, _ = decide(_ctx(cpu, 6.0, _config(small.plan), earlier=(6.0, 40.0, 6.0)))
    assert not capped.changed and capped.load_rps == 6.0
    # A scale-up is never held.
    up, _ = decide(_ctx(cpu, 60.0, _config(big.plan), earlier=(6.0, 6.0, 6.0)))
    assert up.changed and "cannot carry" in up.reason


def test_the_hold_keeps_capacity_not_the_variants(cpu):
    """A more accurate plan for the held load takes over (a new model version under a falling load)."""
    running, _ = decide(_ctx(cpu, 12.0))
    lighter = tuple((*k[:1], _lightest(cpu, k[0]), *k[2:]) for k in _config(running.plan))
    d, _ = decide(_ctx(cpu, 6.0, lighter, earlier=(12.0, 12.0, 12.0)))
    assert d.changed and d.load_rps == 12.0 and "raises the objective" in d.reason


def test_the_plan_is_never_sized_below_the_rate_measured_now(cpu):
    ctx = Context(NOW, _forecast(6.0), None, cpu, measured_rps=20.0)
    d, _ = decide(ctx)
    assert planning_load(ctx) == d.load_rps == 20.0 and d.load_basis["now"] == 6.0
    assert "20.0 measured now, planned for instead" in explain(d)


def _lightest(cpu, stage):
    return min(cpu.spec.stage(stage).variants, key=lambda v: v.accuracy).name


def _with_adaptation(cpu, **fields):
    a = cpu.spec.adaptation.model_copy(update=fields)
    return Pipeline(cpu.spec.model_copy(update={"adaptation": a}), cpu.profiles, cpu.source)


def _with_min_gain(cpu, min_gain):
    return _with_adaptation(cpu, min_gain=min_gain)


def test_the_fast_path_adds_replicas_of_what_runs_only_where_the_measured_load_overloads(cpu):
    small, _ = decide(_ctx(cpu, 4.0))
    running = _config(small.plan)
    assert burst(_ctx(cpu, 4.0, running), Measured(3.0)) is None  # it carries that
    assert burst(_ctx(cpu, 4.0), Measured(50.0)) is None  # nothing of ours runs: the decision's job
    d = burst(_ctx(cpu, 4.0, running), Measured(20.0))
    assert d is not None and d.changed and d.previous_plan_id == small.plan.plan_id
    assert d.models and d.load_basis["measured"] == 20.0  # a record as full as a decision's
    rho = cpu.spec.limits.max_utilisation
    for before, after in zip(small.plan.stages, d.plan.stages, strict=True):
        # Same variant, shape and batch: only replicas change, and only upwards, to carry 20 req/s.
        assert before.config_key[:6] == after.config_key[:6] and after.replicas >= before.replicas
        assert after.capacity_rps * rho >= 20.0
    # Replicas still starting count: what the fast path asked for is not asked for again.
    assert burst(_ctx(cpu, 4.0, _config(d.plan)), Measured(20.0)) is None
    # A backlog counts too, cleared over the start-up (10 s): 40 queued is 4 req/s more.
    first = small.plan.stages[0]
    backlog = burst(_ctx(cpu, 4.0, running), Measured(3.0, {first.stage: 40}))
    assert backlog is not None and backlog.load_rps == 7.0
    # Off, for a baseline, or over the budget: nothing.
    off = _with_adaptation(cpu, burst_window_s=0)
    assert burst(Context(NOW, _forecast(4.0), running, off), Measured(20.0)) is None
    assert burst(Context(NOW, _forecast(4.0), running, cpu, policy="fa2-low"), Measured(20.0)) is None
    lim = cpu.spec.limits.model_copy(update={"max_cost": small.plan.cost})
    tight = Pipeline(cpu.spec.model_copy(update={"limits": lim}), cpu.profiles, cpu.source)
    assert burst(Context(NOW, _forecast(4.0), running, tight), Measured(20.0)) is None


def test_min_gain_keeps_what_runs_unless_the_load_forces_a_switch(cpu):
    running, _ = decide(_ctx(cpu, 8.0))
    # At 7 req/s the program proposes a cheaper plan, 0.01 better: a switch at the shipped min_gain.
    switched, _ = decide(_ctx(cpu, 7.0, _config(running.plan)))
    assert switched.changed and switched.plan.plan_id == switched.proposal_id != running.plan.plan_id
    sticky = _with_min_gain(cpu, 0.5)
    kept, _ = decide(Context(NOW, _forecast(7.0), _config(running.plan), sticky))
    assert not kept.changed and "min_gain" in kept.reason and kept.proposal_id == switched.proposal_id
    forced, _ = decide(Context(NOW, _forecast(40.0), _config(running.plan), sticky))
    assert forced.changed and "cannot carry the load" in forced.reason


def test_a_running_configuration_the_spec_no_longer_offers_is_replaced(cpu):
    gone = (
        ("detect", "yolo-x", "epyc", "cpu=1", "fp32", 1, 2),
        ("classify", "resnet18", "epyc", "cpu=1", "fp32", 1, 1),
    )
    d, _ = decide(_ctx(cpu, 8.0, gone))
    assert d.changed and d.reason == "nothing known to run"


def test_the_next_decision_waits_for_a_reconcile_that_outlasts_the_interval():
    assert next_tick(100.0, 10.0, 103.0) == 110.0
    assert next_tick(100.0, 10.0, 127.0) == 127.0  # the ticks missed meanwhile are one decision


def test_observe_reads_back_what_the_encoder_wrote(cpu):
    backend = SimulatedBackend(startup_s=0.0)
    assert observe(cpu.spec, backend) is None
    p = solve(cpu.spec, cpu.profiles, 12.0)
    assert reconcile(p, cpu.spec, backend, sleep=lambda s: None).ok
    assert observe(cpu.spec, backend) == _config(p)
    assert Context(NOW, _forecast(1.0), observe(cpu.spec, backend), cpu).previous_plan_id == p.plan_id


def test_a_decision_goes_through_json_and_back(cpu):
    d, _ = decide(_ctx(cpu, 9.0))
    again = Decision.from_dict(_through_json(d.to_dict()))
    assert again == d and again.changed == d.changed
    with pytest.raises(ValueError, match="schema_version"):
        Decision.from_dict({**d.to_dict(), "schema_version": 99})


def test_a_decision_record_goes_through_json_and_back(cpu):
    backend = SimulatedBackend(startup_s=0.0)
    d, _ = decide(_ctx(cpu, 9.0))
    result = reconcile(d.plan, cpu.spec, backend, sleep=lambda s: None)
    assert ReconcileResult.from_dict(_through_json(result.to_dict())) == result
    record = DecisionRecord("2026-01-01T00:00:00+00:00", _forecast(9.0), d, result, {"spec": "x.yaml"})
    d2 = record.to_dict()
    assert d2["changed"] and d2["plan"]["plan_id"] == d.plan.plan_id and d2["schema_version"] == 2
    assert d2["why"].startswith("chose ") and d2["why"].endswith("nothing known to run")
    again = DecisionRecord.from_dict(_through_json(d2))
    assert again == record
    skipped = DecisionRecord(record.decided_at, record.forecast, d, None)
    assert DecisionRecord.from_dict(_through_json(skipped.to_dict())) == skipped


def test_validation_runs_once_per_family_of_manifests(cpu, monkeypatch):
    import kubernetes_validate

    from ipa_airflow.cluster import desired

    desired._validate.cache_clear()
    calls = []
    real = kubernetes_validate.validate
    monkeypatch.setattr(kubernetes_validate, "validate", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = solve(cpu.spec, cpu.profiles, 12.0)
    desired_state(p, cpu.spec)
    first = len(calls)
    from dataclasses import replace

    more = replace(p, stages=tuple(replace(s, replicas=s.replicas + 3, queue_s=0.25) for s in p.stages))
    desired_state(more, cpu.spec)  # other replicas, plan id and batch time: validated alike
    assert first == len(p.stages) and len(calls) == first
