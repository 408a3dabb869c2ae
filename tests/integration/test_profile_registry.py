"""Profiling a registered model version against a real MLflow server, reading it back, planning with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.registry import MlflowProfileRegistry, RegistryError
from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow

SPEC = """
name: tiny
sla_s: 0.5
objective: {{accuracy: product}}
limits: {{batch_sizes: [1, 2, 4], max_replicas: 8}}
stages:
  - name: classify
    variants:
      - name: tiny
        model: tiny-classifier
        model_uri: models:/tiny-classifier/1
        accuracy: 71.5
        shapes: [{{hardware: {hardware}, resources: {{cpu: 1}}}}]
"""


@pytest.fixture(scope="module")
def registered(mlflow_server):
    import mlflow
    import torch

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10)).eval()
    # Two rows: torch.export keeps the batch dimension dynamic (one row would fix it at 1).
    example = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model, name="model", input_example=example, registered_model_name="tiny-classifier"
        )
    return mlflow_server


@pytest.fixture(scope="module")
def profiled(registered, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "summary.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "profile",
                "--model-uri",
                "models:/tiny-classifier/1",
                "--batch-sizes",
                "1,2,4",
                "--device",
                "cpu",
                "--threads",
                "1",
                "--hardware",
                "ci-cpu",
                "--tracking-uri",
                registered,
                "--json",
            ]
        )
    assert code == 0, buf.getvalue()
    out.write_text(buf.getvalue())
    return json.loads(buf.getvalue())


def test_profile_run_holds_the_sweep(registered, profiled):
    from mlflow import MlflowClient

    assert [c["batch"] for c in profiled["cells"]] == [1, 2, 4]
    for cell in profiled["cells"]:
        assert 0 < cell["p50_ms"] <= cell["p99_ms"]
        assert cell["iters"] >= 20 and cell["cv"] >= 0 and cell["peak_memory_mb"] > 0
    client = MlflowClient(registered)
    run = client.get_run(profiled["run_id"])
    assert run.data.tags["ipa.model_ref"] == "models:/tiny-classifier/1"
    assert run.data.tags["ipa.staleness_key"] == profiled["staleness_key"]
    assert run.data.params["batch_sizes"] == "1,2,4"
    history = client.get_metric_history(profiled["run_id"], "p99_ms")
    assert sorted(m.step for m in history) == [1, 2, 4]  # step = batch size: the UI draws the curve
    artifacts = {a.path for a in client.list_artifacts(profiled["run_id"])}
    assert {"profile.json", "profile.csv", "latency_throughput.png", "profile_table.json"} <= artifacts


def test_model_version_page_summarises_the_profile(registered, profiled):
    from mlflow import MlflowClient

    tags = MlflowClient(registered).get_model_version("tiny-classifier", "1").tags
    prefix = "ipa.profile.ci-cpu.cpu1.fp32"
    assert tags[f"{prefix}.run_id"] == profiled["run_id"]
    assert float(tags[f"{prefix}.b1_p99_ms"]) == pytest.approx(profiled["cells"][0]["p99_ms"], rel=1e-2)
    assert tags[f"{prefix}.staleness_key"] == profiled["staleness_key"]
    # The profile run one click away, and the experiment says what the metrics' step is.
    client = MlflowClient(registered)
    exp = client.get_experiment_by_name("ipa-profiles")
    assert (
        tags[f"{prefix}.run_url"]
        == f"{registered}/#/experiments/{exp.experiment_id}/runs/{profiled['run_id']}"
    )
    assert "batch size as their step" in exp.tags["mlflow.note.content"]


def test_read_back_and_plan(registered, profiled, tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(SPEC.format(hardware="ci-cpu"))
    registry = MlflowProfileRegistry(registered)
    pipeline = load_pipeline(spec_path, registry=registry, runtime=profiled["runtime"])
    profile = pipeline.profiles.get("tiny-classifier/ci-cpu/fp32/cpu=1")
    assert profile.measured_batches == [1, 2, 4]
    p = plan(pipeline.spec, pipeline.profiles, 50.0)
    assert p.feasible and p.stages[0].variant == "tiny"
    assert p.stages[0].capacity_rps >= 50.0


def test_stale_runtime_is_refused_with_the_difference(registered, profiled, tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(SPEC.format(hardware="ci-cpu"))
    with pytest.raises(RegistryError) as exc:
        load_pipeline(spec_path, registry=MlflowProfileRegistry(registered), runtime="torch==1.0.0")
    assert "stale" in str(exc.value) and "torch==1.0.0" in str(exc.value)


def test_missing_profile_names_variant_and_hardware(registered, profiled, tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(SPEC.format(hardware="a100"))
    with pytest.raises(RegistryError, match=r"no profile of models:/tiny-classifier/1 on a100"):
        load_pipeline(spec_path, registry=MlflowProfileRegistry(registered))


def test_mlflow_down_is_a_clear_error():
    registry = MlflowProfileRegistry(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryError, match="cannot reach MLflow"):
        registry.experiment_id()


def test_a_model_fixed_at_batch_one_is_explained(registered):
    import mlflow
    import torch

    from ipa_airflow.profiles import ProfileError
    from ipa_airflow.profiling.sweep import SweepRequest, profile_registered
    from ipa_airflow.profiling.timing import TimingSettings

    model = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=np.zeros((1, 8), np.float32),
            registered_model_name="fixed-batch",
        )
    request = SweepRequest("ci-cpu", (1, 2), device="cpu")
    fast = TimingSettings(min_iters=3, min_seconds=0.0)
    with pytest.raises(ProfileError, match="two or more rows"):
        profile_registered("models:/fixed-batch/1", "fixed-batch", request, settings=fast)


def test_a_pyfunc_model_is_profiled_through_predict(registered):
    import mlflow

    from ipa_airflow.profiling.sweep import SweepRequest, profile_registered
    from ipa_airflow.profiling.timing import TimingSettings

    class Scaler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.tanh(np.asarray(model_input, dtype=np.float32) @ np.ones((16, 4), np.float32))

    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=Scaler(),
            input_example=np.zeros((2, 16), np.float32),
            registered_model_name="scaler",
        )
    request = SweepRequest("ci-cpu", (1, 8), device="cpu")
    result = profile_registered(
        "models:/scaler/1", "scaler", request, settings=TimingSettings(min_iters=5, min_seconds=0.0)
    )
    assert result.profile.task == "pyfunc"
    assert result.profile.measured_batches == [1, 8]
    assert result.key.model_ref == "models:/scaler/1"


# ---- measured work is never thrown away --------------------------------------------------------------
class Cuttable:
    """A loopback TCP forwarder to `target` that can be cut, existing connections included: MLflow going
    away between the measuring and the filing, without stopping the session's server."""

    def __init__(self, target_port: int):
        import socket
        import threading

        self._socket, self._threading, self._target = socket, threading, target_port
        self._open: list = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # cut
            upstream = self._socket.create_connection(("127.0.0.1", self._target))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        # shutdown() first: a bare close() leaves the socket listening while accept() blocks on it
        self._listener.shutdown(self._socket.SHUT_RDWR)
        self._listener.close()
        for s in self._open:
            try:
                s.shutdown(self._socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


@pytest.fixture
def fail_fast(monkeypatch, tmp_path):
    """No retries against a dead MLflow (the project's defaults wait a few seconds), and a fresh IPA_HOME."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("IPA_HOME", str(tmp_path / "ipa"))
    return tmp_path / "ipa" / "pending-profiles"


def test_a_profile_mlflow_loses_mid_run_is_kept_and_filed_by_profiles_push(
    registered, fail_fast, monkeypatch, capsys
):
    from mlflow import MlflowClient

    import ipa_airflow.profiling.sweep as sweep

    proxy = Cuttable(int(registered.rsplit(":", 1)[1]))
    measured = sweep.summarise

    def summarise_then_cut(result):  # the measuring is done: now MLflow goes away
        proxy.cut()
        return measured(result)

    monkeypatch.setattr(sweep, "summarise", summarise_then_cut)
    argv = ["profile", "--model-uri", "models:/tiny-classifier/1", "--batch-sizes", "1", "--device", "cpu"]
    assert main([*argv, "--hardware", "cut-cpu", "--tracking-uri", proxy.url]) == 2
    err = capsys.readouterr().err
    [kept] = list(fail_fast.glob("*.json"))
    assert f"cannot reach MLflow at {proxy.url}" in err and f"The profile is kept in {kept}" in err
    assert "`ipa profiles push" in err

    assert main(["profiles", "push", "--tracking-uri", registered, "--json"]) == 0
    [filed] = json.loads(capsys.readouterr().out)["filed"]
    assert filed["profile_id"] == "tiny-classifier/cut-cpu/fp32/cpu=1" and not list(fail_fast.glob("*.json"))
    client = MlflowClient(registered)
    run = client.get_run(filed["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["ipa.model_ref"] == "models:/tiny-classifier/1"
    tags = client.get_model_version("tiny-classifier", "1").tags
    assert tags["ipa.profile.cut-cpu.cpu1.fp32.run_id"] == filed["run_id"]


def test_profiles_push_to_a_dead_mlflow_keeps_every_file(fail_fast, capsys):
    from ipa_airflow.profiles import BatchPoint, Profile
    from ipa_airflow.profiling.filing import keep

    points = (BatchPoint(1, 1.0, 1.1, 1.2, 1.05, 900.0),)
    env = {"torch": "2.14.1", "device": "cpu", "threads": 1}
    prov = {"model_ref": "zoo:resnet18", "environment": env}
    kept = [keep(Profile(f"m{i}", "h", "fp32", "cpu=1", points, provenance=prov)) for i in range(2)]
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["profiles", "push", "--tracking-uri", dead]) == 1
    err = capsys.readouterr().err
    assert f"{kept[0]} not filed: cannot reach MLflow at {dead}" in err and "not tried (1" in err
    assert sorted(fail_fast.glob("*.json")) == sorted(kept)
    # the next `ipa profile` says so before measuring anything
    assert main(["profile", "--zoo", "resnet18", "--device", "cpu", "--tracking-uri", dead]) == 2
    assert "2 profile(s) measured earlier wait in" in capsys.readouterr().err


def test_the_model_is_loaded_through_the_tracking_uri_given_and_nothing_lands_in_the_cwd(
    registered, fail_fast, tmp_path, monkeypatch, capsys
):
    """The GPU profiling pod passes only --tracking-uri: no MLFLOW_TRACKING_URI, no process-wide URI."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    argv = ["profile", "--model-uri", "models:/tiny-classifier/1", "--batch-sizes", "1", "--device", "cpu"]
    assert (
        main([*argv, "--hardware", "pod-cpu", "--tracking-uri", registered, "--out", "p.json", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["model_ref"] == "models:/tiny-classifier/1"
    assert sorted(p.name for p in cwd.iterdir()) == ["p.json"]  # no stray ./mlflow.db
