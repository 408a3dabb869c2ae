"""The planner on the shipped example pipelines: behaviour users rely on."""

import copy

import pytest

from ipa_airflow.optimizer import plan, policy_for
from ipa_airflow.optimizer.model_data import ModelData
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.plans import Plan
from ipa_airflow.spec import PipelineSpec
from tests.conftest import PIPELINES


@pytest.fixture(scope="module")
def video():
    return load_pipeline(PIPELINES / "video-gpu.yaml")


@pytest.mark.parametrize("load", [5, 50, 500, 2000])
@pytest.mark.parametrize("policy", ["ipa", "fa2-low", "fa2-high"])
def test_plans_meet_sla_and_load(video, load, policy):
    p = plan(video.spec, video.profiles, load, policy=policy)
    assert p.feasible
    assert p.latency_s <= video.spec.sla_s
    for s in p.stages:
        assert s.capacity_rps >= load
        assert 1 <= s.replicas <= video.spec.limits.max_replicas


def test_fa2_pins_the_variant_and_ipa_lies_between(video):
    low = plan(video.spec, video.profiles, 300, policy="fa2-low")
    high = plan(video.spec, video.profiles, 300, policy="fa2-high")
    ipa = plan(video.spec, video.profiles, 300, policy="ipa")
    assert [s.variant for s in low.stages] == ["frcnn-mnv3-320", "resnet18"]
    assert [s.variant for s in high.stages] == ["fcos-r50", "resnet152"]
    # IPA optimises the same objective with fewer restrictions, so it is never worse than either.
    assert ipa.objective >= low.objective - 1e-9
    assert ipa.objective >= high.objective - 1e-9


def test_rim_keeps_replicas_fixed(video):
    p = plan(video.spec, video.profiles, 100, policy="rim")
    assert [s.replicas for s in p.stages] == [2, 2]


def test_solvers_agree(video):
    plans = {s: plan(video.spec, video.profiles, 700, solver=s) for s in ("milp", "chain", "brute")}
    objectives = {s: p.objective for s, p in plans.items()}
    assert max(objectives.values()) - min(objectives.values()) < 1e-9, objectives


def test_overload_is_infeasible_with_a_best_effort_plan(video):
    p = plan(video.spec, video.profiles, 1e6)
    assert not p.feasible
    assert "throughput[detect]" in p.binding
    assert "below the load" in p.message
    # Best effort of highest capacity: every stage at the replica cap.
    assert all(s.replicas == video.spec.limits.max_replicas for s in p.stages)


def test_impossible_sla_names_the_latency_constraint(video):
    data = copy.deepcopy(video.spec.to_dict())
    data["sla_s"] = 0.001
    spec = PipelineSpec.from_dict(data)
    p = plan(spec, video.profiles, 10)
    assert not p.feasible
    assert p.binding == ("latency_sla",)
    assert "fastest configuration takes" in p.message
    # The best effort is the fastest configuration that still carries the load.
    assert all(s.batch == 1 for s in p.stages)


@pytest.mark.parametrize("solver", ["milp", "chain", "brute"])
def test_latency_headroom_keeps_plans_off_the_slas_edge(video, solver):
    data = copy.deepcopy(video.spec.to_dict())
    data["limits"]["latency_headroom"] = 0.0
    at_edge = plan(PipelineSpec.from_dict(data), video.profiles, 131, solver=solver)
    assert at_edge.latency_s > 0.9 * video.spec.sla_s  # at this load the best plan uses the whole SLA
    data["limits"]["latency_headroom"] = 0.1
    spec = PipelineSpec.from_dict(data)
    kept = plan(spec, video.profiles, 131, solver=solver)
    assert kept.feasible and kept.latency_s <= 0.9 * spec.sla_s + 1e-9
    assert kept.sla_s == spec.sla_s  # the plan still reports the SLA itself
    data["limits"]["latency_headroom"] = 0.99
    tight = plan(PipelineSpec.from_dict(data), video.profiles, 10, solver=solver)
    assert not tight.feasible and "latency budget of 1.0 ms" in tight.message


def test_max_cost_guardrail(video):
    data = copy.deepcopy(video.spec.to_dict())
    data["limits"]["max_cost"] = 3
    spec = PipelineSpec.from_dict(data)
    assert plan(spec, video.profiles, 100).cost <= 3
    infeasible = plan(spec, video.profiles, 2000)
    assert not infeasible.feasible and "max_cost" in infeasible.binding


def test_plan_round_trip(video):
    p = plan(video.spec, video.profiles, 250)
    again = Plan.from_json(p.to_json())
    assert again == p
    assert again.plan_id == p.plan_id
    with pytest.raises(ValueError, match="schema_version"):
        Plan.from_dict({**p.to_dict(), "schema_version": 99})


def test_negative_load_is_refused(video):
    with pytest.raises(ValueError, match="non-negative"):
        plan(video.spec, video.profiles, -1)


def test_zero_load_keeps_one_replica(video):
    p = plan(video.spec, video.profiles, 0)
    assert p.feasible and all(s.replicas == 1 and s.batch == 1 for s in p.stages)


@pytest.mark.parametrize("load", [5, 50, 100, 300, 600, 1500])
def test_per_stage_keeps_every_stage_in_its_share_and_ipa_is_never_worse(video, load):
    split = plan(video.spec, video.profiles, load, policy="per-stage")
    ipa = plan(video.spec, video.profiles, load, policy="ipa")
    assert split.feasible and split.policy == "per-stage"
    share = video.spec.latency_budget_s / len(video.spec.stages)
    for s in split.stages:
        assert s.latency_s + s.queue_s <= share + 1e-9
    # Every per-stage plan is one the joint program may choose, so planning the chain as a whole never
    # loses; at these loads it saves GPUs or buys accuracy somewhere.
    assert ipa.objective >= split.objective - 1e-9


def test_per_stage_is_strictly_worse_somewhere(video):
    gains = [
        plan(video.spec, video.profiles, load).objective
        - plan(video.spec, video.profiles, load, policy="per-stage").objective
        for load in (100, 300, 600)
    ]
    assert max(gains) > 1e-6, gains


@pytest.mark.parametrize("solver", ["milp", "chain", "brute"])
def test_a_stage_that_cannot_fit_its_share_is_named(video, solver):
    data = ModelData.build(video.spec, video.profiles, 50, policy_for("ipa", video.spec))
    fastest = {st.name: min(o.total_latency_s for o in st.options) for st in data.stages}
    # An SLA the chain meets as a whole, but whose half is shorter than detection alone needs.
    sla = 1.2 * sum(fastest.values())
    assert fastest["detect"] > sla / 2
    limits = video.spec.limits.model_copy(update={"latency_headroom": 0.0})
    tight = video.spec.model_copy(update={"sla_s": sla, "limits": limits})
    assert plan(tight, video.profiles, 50, solver=solver).feasible
    p = plan(tight, video.profiles, 50, policy="per-stage", solver=solver)
    assert not p.feasible
    assert p.binding == ("stage_budget[detect]",)
    assert (
        f"needs {fastest['detect'] * 1000:.1f} ms at this load, over its share of {sla / 2 * 1000:.1f} ms"
        in (p.message)
    )


def test_per_stage_follows_the_specs_shares(video):
    data = ModelData.build(video.spec, video.profiles, 50, policy_for("ipa", video.spec))
    fastest = {st.name: min(o.total_latency_s for o in st.options) for st in data.stages}
    sla = 1.2 * sum(fastest.values())
    limits = video.spec.limits.model_copy(update={"latency_headroom": 0.0})
    tight = video.spec.model_copy(update={"sla_s": sla, "limits": limits})
    # Equal halves leave detection too little (see above); a share that matches its needs does not.
    share = (fastest["detect"] + 0.1 * sum(fastest.values())) / sla
    shares = {"detect": share, "classify": 1 - share}
    baselines = tight.baselines.model_copy(update={"per_stage_shares": shares})
    p = plan(tight.model_copy(update={"baselines": baselines}), video.profiles, 50, policy="per-stage")
    assert p.feasible
    assert p.stage("detect").latency_s + p.stage("detect").queue_s <= share * sla + 1e-9
