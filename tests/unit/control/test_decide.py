"""The one decision every driver makes, stepped tick by tick on contexts written by hand (as Ray Serve
tests its autoscaling policies), and the typed values it hands on."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ipa_airflow.cluster.desired import desired_state, observe
from ipa_airflow.cluster.reconcile import ReconcileResult, reconcile
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.control import Context, Decision, DecisionRecord, decide, next_tick, stabilised_load
from ipa_airflow.forecasting.base import Forecast
from ipa_airflow.optimizer import plan as solve
from ipa_airflow.pipelines import Pipeline, load_pipeline
from ipa_airflow.spec import PLAN_QUANTILES
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


def test_stabilisation_plans_for_the_highest_of_the_last_forecasts(cpu):
    # Newest first: 4 s ago 30 req/s, then 5 and 6; stabilisation 4 holds 30.
    ctx = _ctx(cpu, 4.0, earlier=(6.0, 5.0, 30.0, 50.0))
    assert stabilised_load(ctx) == 30.0
    d, _ = decide(ctx)
    assert d.load_rps == 30.0 and d.plan.load_rps == 30.0


def _with_min_gain(cpu, min_gain):
    a = cpu.spec.adaptation.model_copy(update={"min_gain": min_gain})
    return Pipeline(cpu.spec.model_copy(update={"adaptation": a}), cpu.profiles, cpu.source)


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
