"""The Kubernetes manifests we ship validate against the official schemas."""

import pytest
import yaml

from tests.conftest import REPO

MANIFESTS = sorted((REPO / "docker").rglob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in MANIFESTS if "k8s" in p.parts], ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(path):
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
