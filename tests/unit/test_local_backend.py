"""The local cluster's controller logic, driven by the production reconciler on a fake clock, with fake
model servers that become ready a few (fake) seconds after they start: make-before-break, crashes
replaced, retired replicas drained, cores assigned, Prometheus targets written, all stopped on close."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from ipa_airflow.cluster.local_backend import LocalCluster, assign_cores, replica_cores
from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.plans import Plan, StagePlan
from ipa_airflow.spec import PipelineSpec
from tests.reconcile_plans import FakeClock

SPEC = PipelineSpec.from_dict(
    {
        "name": "chain",
        "sla_s": 1.0,
        "limits": {"batch_sizes": [1, 2, 4], "max_replicas": 8},
        "deployment": {"rollout_deadline_s": 60},
        "stages": [
            {
                "name": "classify",
                "variants": [
                    {
                        "name": "small",
                        "accuracy": 60,
                        "model_uri": "models:/small/1",
                        "shapes": [{"hardware": "cpu", "resources": {"cpu": 1}}],
                    },
                    {
                        "name": "big",
                        "accuracy": 70,
                        "model_uri": "models:/big/1",
                        "shapes": [{"hardware": "cpu", "resources": {"cpu": 2}}],
                    },
                ],
            }
        ],
    }
)
DEPLOYMENT = ("default", "chain-classify")


def plan(variant="small", replicas=1, batch=1, spec=SPEC) -> Plan:
    cores = "cpu=2" if variant == "big" else "cpu=1"
    stage = StagePlan("classify", variant, "cpu", cores, "fp32", batch, replicas, 0.1, 0.0, 10, 10, 0.6, 1)
    return Plan(spec.name, "test", 1.0, spec.sla_s, True, (stage,), 0.6, 1, 0, 0.1, {}, (), "", "", 0.0)


class FakeServer:
    """Ready `startup_s` fake seconds after start; `crash` makes it exit with that code."""

    made: list[FakeServer] = []

    def __init__(self, env, cores, clock, startup_s):
        self.env, self.cores, self.clock, self.startup_s = dict(env), cores, clock, startup_s
        self.n = len(FakeServer.made)
        FakeServer.made.append(self)
        self.url = f"http://fake-{self.n}"
        self.metrics_target = f"127.0.0.1:{9000 + self.n}"
        self.started_at: float | None = None
        self.code: int | None = None
        self.stopped = False

    def start(self):
        self.started_at = self.clock()
        return self

    def is_ready(self):
        return self.started_at is not None and self.clock() >= self.started_at + self.startup_s

    def exited(self):
        return self.code

    def stop(self, grace_s=0.0):
        self.stopped = True

    def log_tail(self, chars=3000):
        return f"fake log of server {self.n}: model could not be loaded"


@pytest.fixture
def clock():
    return FakeClock(0.0)


@pytest.fixture
def cluster(clock):
    FakeServer.made = []
    c = LocalCluster(
        server_factory=lambda env, cores: FakeServer(env, cores, clock, startup_s=5.0),
        cores=[0, 1, 2, 3],
        poll_s=None,  # no thread: get() polls, and so does the reconciler's every wait
        drain_s=30.0,
        clock=clock,
    )
    yield c
    c.close()


def go(p, cluster, clock, sleep=None, spec=SPEC):
    return reconcile(p, spec, cluster, clock=clock, sleep=sleep or clock.sleep, poll_s=1.0)


def servers(cluster):
    return {s.url: s for s in FakeServer.made}


def test_scaling_up_starts_a_server_per_pod_from_its_deployment_and_waits_until_they_answer(cluster, clock):
    assert go(plan(replicas=1), cluster, clock).ok and clock() == 5.0
    assert go(plan(replicas=2), cluster, clock).ok and clock() == 10.0  # the new server's start-up
    assert len(FakeServer.made) == 2 and cluster.endpoints("classify") == [s.url for s in FakeServer.made]
    assert [p.ready_at for p in cluster.pods_now()] == [5.0, 10.0]
    env = FakeServer.made[1].env
    assert env["MLSERVER_MODEL_NAME"] == "classify" and env["MLSERVER_MODEL_URI"] == "models:/small/1"
    assert env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == "1"
    assert [r.variant for r in cluster.replicas("classify", "chain")] == ["small", "small"]
    assert cluster.replicas("classify", "another-pipeline") == []


def test_a_batch_change_is_make_before_break(cluster, clock):
    assert go(plan(replicas=2), cluster, clock).ok
    old = set(cluster.endpoints("classify"))
    seen = []

    def sleep(s):  # the reconciler waiting for the rollout: what serves meanwhile?
        seen.append((set(cluster.endpoints("classify")), {u for u in old if servers(cluster)[u].stopped}))
        clock.sleep(s)

    assert go(plan(replicas=2, batch=4), cluster, clock, sleep).ok
    cluster.wait_stopped()
    assert seen and all(eps == old and not stopped for eps, stopped in seen)  # the old ones serve until
    new = set(cluster.endpoints("classify"))
    assert len(new) == 2 and not new & old and all(servers(cluster)[u].stopped for u in old)
    assert all(servers(cluster)[u].env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == "4" for u in new)
    kinds = [(e.kind, e.uid) for e in cluster.events]
    last_ready = max(i for i, (k, _) in enumerate(kinds) if k == "ready")
    first_retire = min(i for i, (k, _) in enumerate(kinds) if k == "retire")
    assert last_ready < first_retire


def test_a_server_that_exits_before_ready_is_logged_and_replaced_with_back_off(clock, caplog):
    FakeServer.made = []

    def factory(env, cores):
        s = FakeServer(env, cores, clock, startup_s=5.0)
        if s.n == 0:
            s.code = 1  # the first one crashes
        return s

    with LocalCluster(server_factory=factory, cores=[0, 1], poll_s=None, clock=clock) as cluster:
        with caplog.at_level(logging.WARNING, logger="ipa_airflow.cluster.local_backend"):
            result = go(plan(), cluster, clock)
        assert result.ok, result.cause
        assert "exited with 1 before it was ready" in caplog.text
        assert "fake log of server 0: model could not be loaded" in caplog.text
        assert cluster.endpoints("classify") == [FakeServer.made[1].url]
        crash = next(e for e in cluster.events if e.kind == "crash")
        restart = [e for e in cluster.events if e.kind == "start"][1]
        assert restart.t >= crash.t + 1.0  # the back-off, not a tight restart loop
        cluster.wait_stopped()
        assert FakeServer.made[0].stopped


def test_a_rollout_that_never_becomes_ready_is_rolled_back_onto_the_servers_that_ran(cluster, clock):
    assert go(plan(replicas=2), cluster, clock).ok
    old = set(cluster.endpoints("classify"))
    cluster.factory = lambda env, cores: FakeServer(env, cores, clock, startup_s=1e9)
    result = go(plan("big", replicas=2), cluster, clock)
    assert not result.ok and "did not become available within 60 s" in result.cause
    cluster.wait_stopped()
    assert set(cluster.endpoints("classify")) == old and not any(servers(cluster)[u].stopped for u in old)
    never = [s for s in FakeServer.made if s.url not in old]
    assert len(never) == 2 and all(s.stopped for s in never)


def test_a_retired_replica_stops_only_after_the_requests_sent_to_it(cluster, clock):
    assert go(plan(replicas=2), cluster, clock).ok
    youngest = cluster.endpoints("classify")[-1]
    assert cluster.acquire(youngest)
    assert go(plan(replicas=1), cluster, clock).ok  # scale-down: the youngest goes
    assert cluster.endpoints("classify") == [FakeServer.made[0].url]
    assert not cluster.acquire(youngest)  # no new requests for it
    stopper = next(t for t in [p.stopper for p in cluster._retiring] if t is not None)
    stopper.join(timeout=0.2)  # it waits for the request (drain_s is 30 s)
    assert stopper.is_alive() and not servers(cluster)[youngest].stopped
    cluster.release(youngest)
    cluster.wait_stopped()
    assert servers(cluster)[youngest].stopped


def test_cores_least_loaded_first_and_shared_when_the_plan_asks_for_more(cluster, clock, caplog):
    assert go(plan(replicas=2), cluster, clock).ok
    assert [s.cores for s in FakeServer.made] == [(0,), (1,)]
    assert not cluster.oversubscribed
    with caplog.at_level(logging.WARNING, logger="ipa_airflow.cluster.local_backend"):
        assert go(plan("big", replicas=2), cluster, clock).ok
    assert [s.cores for s in FakeServer.made[2:]] == [(2, 3), (0, 1)]
    assert caplog.text.count("they share cores") == 1
    cluster.wait_stopped()
    assert not cluster.oversubscribed  # the old replicas are gone: 4 cores for 4 asked


def test_core_decisions():
    assert assign_cores(2, [0, 1, 2], {0: 1}) == (1, 2)
    assert assign_cores(4, [0, 1], {}) == (0, 1)  # more than the machine: all of it, shared
    d = {"metadata": {"annotations": {"ipa.io/shape": "cpu cpu=3 fp32"}}}
    d["spec"] = {"template": {"spec": {"containers": [{}]}}}
    assert replica_cores(d) == 3
    d["spec"]["template"]["spec"]["containers"] = [{"resources": {"requests": {"cpu": "1500m"}}}]
    assert replica_cores(d) == 2


def test_prometheus_targets_follow_the_servers(cluster, clock, tmp_path):
    path = cluster.prometheus_targets(tmp_path / "sd" / "targets.json")
    assert json.loads(path.read_text()) == []
    assert go(plan(replicas=2), cluster, clock).ok
    entries = json.loads(path.read_text())
    assert entries == [
        {
            "targets": [s.metrics_target],
            "labels": {"pipeline": "chain", "stage": "classify", "variant": "small"},
        }
        for s in FakeServer.made
    ]
    assert go(plan(replicas=1), cluster, clock).ok
    cluster.wait_stopped()
    assert [e["targets"] for e in json.loads(path.read_text())] == [[FakeServer.made[0].metrics_target]]


def test_a_variant_it_cannot_serve_is_refused_before_anything_runs(cluster, clock):
    data = SPEC.to_dict()
    data["stages"][0]["variants"][0].pop("model_uri")  # a zoo model: nothing MLServer can load
    spec = PipelineSpec.from_dict(data)
    result = go(replace(plan(spec=spec)), cluster, clock, spec=spec)
    assert not result.ok and "cannot run Deployment chain-classify" in result.cause
    assert "registered MLflow model" in result.cause
    assert cluster.get(*DEPLOYMENT) is None and not FakeServer.made


def test_close_stops_every_server(cluster, clock):
    assert go(plan(replicas=2), cluster, clock).ok
    cluster.close()
    assert all(s.stopped for s in FakeServer.made) and cluster.endpoints("classify") == []
    with pytest.raises(Exception, match="closed"):
        cluster.apply({"metadata": {"name": "x", "namespace": "default"}})
