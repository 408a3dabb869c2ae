"""Drift, stepped decision by decision on observations written by hand: the prediction each stage's
profile makes, the streak of gaps, and the re-profiling events the profiling DAG reads."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ipa_airflow.control.drift import (
    DriftState,
    StageGap,
    assess,
    predicted_p99_ms,
    reprofile_events,
)
from ipa_airflow.forecasting.stage_latency import MLSERVER_BUCKETS_MS
from ipa_airflow.optimizer import plan as solve
from ipa_airflow.pipelines import Pipeline, load_pipeline
from ipa_airflow.plans import Plan, StagePlan
from ipa_airflow.profiles import ProfileError
from tests.conftest import PIPELINES, PROFILES

VERSION_URI = "models:/video-classifier/3"


@pytest.fixture(scope="module")
def cpu() -> Pipeline:
    return load_pipeline(PIPELINES / "video-cpu.yaml")


@pytest.fixture(scope="module")
def registered(cpu) -> Pipeline:
    """video-cpu with its classify stage's resnet18 served as a registered model version."""
    stages = []
    for st in cpu.spec.stages:
        variants = [
            v.model_copy(update={"model_uri": VERSION_URI}) if v.name == "resnet18" else v
            for v in st.variants
        ]
        stages.append(st.model_copy(update={"variants": variants}))
    return replace(cpu, spec=cpu.spec.model_copy(update={"stages": stages}))


@pytest.fixture(scope="module")
def base_plan(cpu) -> Plan:
    return solve(cpu.spec, cpu.profiles, 8.0)


def _stage(stage, variant, *, cores=1, batch=1, queue_s=0.0, replicas=1) -> StagePlan:
    return StagePlan(
        stage=stage,
        variant=variant,
        hardware="epyc",
        resources=f"cpu={cores}",
        dtype="fp32",
        batch=batch,
        replicas=replicas,
        latency_s=0.0,  # drift reads the profile, not these figures
        queue_s=queue_s,
        throughput_rps=1.0,
        capacity_rps=float(replicas),
        accuracy=0.7,
        cost=1.0,
    )


def _plan(base_plan, *stages) -> Plan:
    return replace(base_plan, stages=tuple(stages))


def _epyc_p99_ms(model: str, cores: int, batch: int) -> float:
    """The p99 the shipped profile file holds, read straight from the JSON."""
    doc = json.loads((PROFILES / "epyc_cpu_torchvision.json").read_text())
    (profile,) = [
        p
        for p in doc["profiles"]
        if (p["model"], p["resources"], p["dtype"]) == (model, f"cpu={cores}", "fp32")
    ]
    (point,) = [q for q in profile["points"] if q["batch"] == batch]
    return point["p99_ms"]


# -- the prediction ----------------------------------------------------------------------------------


def test_the_prediction_is_the_profiles_p99_at_the_batch_plus_the_batch_wait(cpu):
    sp = _stage("classify", "resnet18", cores=2, batch=4, queue_s=0.3)
    # profiles/epyc_cpu_torchvision.json: resnet18, epyc, cpu=2, batch 4: p99 100.949 ms; + 300 ms of wait
    assert _epyc_p99_ms("resnet18", 2, 4) == pytest.approx(100.94927830002689)
    assert predicted_p99_ms(cpu, sp) == pytest.approx(100.94927830002689 + 300.0)


def test_the_prediction_is_what_the_optimizer_priced_the_stage_at(cpu):
    """video-cpu plans at p99: a stage's latency plus its batch wait is the prediction, for every stage
    of a plan the program made."""
    plan = solve(cpu.spec, cpu.profiles, 60.0)
    assert cpu.spec.latency_percentile == "p99"
    assert all(sp.batch > 1 and sp.queue_s > 0 for sp in plan.stages)  # the wait is part of it
    for sp in plan.stages:
        assert predicted_p99_ms(cpu, sp) == pytest.approx((sp.latency_s + sp.queue_s) * 1000.0)


def test_a_config_the_pipeline_no_longer_offers_has_no_prediction(cpu):
    with pytest.raises(
        ProfileError, match="resnet18 on epyc cpu=3 fp32, which pipeline 'video-cpu' no longer"
    ):
        predicted_p99_ms(cpu, _stage("classify", "resnet18", cores=3))
    with pytest.raises(ProfileError, match="no longer offers"):
        predicted_p99_ms(cpu, _stage("no-such-stage", "resnet18"))


# -- streaks and events ------------------------------------------------------------------------------


def _steps(pipeline, plan, observations, **kw):
    """assess once per observation of the classify stage, the state carried on: the gaps of each step."""
    state, out = None, []
    for obs in observations:
        gaps, state = assess(plan, pipeline, {"classify": obs}, state, **kw)
        out.append(gaps)
    return out, state


def test_a_gap_that_lasts_persist_decisions_asks_for_one_reprofiling(registered, base_plan):
    sp = _stage("classify", "resnet18", cores=1, batch=1)
    predicted = predicted_p99_ms(registered, sp)  # 56.4 ms
    slow = predicted * 2.0
    steps, state = _steps(registered, _plan(base_plan, sp), [slow] * 5, threshold=0.5, persist=3)
    gaps = [g for (g,) in steps]
    assert [g.streak for g in gaps] == [1, 2, 3, 4, 5]
    assert [g.reprofile for g in gaps] == [False, False, True, False, False]
    assert gaps[2].ratio == pytest.approx(1.0) and gaps[2].observed_p99_ms == slow
    assert gaps[2].predicted_p99_ms == pytest.approx(predicted)
    assert gaps[2].note == "re-profiling video-classifier v3 on epyc cpu=1 fp32"
    assert "asked for at decision 3" in gaps[4].note
    assert state.streaks == {"classify|resnet18|epyc|cpu=1|fp32|b1": 5}
    assert [reprofile_events(g) != [] for g in steps] == [False, False, True, False, False]


def test_the_streak_resets_when_the_gap_closes_and_a_new_episode_asks_again(registered, base_plan):
    sp = _stage("classify", "resnet18")
    p = predicted_p99_ms(registered, sp)
    steps, _ = _steps(registered, _plan(base_plan, sp), [2 * p, 2 * p, 1.2 * p, 2 * p, 2 * p], persist=2)
    gaps = [g for (g,) in steps]
    assert [g.streak for g in gaps] == [1, 2, 0, 1, 2]
    assert [g.reprofile for g in gaps] == [False, True, False, False, True]
    assert gaps[2].ratio == pytest.approx(0.2) and gaps[2].note == ""


def test_faster_than_predicted_is_a_gap_too(registered, base_plan):
    sp = _stage("classify", "resnet18")
    p = predicted_p99_ms(registered, sp)
    steps, _ = _steps(registered, _plan(base_plan, sp), [0.3 * p] * 2, persist=2)
    assert steps[1][0].ratio == pytest.approx(-0.7) and steps[1][0].reprofile


def test_a_new_config_starts_a_new_streak_but_more_replicas_do_not(registered, base_plan):
    one = _stage("classify", "resnet18", batch=1)
    p = predicted_p99_ms(registered, one)
    g1, state = assess(_plan(base_plan, one), registered, {"classify": 3 * p}, None)
    g2, state = assess(_plan(base_plan, replace(one, replicas=4)), registered, {"classify": 3 * p}, state)
    assert (g1[0].streak, g2[0].streak) == (1, 2)  # scaled out: the same episode
    batch2 = _stage("classify", "resnet18", batch=2, queue_s=0.05)
    p2 = predicted_p99_ms(registered, batch2)
    g3, state = assess(_plan(base_plan, batch2), registered, {"classify": 3 * p2}, state)
    assert g3[0].streak == 1 and g3[0].batch == 2
    assert state.streaks == {"classify|resnet18|epyc|cpu=1|fp32|b2": 1}  # the old config's streak is dropped


def test_a_stage_without_an_observation_is_skipped_and_keeps_its_streak(registered, base_plan):
    sp = _stage("classify", "resnet18")
    p = predicted_p99_ms(registered, sp)
    steps, state = _steps(
        registered, _plan(base_plan, sp), [2 * p, None, float("nan"), 2 * p, 2 * p], persist=3
    )
    assert [len(g) for g in steps] == [1, 0, 0, 1, 1]
    assert [g[0].streak for g in steps if g] == [1, 2, 3] and steps[4][0].reprofile
    assert state.streaks == {"classify|resnet18|epyc|cpu=1|fp32|b1": 3}


def test_every_observed_stage_is_reported_and_only_drifting_versions_make_events(registered, base_plan):
    detect = _stage("detect", "frcnn-mnv3", cores=2)
    classify = _stage("classify", "resnet18")
    plan = _plan(base_plan, detect, classify)
    observed = {
        "detect": 5 * predicted_p99_ms(registered, detect),
        "classify": 5 * predicted_p99_ms(registered, classify),
    }
    gaps, _ = assess(plan, registered, observed, None, persist=1)
    assert [(g.stage, g.reprofile) for g in gaps] == [("detect", True), ("classify", True)]
    zoo = gaps[0]
    assert zoo.model_uri is None and zoo.version is None
    assert "no event" in zoo.note and "`ipa profile`" in zoo.note
    (event,) = reprofile_events(gaps)
    assert event == {
        "name": "video-classifier",
        "version": "3",
        "reason": "drift",
        "stage": "classify",
        "variant": "resnet18",
        "hardware": "epyc",
        "resources": "cpu=1",
        "dtype": "fp32",
        "gap": 4.0,
        "observed_p99_ms": round(observed["classify"], 3),
        "predicted_p99_ms": round(predicted_p99_ms(registered, classify), 3),
    }
    assert "classify (resnet18 b1 on epyc cpu=1 fp32): p99 282 ms observed, 56 ms predicted (+400%)" in (
        gaps[1].describe()
    )


def _what_the_profiling_dag_reads(extra: dict) -> list[str]:
    """dags/ipa_profile_model_version.py `versions_to_profile`, for one event's extra (the DAG keeps it
    inline; tests/integration/test_stage_latency.py runs the DAG's own task function on these events)."""
    items = extra.get("versions") or ([extra] if extra.get("name") else [])
    return sorted({f"models:/{v['name']}/{v['version']}" for v in items})


def test_the_events_are_what_the_profiling_dag_reads(registered, base_plan):
    sp = _stage("classify", "resnet18")
    gaps, _ = assess(
        _plan(base_plan, sp), registered, {"classify": 10 * predicted_p99_ms(registered, sp)}, None, persist=1
    )
    events = reprofile_events(gaps)
    assert _what_the_profiling_dag_reads(events[0]) == [VERSION_URI]  # one event each
    assert _what_the_profiling_dag_reads({"versions": events, "reason": "drift"}) == [
        VERSION_URI
    ]  # or one for all
    assert json.loads(json.dumps(events)) == events  # an asset event's extra is JSON


# -- histogram resolution ----------------------------------------------------------------------------


def test_the_histograms_buckets_bound_how_large_a_gap_can_be_read(registered, base_plan):
    """resnet18 on 1 core at batch 1: 56.4 ms predicted, in MLServer's (50, 75] ms bucket."""
    sp = _stage("classify", "resnet18")
    plan = _plan(base_plan, sp)
    p = predicted_p99_ms(registered, sp)
    assert 50 < p <= 75
    # 74 ms reads +31%; any p99 in the same bucket may be the prediction itself: no gap
    (same,), _ = assess(plan, registered, {"classify": 74.0}, None, buckets_ms=MLSERVER_BUCKETS_MS)
    assert same.ratio == 0.0 and same.streak == 0
    # an estimate of 240 ms (+325%) is in (100, 250]: the p99 is at least 100 ms, a gap of at least +77%
    (above,), _ = assess(plan, registered, {"classify": 240.0}, None, buckets_ms=MLSERVER_BUCKETS_MS)
    assert above.ratio == pytest.approx(100.0 / p - 1) and above.streak == 1
    # and below: an estimate of 20 ms is in (10, 25], at most 25 ms
    (below,), _ = assess(plan, registered, {"classify": 20.0}, None, buckets_ms=MLSERVER_BUCKETS_MS)
    assert below.ratio == pytest.approx(25.0 / p - 1) and below.streak == 1
    # without the buckets the estimate is taken as it is
    (raw,), _ = assess(plan, registered, {"classify": 240.0}, None)
    assert raw.ratio == pytest.approx(240.0 / p - 1)


# -- values that cross process boundaries ------------------------------------------------------------


def test_gaps_and_state_survive_json(registered, base_plan):
    sp = _stage("classify", "resnet18")
    gaps, state = assess(_plan(base_plan, sp), registered, {"classify": 1000.0}, None, persist=1)
    back = [StageGap.from_dict(json.loads(json.dumps(g.to_dict()))) for g in gaps]
    assert back == gaps and back[0].reprofile and back[0].model_uri == VERSION_URI
    again = DriftState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and DriftState.from_dict(None) == DriftState()
    # the state read back carries the episode on: no second event
    (g2,), _ = assess(_plan(base_plan, sp), registered, {"classify": 1000.0}, again, persist=1)
    assert g2.streak == 2 and not g2.reprofile


@pytest.mark.parametrize(("kw", "match"), [({"threshold": 0}, "threshold"), ({"persist": 0}, "persist")])
def test_settings_that_cannot_work_are_refused(registered, base_plan, kw, match):
    with pytest.raises(ValueError, match=match):
        assess(base_plan, registered, {}, None, **kw)
