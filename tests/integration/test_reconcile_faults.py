"""Fault injection: the real kubernetes client against the in-process API server, failing at every point of
a reconcile. Each test asserts the invariant, not only that something failed: every stage ends on the old
plan or the new one (or, when the rollback itself cannot reach the cluster, the result says which stages
are unknown and the next run converges), the result names the failure that caused it, and one writer at
a time."""

from __future__ import annotations

import copy
import threading
from dataclasses import replace

import pytest

from ipa_airflow.cluster.backends import ClusterBusy, ClusterError
from ipa_airflow.cluster.desired import desired_state
from ipa_airflow.cluster.diff import _view
from ipa_airflow.cluster.kubernetes_backend import KubernetesBackend
from ipa_airflow.cluster.reconcile import ReconcileResult, reconcile
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.optimizer import plan as make_plan
from ipa_airflow.pipelines import load_pipeline
from tests.conftest import PIPELINES
from tests.k8s_apiserver import DIE, DROP, HANG, FakeApiServer
from tests.reconcile_plans import FakeClock, switch_plans

NS = "default"


@pytest.fixture(scope="module")
def video():
    return load_pipeline(PIPELINES / "video-gpu.yaml")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server(clock):
    s = FakeApiServer(clock=clock, ready_after_s=5.0)
    yield s
    s.close()


def _backend(server, clock, **kw) -> KubernetesBackend:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server.url
    # A read timeout well above what a loaded 2-core machine takes to answer: only HANG (an answer that
    # never comes) may reach it, never a slow but real answer.
    kw.setdefault("request_timeout_s", (5.0, 5.0))
    return KubernetesBackend(client.ApiClient(cfg), sleep=clock.sleep, backoff_s=0.1, wall=clock, **kw)


def _go(plan, video, backend, clock, **kw):
    return reconcile(plan, video.spec, backend, clock=clock, sleep=clock.sleep, poll_s=1.0, **kw)


def _on(server, video, before, after) -> dict[str, str]:
    """Which plan each stage's Deployment holds now: old, new, absent or neither."""
    want = {
        tag: {m["metadata"]["name"]: _view(m) for m in desired_state(p, video.spec)}
        for tag, p in (("old", before), ("new", after))
    }
    out = {}
    for name in want["old"]:
        obj = server.objects.get((NS, name))
        have = _view(obj) if obj else None
        out[name] = next(
            (t for t in ("old", "new") if want[t][name] == have), "absent" if obj is None else "neither"
        )
    return out


def _forced(query) -> bool:
    return query.get("force", "").lower() == "true"


def _deployment_writes(server) -> list:
    return [w for w in server.writes if "/deployments" in w[1]]


def _write_hook(server, nth: int, action, method: str = "PATCH"):
    """Answer the nth write (not a dry run) of a Deployment with `action`, once."""
    seen = {"n": 0}

    def hook(m, path, query):
        if m == method and "/deployments/" in path and query.get("dryRun") != "All":
            seen["n"] += 1
            if seen["n"] == nth:
                return action
        return None

    server.hooks.append(hook)
    return seen


def _started(server, video, before, clock):
    backend = _backend(server, clock)
    assert _go(before, video, backend, clock).ok
    clock.sleep(10)  # the first plan's rollout completes
    return backend


def _assert_rolled_back(result, server, video, before, after, cause: str):
    assert not result.ok
    assert result.consistent, result.to_dict()
    assert cause in result.cause, result.cause
    assert set(_on(server, video, before, after).values()) == {"old"}
    assert {o.on for o in result.outcomes} <= {"old", "both"}
    # What the operator reads: the cause and where the stages are.
    assert "every stage is on its previous plan" in result.summary()


# ---- an error status from the API at each write -----------------------------------------------------------
@pytest.mark.parametrize("code", [429, 403, 409, 422, 500, 503])
def test_an_error_on_the_second_write_rolls_back_the_first(video, server, clock, code):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    body = {"kind": "Status", "code": code, "message": f"injected {code}", "reason": "Injected"}
    # Persistent: every retry of classify's write fails (409 without field causes is retried as optimistic);
    # the rollback's restores (forced applies) are answered.
    server.hooks.append(
        lambda m, p, q: (
            (code, body)
            if m == "PATCH" and p.endswith("-classify") and q.get("dryRun") != "All" and not _forced(q)
            else None
        )
    )
    result = _go(after, video, backend, clock)
    _assert_rolled_back(result, server, video, before, after, str(code))
    by = {o.stage: o for o in result.outcomes}
    assert by["detect"].status == "rolled-back"
    # A 5xx may have been carried out (a 504 says so): the stage is restored too. A 4xx was refused.
    assert by["classify"].status == ("rolled-back" if code >= 500 else "failed")


def test_a_write_that_landed_but_whose_answer_was_lost_is_restored(video, server, clock):
    """The first try of classify's write is stored, its answer dropped; the retries get 503: the stage may be
    on the new plan, so it is restored and never reported as untouched."""
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    state = {"n": 0}

    def hook(m, p, q):
        if m == "PATCH" and p.endswith("-classify") and q.get("dryRun") != "All" and not _forced(q):
            state["n"] += 1
            if state["n"] == 1:
                return "store-then-drop"
            return (503, {"message": "injected 503"})
        return None

    server.hooks.append(hook)
    result = _go(after, video, backend, clock)
    _assert_rolled_back(result, server, video, before, after, "503")
    assert {o.stage: o.status for o in result.outcomes} == {
        "detect": "rolled-back",
        "classify": "rolled-back",
    }


def test_a_refusal_at_the_dry_run_writes_nothing(video, server, clock):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    writes = len(_deployment_writes(server))
    server.hooks.append(
        lambda m, p, q: (403, {"message": "forbidden: quota"}) if q.get("dryRun") == "All" else None
    )
    result = _go(after, video, backend, clock)
    assert not result.ok and "403" in result.cause and "refused before anything was written" in result.cause
    assert len(_deployment_writes(server)) == writes
    assert set(_on(server, video, before, after).values()) == {"old"}


@pytest.mark.parametrize("code", [403, 422, 500])
def test_an_error_on_the_first_write_changes_nothing(video, server, clock, code):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    _write_hook(server, 1, (code, {"kind": "Status", "code": code, "message": f"injected {code}"}))
    server.hooks.append(
        lambda m, p, q: (
            (code, {"message": "still"})
            if m == "PATCH" and q.get("dryRun") != "All" and not _forced(q)  # restores are answered
            else None
        )
    )
    result = _go(after, video, backend, clock)
    _assert_rolled_back(result, server, video, before, after, str(code))


def test_a_missing_namespace_is_refused_before_anything_is_written(video, server, clock):
    before, _ = switch_plans(video)
    server.namespaces = {"somewhere-else"}
    # On a real API server the first write is the pipeline's Lease: refused there, naming the namespace.
    with pytest.raises(ClusterError, match='namespaces "default" not found.*namespace exists'):
        _go(before, video, _backend(server, clock), clock)
    assert server.objects == {} and not _deployment_writes(server)
    preview = _go(before, video, _backend(server, clock), clock, dry_run=True)  # takes no lock
    assert not preview.ok and "namespaces" in preview.cause


def test_a_forbidden_lease_says_what_to_check(video, server, clock):
    before, _ = switch_plans(video)
    server.hooks.append(lambda m, p, q: (403, {"message": "leases is forbidden"}) if "/leases" in p else None)
    with pytest.raises(ClusterError, match="403.*lack a permission in namespace default.*reconciler-rbac"):
        _go(before, video, _backend(server, clock), clock)
    assert server.objects == {}


def test_a_field_conflict_is_found_by_the_preflight_and_nothing_is_written(video, server, clock):
    from kubernetes import client

    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    client.AppsV1Api(backend._api_client).patch_namespaced_deployment(
        "video-gpu-classify", NS, {"spec": {"replicas": 7}}, field_manager="hpa-controller"
    )
    writes = len(_deployment_writes(server))
    result = _go(after, video, backend, clock)
    assert not result.ok and "hpa-controller" in result.cause and "refused before anything" in result.cause
    assert len(_deployment_writes(server)) == writes  # the dry runs found it: not one write
    assert {o.stage: o.status for o in result.outcomes} == {"detect": "skipped", "classify": "conflict"}


# ---- no answer, a dropped connection, the server dying --------------------------------------------------
def test_an_answer_that_never_comes_times_out_and_rolls_back(video, server, clock):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    backend.attempts = 2
    seen = {"n": 0}

    def hook(m, p, q):  # both attempts at classify's write hang; the restores after them are answered
        if m == "PATCH" and "/deployments/" in p and q.get("dryRun") != "All":
            seen["n"] += 1
            return HANG if seen["n"] in (2, 3) else None
        return None

    server.hooks.append(hook)
    result = _go(after, video, backend, clock)
    # classify's write may or may not have landed: it is restored too.
    _assert_rolled_back(result, server, video, before, after, "cannot reach the Kubernetes API")
    assert {o.stage: o.status for o in result.outcomes} == {
        "detect": "rolled-back",
        "classify": "rolled-back",
    }


def test_dropped_connections_are_retried(video, server, clock):
    before, _ = switch_plans(video)
    _write_hook(server, 1, DROP)
    result = _go(before, video, _backend(server, clock), clock)
    assert result.ok and len(server.objects) == 2


def _converges(server, video, backend, clock, before, after, target):
    server.hooks.clear()
    if server.dead:
        server.revive()
    # The dead run could not release its lease: the next one waits for it to expire, then takes it.
    again = _go(target, video, backend, clock, lock_wait_s=120)
    assert again.ok, again.to_dict()
    clock.sleep(10)
    tag = "new" if target is after else "old"
    assert set(_on(server, video, before, after).values()) == {tag}


def test_the_api_dying_mid_rollout_is_reported_and_the_next_run_converges(video, server, clock):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    backend.attempts = 2
    state = {"written": False}

    def hook(m, p, q):
        if m == "PATCH" and p.endswith("-detect") and q.get("dryRun") != "All":
            state["written"] = True
        elif m == "GET" and state["written"]:
            return DIE  # while the reconciler waits for detect's rollout
        return None

    server.hooks.append(hook)
    result = _go(after, video, backend, clock)
    assert not result.ok and "lost the cluster while waiting for the rollout" in result.cause
    by = {o.stage: o for o in result.outcomes}
    # The rollback could not reach the cluster either: said per stage, never claimed done. Whether a
    # write without an answer landed is not known, so the stage is reported unknown, not old.
    assert by["detect"].status == "rollback-failed" and by["detect"].on == "unknown"
    assert by["classify"].status == "skipped" and by["classify"].on == "old"
    assert "stages ['detect'] are in an unknown state" in result.summary()
    assert _on(server, video, before, after) == {"video-gpu-detect": "new", "video-gpu-classify": "old"}
    _converges(server, video, backend, clock, before, after, after)


@pytest.mark.parametrize("target", ["old", "new"])
def test_the_api_dying_mid_rollback_names_the_first_failure(video, server, clock, target):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    backend.attempts = 2
    server.hooks.append(
        lambda m, p, q: (
            (503, {"message": "injected 503"})
            if m == "PATCH" and p.endswith("-classify") and q.get("dryRun") != "All"
            else None
        )
    )
    # The rollback's write of detect (forced, with the old spec) kills the server.
    server.hooks.insert(
        0,
        lambda m, p, q: (
            DIE if m == "PATCH" and p.endswith("-detect") and q.get("force", "").lower() == "true" else None
        ),
    )
    result = _go(after, video, backend, clock)
    assert (
        "503" in result.cause and "cannot reach" not in result.cause
    )  # the cause, not the rollback's failure
    by = {o.stage: o for o in result.outcomes}
    assert by["detect"].status == "rollback-failed" and "cannot reach" in by["detect"].message
    assert by["detect"].on == "unknown"
    assert "unknown state" in result.summary()
    _converges(server, video, backend, clock, before, after, before if target == "old" else after)


def test_a_deployment_deleted_by_someone_else_mid_run_is_restored(video, server, clock):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    state = {"written": False}

    def hook(m, p, q):
        if m == "PATCH" and p.endswith("-detect") and q.get("dryRun") != "All":
            state["written"] = True
        elif m == "GET" and state["written"] and p.endswith("-detect") and not state.get("gone"):
            state["gone"] = True
            server.objects.pop((NS, "video-gpu-detect"), None)  # kubectl delete, from elsewhere
        return None

    server.hooks.append(hook)
    result = _go(after, video, backend, clock)
    _assert_rolled_back(result, server, video, before, after, "deleted by someone else")


def test_a_stage_created_by_an_abandoned_run_is_deleted(video, server, clock):
    before, _ = switch_plans(video)
    backend = _backend(server, clock)
    server.hold.add("video-gpu-detect")
    spec = video.spec.model_copy(
        update={"deployment": video.spec.deployment.model_copy(update={"rollout_deadline_s": 30})}
    )
    result = reconcile(before, spec, backend, clock=clock, sleep=clock.sleep, poll_s=1.0)
    assert not result.ok and result.consistent and "did not become available within 30 s" in result.cause
    assert server.objects == {}  # the empty namespace it found
    assert all(o.status == "rolled-back" and "deleted" in o.message for o in result.outcomes)


# ---- one writer at a time ---------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder_and_the_first_completes(video, server, clock):
    before, after = switch_plans(video)
    first = _started(server, video, before, clock)
    inside, release = threading.Event(), threading.Event()

    def hook(m, p, q):
        if (
            m == "GET"
            and p.endswith("-detect")
            and not inside.is_set()
            and server.writes[-1][1].endswith("detect")
        ):
            inside.set()
            release.wait(30)
        return None

    server.hooks.append(hook)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=_go(after, video, first, clock, holder="writer-A")))
    t.start()
    assert inside.wait(30)
    second = _backend(server, clock)
    with pytest.raises(ClusterBusy, match="held by writer-A"):
        _go(before, video, second, clock, holder="writer-B", lock_wait_s=0)
    release.set()
    t.join(30)
    assert out["r"].ok
    assert set(_on(server, video, before, after).values()) == {"new"}  # not a mix of A and B
    # Now free: B runs alone and the cluster ends wholly on B's plan.
    assert _go(before, video, second, clock, holder="writer-B").ok
    clock.sleep(10)
    assert set(_on(server, video, before, after).values()) == {"old"}


def test_a_lease_left_by_a_dead_writer_expires(video, server, clock):
    before, _ = switch_plans(video)
    server.leases[(NS, "ipa-video-gpu")] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "ipa-video-gpu", "namespace": NS, "resourceVersion": "1"},
        "spec": {
            "holderIdentity": "ghost",
            "leaseDurationSeconds": 60,
            "renewTime": "1970-01-01T00:00:00.000000Z",
        },
    }
    result = _go(before, video, _backend(server, clock), clock, lock_wait_s=0)
    assert result.ok
    assert server.leases[(NS, "ipa-video-gpu")]["spec"]["holderIdentity"] == ""  # released


def test_a_live_lease_makes_the_second_writer_wait_then_give_up(video, server, clock):
    before, _ = switch_plans(video)
    import datetime as dt

    renewed = dt.datetime.fromtimestamp(clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    server.leases[(NS, "ipa-video-gpu")] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "ipa-video-gpu", "namespace": NS, "resourceVersion": "1"},
        "spec": {"holderIdentity": "other-host/pid-1", "leaseDurationSeconds": 600, "renewTime": renewed},
    }
    start = clock()
    with pytest.raises(ClusterBusy, match="other-host/pid-1"):
        _go(before, video, _backend(server, clock), clock, lock_wait_s=20)
    assert clock() - start >= 20  # it waited (on the test's clock) before giving up
    assert server.objects == {}


def test_two_processes_on_one_simulated_state_file_lose_nothing(tmp_path, clock):
    """Each backend loaded the file before the other wrote: every write re-reads it under the lock."""
    video = load_pipeline(PIPELINES / "video-gpu.yaml")
    cpu = load_pipeline(PIPELINES / "video-cpu.yaml")
    state = tmp_path / "simulated.json"
    a = SimulatedBackend(state_file=state, clock=clock, sleep=clock.sleep, startup_s=0)
    b = SimulatedBackend(state_file=state, clock=clock, sleep=clock.sleep, startup_s=0)
    assert reconcile(
        make_plan(video.spec, video.profiles, 100), video.spec, a, clock=clock, sleep=clock.sleep
    ).ok
    assert reconcile(make_plan(cpu.spec, cpu.profiles, 10), cpu.spec, b, clock=clock, sleep=clock.sleep).ok
    names = {o["metadata"]["name"] for o in SimulatedBackend(state_file=state).list(NS)}
    assert names == {"video-gpu-detect", "video-gpu-classify", "video-cpu-detect", "video-cpu-classify"}


def test_one_writer_per_pipeline_on_the_simulated_state_file(tmp_path, video, clock):
    state = tmp_path / "cluster" / "simulated.json"  # a folder that does not exist yet
    a = SimulatedBackend(state_file=state, clock=clock, sleep=clock.sleep, startup_s=0)
    b = SimulatedBackend(state_file=state, clock=clock, sleep=clock.sleep, startup_s=0)
    before, _ = switch_plans(video)
    with a.writer_lock(NS, "video-gpu", holder="writer-A", wait_s=0):
        with pytest.raises(ClusterBusy, match="writer-A"):
            reconcile(before, video.spec, b, clock=clock, sleep=clock.sleep, lock_wait_s=3)
    assert reconcile(before, video.spec, b, clock=clock, sleep=clock.sleep, lock_wait_s=0).ok


@pytest.mark.parametrize("content", ["[]", "{", '{"objects": [{"name": 1}]}'])
def test_a_broken_simulated_state_file_is_a_clear_error(tmp_path, content):
    state = tmp_path / "simulated.json"
    state.write_text(content)
    with pytest.raises(ClusterError, match=str(state)):
        SimulatedBackend(state_file=state)
    with pytest.raises(ClusterError, match="is a directory"):
        SimulatedBackend(state_file=tmp_path)


def test_the_result_round_trips_through_its_dict(video, server, clock):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)
    server.hooks.append(
        lambda m, p, q: (
            (503, {"message": "x"})
            if m == "PATCH" and p.endswith("-classify") and q.get("dryRun") != "All"
            else None
        )
    )
    result = _go(after, video, backend, clock)
    assert ReconcileResult.from_dict(result.to_dict()) == result


def test_a_deployment_of_another_pipeline_with_the_same_name_is_never_taken_over(clock):
    """Pipeline 'a-b' stage 'c' and pipeline 'a' stage 'b-c' both render 'a-b-c': no spec alone sees it."""
    video = load_pipeline(PIPELINES / "video-gpu.yaml")
    backend = SimulatedBackend(clock=clock, startup_s=0)
    before, _ = switch_plans(video)
    assert _go(before, video, backend, clock).ok
    theirs = backend.objects[(NS, "video-gpu-detect")]
    theirs["metadata"]["labels"]["ipa.io/pipeline"] = "video"  # as pipeline 'video' stage 'gpu-detect' would
    snapshot = copy.deepcopy(backend.objects)
    with pytest.raises(ClusterError, match="belongs to pipeline 'video'"):
        _go(
            replace(before, stages=(before.stages[0], replace(before.stages[1], replicas=4))),
            video,
            backend,
            clock,
        )
    assert backend.objects == snapshot


# ---- the lock under faults -------------------------------------------------------------------------------
def _lease_spec(server) -> dict:
    return server.leases[(NS, "ipa-video-gpu")]["spec"]


def test_a_lease_lost_mid_run_stops_every_write_including_the_rollback(video, server, clock):
    before, after = switch_plans(video)
    backend = _backend(server, clock, lease_duration_s=6)
    assert _go(before, video, backend, clock).ok
    clock.sleep(10)
    state = {"taken": False}

    def hook(m, p, q):  # while A waits for detect's rollout, B takes the lease (A stalled past its expiry)
        if (
            m == "GET"
            and p.endswith("-detect")
            and not state["taken"]
            and server.writes[-1][1].endswith("detect")
        ):
            state["taken"] = True
            _lease_spec(server)["holderIdentity"] = "writer-B"
            server.leases[(NS, "ipa-video-gpu")]["metadata"]["resourceVersion"] = "9999"
        return None

    server.hooks.append(hook)
    writes = len(_deployment_writes(server))
    result = _go(after, video, backend, clock, holder="writer-A")
    assert "lost the pipeline lease" in result.cause and "writer-B" in result.cause
    by = {o.stage: o for o in result.outcomes}
    assert by["detect"].status == "abandoned" and by["detect"].on == "unknown"  # never forced back over B
    assert len(_deployment_writes(server)) == writes + 1  # detect's own write, nothing after it
    assert "unknown state" in result.summary()
    assert _lease_spec(server)["holderIdentity"] == "writer-B"  # not released by A: it is not A's


def test_a_renew_whose_answer_was_lost_is_not_taken_for_another_writer(video, server, clock):
    from tests.k8s_apiserver import STORE_THEN_DROP

    before, after = switch_plans(video)
    backend = _backend(server, clock, lease_duration_s=6)  # renewed every 2 s of the 5-s rollout
    assert _go(before, video, backend, clock).ok
    clock.sleep(10)
    state = {"n": 0}

    def hook(m, p, q):
        if m == "PUT" and "/leases/" in p:
            state["n"] += 1
            return STORE_THEN_DROP if state["n"] == 2 else None  # the first renew of this run
        return None

    server.hooks.append(hook)
    result = _go(after, video, backend, clock)
    assert result.ok, result.to_dict()
    assert state["n"] >= 3


def test_a_writer_whose_clock_runs_ahead_does_not_take_a_live_lease(video, server, clock):
    before, _ = switch_plans(video)
    import datetime as dt

    renewed = dt.datetime.fromtimestamp(clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    server.leases[(NS, "ipa-video-gpu")] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "ipa-video-gpu", "namespace": NS, "resourceVersion": "1"},
        "spec": {"holderIdentity": "writer-A", "leaseDurationSeconds": 60, "renewTime": renewed},
    }
    ahead = _backend(server, clock)
    ahead.wall = lambda: clock() + 61  # its clock says A's renewal is 61 s old: past the duration
    with pytest.raises(ClusterBusy, match="writer-A"):
        _go(before, video, ahead, clock, lock_wait_s=30)
    assert server.objects == {}
    # Watched unchanged for a whole lease duration on its own clock, the lease is free (A died).
    assert _go(before, video, ahead, clock, lock_wait_s=90).ok


def test_the_summary_says_when_the_changed_stages_stay_on_the_new_plan(video, server, clock):
    before, _ = switch_plans(video)
    backend = _started(server, video, before, clock)
    more = replace(
        before, stages=(replace(before.stages[0], replicas=before.stages[0].replicas + 1), before.stages[1])
    )
    server.hold.add("video-gpu-detect")
    server.hooks.append(lambda m, p, q: (403, {"message": "no"}) if m == "PATCH" and _forced(q) else None)
    spec = video.spec.model_copy(
        update={"deployment": video.spec.deployment.model_copy(update={"rollout_deadline_s": 30})}
    )
    result = reconcile(more, spec, backend, clock=clock, sleep=clock.sleep, poll_s=1.0)
    assert {o.stage: o.on for o in result.outcomes} == {"detect": "new", "classify": "both"}
    assert "every changed stage is still on the new plan" in result.summary()


def test_an_interrupt_mid_rollout_restores_what_was_written(video, server, clock):
    before, after = switch_plans(video)
    backend = _started(server, video, before, clock)

    def interrupted(_s):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reconcile(after, video.spec, backend, clock=clock, sleep=interrupted, poll_s=1.0)
    assert set(_on(server, video, before, after).values()) == {"old"}
