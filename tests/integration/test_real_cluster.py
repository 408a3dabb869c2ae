"""The reconcile flow against a real cluster, when one is configured (KUBECONFIG)."""

from __future__ import annotations

import os
import uuid

import pytest

from ipa_airflow.cluster.backends import RolloutStatus
from ipa_airflow.cluster.desired import ANN_PLAN
from ipa_airflow.cluster.kubernetes_backend import KubernetesBackend
from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.spec import PipelineSpec, deployment_name
from tests.conftest import PIPELINES

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"), reason="no KUBECONFIG: no Kubernetes cluster to test on"
    ),
]

# The test is about the reconcile (preflight, apply, waiting for the rollout, reading it back), not about
# serving: its pods run an image that is ready without a model, so a rollout that does not complete is a
# failure of the reconcile or of the cluster, never an expected outcome. Any image with `sleep` and `true`.
IMAGE = os.environ.get("IPA_TEST_IMAGE", "busybox:1.36")


def _template() -> dict:
    container = {
        "name": "model",
        "image": IMAGE,
        "command": ["sleep", "86400"],
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def test_dry_run_then_apply_on_a_real_cluster():
    video = load_pipeline(PIPELINES / "video-cpu.yaml")
    ns = os.environ.get("IPA_TEST_NAMESPACE", "default")
    spec = PipelineSpec.from_dict(
        {
            **video.spec.to_dict(),
            "namespace": ns,
            "name": f"ipa-test-{uuid.uuid4().hex[:6]}",
            "deployment": {"template": _template(), "rollout_deadline_s": 300.0},
        }
    )
    p = plan(spec, video.profiles, 5)
    backend = KubernetesBackend.from_config()
    names = {s.stage: deployment_name(spec.name, s.stage) for s in p.stages}

    preview = reconcile(p, spec, backend, dry_run=True)
    assert preview.ok, preview.summary()
    assert [o.status for o in preview.outcomes] == ["dry-run"] * len(p.stages)
    assert all(backend.get(ns, name) is None for name in names.values())  # a dry run writes nothing

    try:
        result = reconcile(p, spec, backend)
        assert result.ok and result.consistent, result.summary()
        assert [o.status for o in result.outcomes] == ["applied"] * len(p.stages)
        for stage in p.stages:
            live = backend.get(ns, names[stage.stage])
            assert live is not None, f"{names[stage.stage]} is not on the cluster after the apply"
            assert live["metadata"]["annotations"][ANN_PLAN] == p.plan_id
            assert live["spec"]["replicas"] == stage.replicas
            assert RolloutStatus.of(live).complete  # the rollout was waited for

        again = reconcile(p, spec, backend)  # what runs is the plan: nothing to write
        assert again.ok, again.summary()
        assert [o.status for o in again.outcomes] == ["unchanged"] * len(p.stages)
    finally:
        for name in names.values():
            backend.delete(ns, name)
