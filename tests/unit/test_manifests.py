"""The Kubernetes manifests we ship validate against the official schemas."""

import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "docker" / "k8s"
# docker/k8s/spec holds a pipeline spec and its Deployment template (a partial manifest the reconciler
# completes and validates when it renders); everything else there is a manifest to apply as it is.
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if "spec" not in p.relative_to(K8S).parts)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(path):
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_example_deployments_are_what_the_code_renders(tmp_path):
    """docker/k8s/video-cpu-deployments.yaml is generated; it must not drift from the renderer."""
    from ipa_airflow.cli import main

    out = tmp_path / "d.yaml"
    spec = "docker/k8s/spec/video-cpu-live.yaml"
    assert main(["manifests", str(REPO / spec), "--load", "10", "--out", str(out)]) == 0
    fresh = out.read_text().split("\n", 1)[1]  # the header names the path it was given
    shipped = (K8S / "video-cpu-deployments.yaml").read_text().split("\n", 1)[1]
    assert fresh == shipped, (
        f"re-render it: ipa manifests {spec} --load 10 --out docker/k8s/video-cpu-deployments.yaml"
    )
    docs = list(yaml.safe_load_all(shipped))
    assert [d["metadata"]["name"] for d in docs] == ["video-cpu-detect", "video-cpu-classify"]
    services = list(yaml.safe_load_all((K8S / "video-cpu-services.yaml").read_text()))
    for dep, svc in zip(docs, services, strict=True):
        # every Service selects exactly the pods of its stage's Deployment, whatever the variant
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
