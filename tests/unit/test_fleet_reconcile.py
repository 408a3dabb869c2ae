"""Reconciling a fleet: capacity-freeing changes before capacity-taking ones, the quota held between
pipelines, a failed pipeline reported without stopping the others, on the simulated cluster."""

from dataclasses import replace

import pytest

from ipa_airflow.cluster.backends import ClusterError
from ipa_airflow.cluster.desired import observe
from ipa_airflow.cluster.fleet_reconcile import FREES, SAME, TAKES, UNCHANGED, reconcile_fleet, running_usage
from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.control import Decision
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.plans import config_id
from tests.conftest import PIPELINES
from tests.conftest import FakeClock as Clock

VIDEO = load_pipeline(PIPELINES / "video-cpu.yaml")  # 6 cores at 30 req/s, 4 at 2 req/s
NLP = load_pipeline(PIPELINES / "paper" / "nlp.yaml")  # 34 cores at 10 req/s, 97 at 30 req/s
SPECS = {"video-cpu": VIDEO.spec, "paper-nlp": NLP.spec}


class FailingWrites(SimulatedBackend):
    """Refuses the real (not dry-run) writes of the Deployments it names."""

    refuse: set[str] = set()

    def apply(self, manifest, *, dry_run=False, force=False):
        if not dry_run and manifest["metadata"]["name"] in self.refuse:
            raise ClusterError(f"admission refused {manifest['metadata']['name']}")
        return super().apply(manifest, dry_run=dry_run, force=force)


def _plan(p, load):
    return plan(p.spec, p.profiles, load)


def _decision(running, new):
    return Decision(
        plan=new,
        previous_plan_id=None if running is None else running.plan_id,
        reason="test",
        proposal_id=new.plan_id,
        load_rps=new.load_rps,
    )


def _cluster(backend, *plans):
    """`backend` running `plans`, its record of applies cleared."""
    for p in plans:
        spec = SPECS[p.pipeline]
        assert reconcile(p, spec, backend, clock=backend.clock, sleep=backend.sleep).ok
    backend.applies.clear()
    return backend


def _written(backend, pipeline):
    """Positions in the apply log of the real writes to a pipeline's Deployments."""
    return [
        i for i, (_, name, dry) in enumerate(backend.applies) if not dry and name.startswith(pipeline + "-")
    ]


def _setup(backend_cls=SimulatedBackend):
    clock = Clock()
    video_big, video_small = _plan(VIDEO, 30), _plan(VIDEO, 2)
    nlp_small, nlp_big = _plan(NLP, 10), _plan(NLP, 30)
    backend = _cluster(backend_cls(clock=clock, sleep=clock.sleep, startup_s=5.0), video_big, nlp_small)
    # The taking pipeline comes first in the mapping: the order must come from the usage, not from it.
    decisions = {"paper-nlp": _decision(nlp_small, nlp_big), "video-cpu": _decision(video_big, video_small)}
    return backend, clock, decisions


def test_freeing_changes_go_first_and_the_quota_holds_between_pipelines():
    backend, clock, decisions = _setup()
    assert running_usage(VIDEO.spec, backend, ("cpu",)) == {"cpu": 6.0}
    # 6 + 97 = 103 cores if the growing pipeline went first; 4 + 97 = 101 in the right order.
    out = reconcile_fleet(decisions, SPECS, backend, quota={"cpu": 101}, clock=clock, sleep=clock.sleep)
    assert out.ok and out.order == ("video-cpu", "paper-nlp")
    assert out.of("video-cpu").kind == FREES and out.of("paper-nlp").kind == TAKES
    assert out.of("video-cpu").before == {"cpu": 6.0} and out.of("paper-nlp").after == {"cpu": 97.0}
    video, nlp = _written(backend, "video-cpu"), _written(backend, "paper-nlp")
    assert video and nlp and max(video) < min(nlp)
    assert out.peak == {"cpu": 101.0}
    for name, d in decisions.items():  # every pipeline on its new plan
        assert config_id(name, observe(SPECS[name], backend)) == d.plan.plan_id


def test_a_failed_freeing_change_holds_back_the_change_that_needed_its_room():
    # video-cpu's detect Deployment cannot be written: its reconcile rolls back, so it still takes 6
    # cores, and paper-nlp's 97 would make 103 of 101.
    backend, clock, decisions = _setup(FailingWrites)
    backend.refuse = {"video-cpu-detect"}  # after the pipelines were deployed
    before = observe(NLP.spec, backend)
    out = reconcile_fleet(decisions, SPECS, backend, quota={"cpu": 101}, clock=clock, sleep=clock.sleep)
    video, nlp = out.of("video-cpu"), out.of("paper-nlp")
    assert not out.ok and out.order == ("video-cpu",)
    assert video.result is not None and not video.result.ok and video.result.consistent
    assert "admission refused" in video.result.cause and video.now == {"cpu": 6.0}
    assert nlp.step is None and nlp.result is None and "cpu 103 of 101" in nlp.held
    assert _written(backend, "paper-nlp") == [] and observe(NLP.spec, backend) == before
    assert out.peak == {"cpu": 40.0}  # what ran: nothing grew
    assert "paper-nlp: held back" in out.summary()


def test_a_refused_pipeline_is_reported_and_the_others_still_go():
    backend, clock, decisions = _setup()
    bad = decisions["video-cpu"].plan
    bad = replace(bad, stages=(replace(bad.stages[0], replicas=0), *bad.stages[1:]))
    decisions["video-cpu"] = replace(decisions["video-cpu"], plan=bad)
    # With room for both, paper-nlp grows although video-cpu's plan was refused.
    out = reconcile_fleet(decisions, SPECS, backend, quota={"cpu": 120}, clock=clock, sleep=clock.sleep)
    video, nlp = out.of("video-cpu"), out.of("paper-nlp")
    assert "never scaled to zero" in video.error and video.result is None and not video.ok
    assert nlp.ok and nlp.result is not None and nlp.result.changed
    assert config_id("paper-nlp", observe(NLP.spec, backend)) == decisions["paper-nlp"].plan.plan_id
    assert out.order == ("video-cpu", "paper-nlp") and out.peak == {"cpu": 103.0}


def test_unchanged_and_same_usage_changes_and_unknown_pipelines():
    backend, clock, _ = _setup()
    video = _plan(VIDEO, 30)
    nlp = _plan(NLP, 10)
    # A new batch size on the same shape and replicas: a change that takes no more of the quota.
    first = video.stages[0]
    rebatched = replace(video, stages=(replace(first, batch=1 if first.batch > 1 else 2), *video.stages[1:]))
    decisions = {"paper-nlp": _decision(nlp, nlp), "video-cpu": _decision(video, rebatched)}
    out = reconcile_fleet(decisions, SPECS, backend, quota={"cpu": 40}, clock=clock, sleep=clock.sleep)
    assert out.of("paper-nlp").kind == UNCHANGED and out.of("paper-nlp").step is None
    assert out.of("video-cpu").kind == SAME and out.order == ("video-cpu",) and out.ok
    assert _written(backend, "paper-nlp") == [] and _written(backend, "video-cpu")
    with pytest.raises(ValueError, match="does not have: other"):
        reconcile_fleet({"other": decisions["video-cpu"]}, SPECS, backend, quota={"cpu": 40})


def test_a_dry_run_previews_the_order_and_writes_nothing():
    backend, clock, decisions = _setup()
    out = reconcile_fleet(decisions, SPECS, backend, quota={"cpu": 101}, dry_run=True)
    assert out.ok and out.dry_run and out.order == ("video-cpu", "paper-nlp")
    assert all(dry for _, _, dry in backend.applies)
    d = out.to_dict()
    assert d["order"] == ["video-cpu", "paper-nlp"] and d["pipelines"][0]["reconcile"]["dry_run"]
