"""The reconcile flow against a real cluster, when one is configured (KUBECONFIG)."""

from __future__ import annotations

import os
import uuid

import pytest

from ipa_airflow.cluster.kubernetes_backend import KubernetesBackend
from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.spec import PipelineSpec
from tests.conftest import PIPELINES

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"), reason="no KUBECONFIG: no Kubernetes cluster to test on"
    ),
]


def test_dry_run_then_apply_on_a_real_cluster():
    video = load_pipeline(PIPELINES / "video-cpu.yaml")
    ns = os.environ.get("IPA_TEST_NAMESPACE", "default")
    spec = PipelineSpec.from_dict(
        {**video.spec.to_dict(), "namespace": ns, "name": f"ipa-test-{uuid.uuid4().hex[:6]}"}
    )
    p = plan(spec, video.profiles, 5)
    backend = KubernetesBackend.from_config()
    assert reconcile(p, spec, backend, dry_run=True).ok
    result = reconcile(p, spec, backend)
    assert all(o.status in ("applied", "failed") for o in result.outcomes)
