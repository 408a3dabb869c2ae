"""The reconciler against the simulated backend and against the real kubernetes client talking HTTP to
the in-process API server: the same flows, the same expectations."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from ipa_airflow.cluster.backends import ClusterError
from ipa_airflow.cluster.desired import ANN_VARIANT, TemplateError, deployment_name
from ipa_airflow.cluster.kubernetes_backend import KubernetesBackend
from ipa_airflow.cluster.reconcile import GuardrailError, reconcile
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.spec import PipelineSpec
from tests.conftest import PIPELINES
from tests.integration.conftest import free_port
from tests.k8s_apiserver import FakeApiServer
from tests.reconcile_plans import FakeClock, switch_plans


class Cluster:
    """A backend plus a view of what it holds and in which order things were applied."""

    def __init__(self, kind: str, clock: FakeClock):
        self.kind, self.clock = kind, clock
        if kind == "simulated":
            self.sim = SimulatedBackend(clock=clock, startup_s=5.0)
            self.backend = self.sim
        else:
            from kubernetes import client

            self.server = FakeApiServer(clock=clock, ready_after_s=5.0)
            cfg = client.Configuration()
            cfg.host = self.server.url
            self.backend = KubernetesBackend(client.ApiClient(cfg), sleep=clock.sleep, backoff_s=0.1)

    def hold(self, name: str) -> None:
        (self.sim if self.kind == "simulated" else self.server).hold.add(name)

    def objects(self) -> dict:
        store = self.sim.objects if self.kind == "simulated" else self.server.objects
        return {k[1]: copy.deepcopy(v) for k, v in store.items()}

    def applied_names(self) -> list[str]:
        if self.kind == "simulated":
            return [name for _, name, dry in self.sim.applies if not dry]
        return [p.rsplit("/", 1)[1] for m, p in self.server.writes if m == "PATCH" and "/deployments/" in p]

    def close(self):
        if self.kind != "simulated":
            self.server.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=["simulated", "kubernetes"])
def cluster(request, clock):
    c = Cluster(request.param, clock)
    yield c
    c.close()


@pytest.fixture(scope="module")
def video():
    return load_pipeline(PIPELINES / "video-gpu.yaml")


def _go(plan, spec, cluster, clock, **kw):
    return reconcile(plan, spec, cluster.backend, clock=clock, sleep=clock.sleep, poll_s=1.0, **kw)


def test_empty_namespace_gets_every_deployment_then_nothing_changes(video, cluster, clock):
    before, _ = switch_plans(video)
    result = _go(before, video.spec, cluster, clock)
    assert result.ok and [o.action for o in result.outcomes] == ["create", "create"]
    objs = cluster.objects()
    detect = objs[deployment_name("video-gpu", "detect")]
    assert detect["spec"]["replicas"] == before.stages[0].replicas
    assert detect["spec"]["selector"]["matchLabels"] == {
        "ipa.io/pipeline": "video-gpu",
        "ipa.io/stage": "detect",
    }
    assert detect["metadata"]["annotations"][ANN_VARIANT] == before.stages[0].variant
    container = detect["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert detect["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert objs[deployment_name("video-gpu", "classify")]["spec"]["replicas"] == 3
    versions = {n: o["metadata"].get("resourceVersion") for n, o in objs.items()}

    again = _go(before, video.spec, cluster, clock)
    assert again.ok and not again.changed
    assert [o.status for o in again.outcomes] == ["unchanged", "unchanged"]
    assert {n: o["metadata"].get("resourceVersion") for n, o in cluster.objects().items()} == versions


def test_variant_switch_goes_before_scale_down(video, cluster, clock):
    before, after = switch_plans(video)
    _go(before, video.spec, cluster, clock)
    start = len(cluster.applied_names())
    result = _go(after, video.spec, cluster, clock)
    assert result.ok
    actions = {o.stage: (o.action, o.status) for o in result.outcomes}
    assert actions == {"detect": ("switch-variant", "applied"), "classify": ("scale-down", "applied")}
    assert cluster.applied_names()[start:] == ["video-gpu-detect", "video-gpu-classify"]
    detect = cluster.objects()["video-gpu-detect"]
    assert detect["metadata"]["annotations"][ANN_VARIANT] == "retinanet-r50"
    # The selector did not change with the variant, so the rolling update replaces pods in place.
    assert detect["spec"]["selector"]["matchLabels"]["ipa.io/stage"] == "detect"


def test_a_rollout_past_its_deadline_is_rolled_back(video, cluster, clock):
    before, after = switch_plans(video)
    _go(before, video.spec, cluster, clock)
    cluster.hold("video-gpu-detect")
    spec = PipelineSpec.from_dict({**video.spec.to_dict(), "deployment": {"rollout_deadline_s": 30}})
    result = _go(after, spec, cluster, clock)
    assert not result.ok
    by = {o.stage: o for o in result.outcomes}
    assert (
        by["detect"].status == "rolled-back"
        and "did not become available within 30 s" in by["detect"].message
    )
    assert by["classify"].status == "skipped"  # capacity is never removed when the new plan did not land
    objs = cluster.objects()
    assert objs["video-gpu-detect"]["metadata"]["annotations"][ANN_VARIANT] == before.stages[0].variant
    assert objs["video-gpu-classify"]["spec"]["replicas"] == 3


def test_dry_run_writes_nothing(video, cluster, clock):
    before, after = switch_plans(video)
    _go(before, video.spec, cluster, clock)
    snapshot = cluster.objects()
    result = _go(after, video.spec, cluster, clock, dry_run=True)
    assert result.dry_run and [o.status for o in result.outcomes] == ["dry-run", "dry-run"]
    assert "detect: switch-variant (replicas" in result.outcomes[0].message
    assert cluster.objects() == snapshot


def test_invalid_template_fails_before_anything_is_applied(video, cluster, clock):
    before, _ = switch_plans(video)
    bad = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "m", "ports": [{"containerPort": "eighty"}]}]}}
        }
    }
    spec = PipelineSpec.from_dict({**video.spec.to_dict(), "deployment": {"template": bad}})
    with pytest.raises(TemplateError, match="containerPort"):
        _go(before, spec, cluster, clock)
    assert cluster.applied_names() == [] and cluster.objects() == {}


def test_guardrails_refuse_a_plan_over_the_limits(video, cluster, clock):
    before, _ = switch_plans(video)
    too_big = replace(before, stages=(replace(before.stages[0], replicas=999), before.stages[1]))
    with pytest.raises(GuardrailError, match="over limits.max_replicas"):
        _go(too_big, video.spec, cluster, clock)
    zero = replace(before, stages=(replace(before.stages[0], replicas=0), before.stages[1]))
    with pytest.raises(GuardrailError, match="never scaled to zero"):
        _go(zero, video.spec, cluster, clock)
    assert cluster.objects() == {}


# ---- failures only a real API server produces ---------------------------------------------------------
@pytest.fixture
def k8s(clock):
    c = Cluster("kubernetes", clock)
    yield c
    c.close()


def test_transient_500_and_optimistic_409_are_retried(video, k8s, clock):
    before, _ = switch_plans(video)
    k8s.server.fail_next("PATCH", 500, times=2)
    k8s.server.fail_next("PATCH", 409)  # 'the object has been modified': no field conflict, retry
    result = _go(before, video.spec, k8s, clock)
    assert result.ok and len(k8s.objects()) == 2


def test_persistent_500_fails_and_applies_nothing_further(video, k8s, clock):
    before, _ = switch_plans(video)
    k8s.server.fail_next("PATCH", 503, times=20)
    result = _go(before, video.spec, k8s, clock)
    assert not result.ok
    assert result.outcomes[0].status == "failed" and "503" in result.outcomes[0].message
    assert result.outcomes[1].status == "skipped"


def test_a_field_owned_by_another_manager_is_reported_not_forced(video, k8s, clock):
    from kubernetes import client

    before, after = switch_plans(video)
    _go(before, video.spec, k8s, clock)
    # An HPA-like controller takes over the replicas of the classifier.
    apps = client.AppsV1Api(k8s.backend._api_client)
    apps.patch_namespaced_deployment(
        "video-gpu-classify", "default", {"spec": {"replicas": 7}}, field_manager="hpa-controller"
    )
    result = _go(after, video.spec, k8s, clock)
    by = {o.stage: o for o in result.outcomes}
    assert by["classify"].status == "conflict" and "hpa-controller" in by["classify"].message
    assert k8s.objects()["video-gpu-classify"]["spec"]["replicas"] == 7
    forced = PipelineSpec.from_dict({**video.spec.to_dict(), "deployment": {"force_conflicts": True}})
    assert _go(after, forced, k8s, clock).ok
    assert k8s.objects()["video-gpu-classify"]["spec"]["replicas"] == 2


def test_the_server_validates_dry_runs_and_uses_server_side_apply(video, k8s, clock):
    before, _ = switch_plans(video)
    _go(before, video.spec, k8s, clock, dry_run=True)
    patches = [(p, ct) for m, p, ct in k8s.server.requests if m == "PATCH"]
    assert patches and all(ct == "application/apply-patch+yaml" for _, ct in patches)
    assert k8s.objects() == {}


def test_api_down_is_a_clear_error(video, clock):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{free_port()}"
    backend = KubernetesBackend(client.ApiClient(cfg), attempts=2, sleep=clock.sleep)
    before, _ = switch_plans(video)
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API"):
        reconcile(before, video.spec, backend, clock=clock, sleep=clock.sleep)


def _forecast(load: float) -> dict:
    from ipa_airflow.forecasting.base import Forecast
    from ipa_airflow.spec import PLAN_QUANTILES

    return Forecast("exp-smoothing", 20, load, {f"{q:g}": load for q in PLAN_QUANTILES}).to_dict()


def test_the_adaptation_step_reads_what_runs_and_keeps_it_while_it_carries(video, cluster, clock):
    from ipa_airflow.adaptation import plan_task
    from ipa_airflow.cluster.desired import observe
    from ipa_airflow.plans import Plan

    spec_path = str(PIPELINES / "video-gpu.yaml")
    assert observe(video.spec, cluster.backend) is None  # nothing deployed yet
    first = plan_task(spec_path, _forecast(500.0), cluster.backend)
    assert first["changed"] and first["reason"] == "nothing known to run"
    running = Plan.from_dict(first["plan"])
    assert _go(running, video.spec, cluster, clock).ok
    config = observe(video.spec, cluster.backend)
    assert config == tuple(s.config_key for s in running.stages)

    same = plan_task(spec_path, _forecast(500.0), cluster.backend)
    assert not same["changed"] and same["plan"]["plan_id"] == running.plan_id
    assert same["previous_plan_id"] == running.plan_id
    # A little less load: the program proposes another plan, worth less than min_gain more.
    near = plan_task(spec_path, _forecast(450.0), cluster.backend)
    assert not near["changed"] and near["plan"]["plan_id"] == running.plan_id
    assert near["proposal_id"] != running.plan_id and "min_gain" in near["reason"]
    more = plan_task(spec_path, _forecast(1500.0), cluster.backend)
    assert more["changed"] and "below 1500.0" in more["reason"]
    # Far less: batches no longer fill within the latency budget, so the running plan must go.
    less = plan_task(spec_path, _forecast(100.0), cluster.backend)
    assert less["changed"] and "over the latency budget" in less["reason"]


def test_a_replica_change_keeps_the_running_batch_time_so_no_pod_restarts(video, cluster, clock):
    """The planner's batch time follows the planned load; written into the pod template it would make every
    scale-up a rolling restart. The running one is kept: it met the SLA with the same variant and batch."""
    before, _ = switch_plans(video)
    detect, classify = before.stages
    assert _go(before, video.spec, cluster, clock).ok
    clock.sleep(10)
    template = cluster.objects()["video-gpu-detect"]["spec"]["template"]
    busier = replace(
        before,
        stages=(replace(detect, replicas=detect.replicas + 2, queue_s=detect.queue_s / 2 + 0.001), classify),
    )
    result = _go(busier, video.spec, cluster, clock)
    assert result.ok and {o.stage: o.action for o in result.outcomes}["detect"] == "scale-up"
    after = cluster.objects()["video-gpu-detect"]
    assert after["spec"]["replicas"] == detect.replicas + 2
    assert after["spec"]["template"] == template  # same pods, more of them
    # A new batch size is a new configuration: then the batch time follows the plan.
    other = next(b for b in video.spec.limits.batch_sizes if b != detect.batch)
    rebatched = replace(before, stages=(replace(detect, batch=other, queue_s=0.0123), classify))
    assert _go(rebatched, video.spec, cluster, clock).ok
    env = {
        e["name"]: e["value"]
        for e in cluster.objects()["video-gpu-detect"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MLSERVER_MODEL_MAX_BATCH_TIME"] == "0.0123"


def test_a_drift_that_persists_is_in_the_decision_and_asks_for_reprofiling_once(
    video, cluster, clock, tmp_path
):
    """The plan step's drift check on what runs: a stage serving far slower than its profile says shows
    as a gap in every decision, and asks for re-profiling exactly when the gap has lasted
    `IPA_DRIFT_PERSIST` (3) decisions; its streak lives under the home between the DAG's runs."""
    from ipa_airflow.adaptation import plan_task
    from ipa_airflow.plans import Plan

    spec_path = str(PIPELINES / "video-gpu.yaml")
    first = plan_task(spec_path, _forecast(500.0), cluster.backend, home=tmp_path)
    assert first["drift"] == {"measured": False}  # no metrics reader: not measured, said so
    assert _go(Plan.from_dict(first["plan"]), video.spec, cluster, clock).ok

    def slow(pipeline):  # every stage observed at 10 s, far over any profile
        return {stage: 10_000.0 for stage in pipeline.spec.stage_names}

    drifts = [
        plan_task(spec_path, _forecast(500.0), cluster.backend, home=tmp_path, read_observed=slow)["drift"]
        for _ in range(4)
    ]
    assert all(d["measured"] for d in drifts)
    for d in drifts:
        assert {g["stage"] for g in d["gaps"]} == set(video.spec.stage_names)
        assert all(g["observed_p99_ms"] == 10_000.0 and g["ratio"] > 1 for g in d["gaps"])
    assert [[g["reprofile"] for g in d["gaps"]] for d in drifts] == [
        [False, False],
        [False, False],
        [True, True],
        [False, False],
    ]
    # Zoo variants have no model version to re-profile: the gap says so instead of an event.
    assert drifts[2]["events"] == [] and all(g["note"] for g in drifts[2]["gaps"])
    assert [p.name.startswith("video-gpu-") for p in (tmp_path / "drift").iterdir()] == [True]
