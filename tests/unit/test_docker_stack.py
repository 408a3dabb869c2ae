"""The Docker stack cannot run here: check what can be checked without Docker. The compose file against
the Compose specification (a strict parser), its references (services, volumes, files, build contexts),
every Dockerfile's COPY sources and base images, and Prometheus' configuration with promtool."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"


def compose() -> dict:
    # Compose resolves YAML anchors and merge keys before it validates; so does PyYAML.
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_specification():
    from compose_spec import PyCompose

    parsed = PyCompose.from_json(json.dumps(compose()))
    assert set(parsed.service_names()) >= {
        "postgres",
        "mlflow",
        "prometheus",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    }


def test_the_validator_rejects_a_misspelt_key():
    """So the check above can fail."""
    from compose_spec import PyCompose

    bad = compose()
    bad["services"]["mlflow"]["portz"] = ["5000:5000"]
    with pytest.raises(ValueError, match="portz"):
        PyCompose.from_json(json.dumps(bad))


def test_compose_references_resolve():
    doc = compose()
    services, volumes = doc["services"], set(doc.get("volumes", {}))
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
        build = svc.get("build")
        if build:
            context = DOCKER / (build if isinstance(build, str) else build["context"])
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file() or (REPO / dockerfile).is_file(), f"{name}: {dockerfile}"


DOCKERFILES = {
    # Dockerfile -> its build context
    DOCKER / "airflow" / "Dockerfile": REPO,
    DOCKER / "profiler" / "Dockerfile": REPO,
    DOCKER / "model-server" / "Dockerfile": DOCKER / "model-server",
    DOCKER / "mlflow" / "Dockerfile": DOCKER / "mlflow",
}


@pytest.mark.parametrize("dockerfile", list(DOCKERFILES), ids=lambda p: p.parent.name)
def test_dockerfiles_copy_what_exists_from_pinned_bases(dockerfile: Path):
    context = DOCKERFILES[dockerfile]
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", text, flags=re.M)
    for line in copies:
        *sources, _dest = line.split()
        for src in sources:
            assert (context / src).exists(), f"{dockerfile}: COPY {src} is not in {context}"
    constraints = (REPO / "constraints.txt").read_text()
    for pkg, version in re.findall(r"(mlflow|torch|torchvision)==([\w.]+)", text):
        assert f"{pkg}=={version}" in constraints, f"{dockerfile}: {pkg}=={version} differs from constraints"


def test_model_server_requirements_match_the_constraints():
    """The model server's environment pins what it names, and shares the versions models are saved with
    (mlflow, torch, torchvision) with the project's own constraints."""
    ours = set((REPO / "constraints.txt").read_text().split())
    serving = set((DOCKER / "model-server" / "constraints.txt").read_text().split())
    reqs = [
        line.strip()
        for line in (DOCKER / "model-server" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert reqs and all(r in serving for r in reqs), reqs
    shared = [r for r in reqs if r.split("==")[0] in ("mlflow", "torch", "torchvision")]
    assert len(shared) == 3 and all(r in ours for r in shared), shared


def test_local_servers_run_with_the_image_settings():
    """What the image sets with ENV is what a local replica (ipa live, served profiling) runs with."""
    from ipa_airflow.serving.server import IMAGE_ENV

    text = (DOCKER / "model-server" / "Dockerfile").read_text()
    env = dict(re.findall(r"(MLSERVER_\w+)=(\S+)", " ".join(re.findall(r"^ENV (.+)$", text, flags=re.M))))
    env.pop("MLSERVER_METRICS_PORT")  # one port per local process
    assert env == IMAGE_ENV


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_prometheus_configuration_is_valid():
    out = subprocess.run(
        ["promtool", "check", "config", str(DOCKER / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
