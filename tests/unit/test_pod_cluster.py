"""The simulated cluster with pods, driven by the production reconciler on a fake clock: start-up per
variant, make-before-break, capacity first, rollback onto the old pods."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ipa_airflow.cluster.desired import ANN_VARIANT, deployment_name
from ipa_airflow.cluster.pods import PodCluster
from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.spec import PipelineSpec
from tests.conftest import PIPELINES
from tests.reconcile_plans import FakeClock, switch_plans


@pytest.fixture(scope="module")
def video():
    return load_pipeline(PIPELINES / "video-gpu.yaml")


def _cluster(clock, startup=None, events=None):
    def startup_s(d):
        return (startup or {}).get(d["metadata"]["annotations"][ANN_VARIANT], 10.0)

    def on_change(key, created, deleted):
        if events is not None:
            events.append((clock(), key[1], len(created), len(deleted)))

    return PodCluster(clock=clock, startup_s=startup_s, on_change=on_change)


def _go(plan, spec, cluster, clock, **kw):
    return reconcile(plan, spec, cluster, clock=clock, sleep=clock.sleep, poll_s=1.0, **kw)


def test_a_switch_starts_up_for_the_variants_time_and_scales_down_only_after(video):
    clock, events = FakeClock(0.0), []
    cluster = _cluster(clock, {"retinanet-r50": 7.0}, events)
    before, after = switch_plans(video)
    cluster.warm = True
    assert _go(before, video.spec, cluster, clock).ok and clock() == 0.0  # ready at once: nothing waited
    cluster.warm = False
    detect = deployment_name("video-gpu", "detect")
    old = {p.uid for p in cluster.pods[("default", detect)]}
    events.clear()
    result = _go(after, video.spec, cluster, clock)
    assert result.ok and clock() == 7.0  # waited for the new variant's start-up
    assert [(t, name) for t, name, _, _ in events] == [
        (0.0, detect),  # the new pods, all at once
        (7.0, detect),  # ready: the old pods go
        (7.0, deployment_name("video-gpu", "classify")),  # capacity first: scale-down only now
    ]
    pods = cluster.pods[("default", detect)]
    assert len(pods) == after.stages[0].replicas and not {p.uid for p in pods} & old
    assert all(p.source["metadata"]["annotations"][ANN_VARIANT] == "retinanet-r50" for p in pods)


def test_a_rollout_past_its_deadline_rolls_back_onto_the_old_pods(video):
    clock = FakeClock(0.0)
    cluster = _cluster(clock)
    before, after = switch_plans(video)
    cluster.warm = True
    _go(before, video.spec, cluster, clock)
    cluster.warm = False
    detect = ("default", deployment_name("video-gpu", "detect"))
    old = {p.uid for p in cluster.pods[detect]}
    cluster.hold.add(detect[1])
    spec = PipelineSpec.from_dict({**video.spec.to_dict(), "deployment": {"rollout_deadline_s": 30}})
    result = _go(after, spec, cluster, clock)
    assert not result.ok and result.consistent and "within 30 s" in result.cause
    # The old template's pods served throughout and serve on: none was restarted.
    assert {p.uid for p in cluster.pods[detect]} == old
    status = cluster.get(*detect)["status"]
    assert status["availableReplicas"] == status["updatedReplicas"] == before.stages[0].replicas


def test_scaling_down_removes_the_youngest_pods_first(video):
    clock = FakeClock(0.0)
    cluster = _cluster(clock)
    before, _ = switch_plans(video)
    cluster.warm = True
    _go(before, video.spec, cluster, clock)
    cluster.warm = False
    classify = ("default", deployment_name("video-gpu", "classify"))
    first = [p.uid for p in cluster.pods[classify]]
    more = replace(before, stages=(before.stages[0], replace(before.stages[1], replicas=5)))
    assert _go(more, video.spec, cluster, clock).ok and clock() == 10.0
    fewer = replace(before, stages=(before.stages[0], replace(before.stages[1], replicas=4)))
    assert _go(fewer, video.spec, cluster, clock).ok and clock() == 10.0  # a scale-down waits for nothing
    kept = [p.uid for p in cluster.pods[classify]]
    assert kept[:3] == first and len(kept) == 4
