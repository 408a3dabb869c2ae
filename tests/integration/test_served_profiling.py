"""`ipa profile --served`'s path against the real model server: a registered version served by MLServer
(MLflow runtime) from a real MLflow server, measured at batch sizes 1 and 2 with a few rounds each, its
batches formed by MLServer's adaptive batching as the server's own /metrics count them, and filed in MLflow
beside the in-process profile of the same version, not in its place. Short: two server start-ups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ipa_airflow.profiles import Profile
from ipa_airflow.profiling import job
from ipa_airflow.profiling.served import served_vs_inprocess
from ipa_airflow.profiling.timing import TimingSettings
from ipa_airflow.registry import MlflowProfileRegistry
from ipa_airflow.serving.environment import ServingEnvError, mlserver_executable

pytestmark = pytest.mark.slow

MODEL = "served-tiny"
QUICK = TimingSettings(min_warmup=2, max_warmup=4, min_iters=4, max_iters=6, min_seconds=0.0)


@pytest.fixture(scope="session")  # session: asked before the session's MLflow server is started
def mlserver():
    try:
        return mlserver_executable()
    except ServingEnvError as exc:
        pytest.skip(f"no model server to measure through: {exc}")


@pytest.fixture(scope="module")
def registered(mlserver, mlflow_server):
    import mlflow
    import torch

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()
    example = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)  # two rows: any batch
    with mlflow.start_run():
        mlflow.pytorch.log_model(model, name="model", input_example=example, registered_model_name=MODEL)
    return MlflowProfileRegistry(mlflow_server)


def measure(registry, tmp: Path, method: str, *, say=lambda m: None, **kw) -> dict:
    prepared = job.prepare(
        zoo=None,
        model_uri=f"models:/{MODEL}/1",
        name=None,
        batch_sizes=(1, 2),
        device="auto",
        threads=1,
        dtype="fp32",
        hardware="ci-cpu",
        registry=registry,
        log=True,
        method=method,
        **kw,
    )
    out = tmp / f"{method}.json"
    return job.profile_and_register(prepared, registry, out=out, settings=QUICK, say=say)


@pytest.fixture(scope="module")
def profiled(registered, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    inprocess = measure(registered, tmp, "in-process")
    said: list[str] = []
    # A generous batch time: the two requests of a round arrive well within it even on a loaded machine,
    # and a full batch is sent at once, so it costs nothing.
    served = measure(registered, tmp, "served", say=said.append, batch_time_s=0.5)
    return inprocess, served, said


def test_each_batch_size_is_served_in_batches_of_that_size(profiled):
    _, served, said = profiled
    assert served["method"] == "served" and served["runtime"].startswith("mlserver==")
    cells = {c["batch"]: c for c in served["cells"]}
    assert sorted(cells) == [1, 2]
    for b, c in cells.items():
        # the server counted exactly the timed requests: its counters are the profiled model's
        assert c["server_requests"] == c["requests"] == c["iters"] == 4 * b  # QUICK: 4 rounds of b
        assert c["p50_ms"] <= c["p99_ms"] and c["server_mean_ms"] > 0 and c["ready_s"] > 0
    assert cells[1]["mean_batch_served"] == 1.0
    assert cells[2]["mean_batch_served"] == 2.0, said  # MLServer's adaptive batching formed batches of 2
    assert served["warnings"] == []
    assert any(line.startswith("batch 2: starting MLServer") for line in said)
    assert any(line.startswith("batch 2: p50 ") for line in said)


def test_filed_beside_the_in_process_profile(registered, profiled):
    inprocess, served, _ = profiled
    client = registered.client
    served_run, inproc_run = client.get_run(served["run_id"]), client.get_run(inprocess["run_id"])
    assert served_run.data.tags["ipa.profile.method"] == "served"
    assert served_run.data.params["method"] == "served" and inproc_run.data.params["method"] == "in-process"
    assert served_run.data.tags["ipa.runtime"] == served["runtime"] != inproc_run.data.tags["ipa.runtime"]
    tags = client.get_model_version(MODEL, "1").tags
    # the version's in-process summary still points at the in-process run; the served one has its own
    assert tags["ipa.profile.ci-cpu.cpu1.fp32.run_id"] == inprocess["run_id"]
    assert tags["ipa.profile_served.ci-cpu.cpu1.fp32.run_id"] == served["run_id"]
    path = client.download_artifacts(served["run_id"], "profile.json", served["out"].rsplit("/", 1)[0])
    profile = Profile.from_dict(json.loads(Path(path).read_text()))
    assert profile.provenance["method"] == "served"
    assert profile.provenance["server"]["batch_time_s"] == 0.5
    assert profile.provenance["server"]["mlserver"] == profile.provenance["environment"]["mlserver"]


def test_served_and_in_process_compare_per_batch(profiled):
    from ipa_airflow.profiles import ProfileSet

    inprocess, served, _ = profiled
    [s] = ProfileSet.load([served["out"]])
    [i] = ProfileSet.load([inprocess["out"]])
    rows = served_vs_inprocess(s, i)
    assert [r["batch"] for r in rows] == [1, 2]
    # HTTP, JSON and the batcher cost more than a bare call of a tiny model
    assert all(r["p50_ratio"] > 1 for r in rows), rows


def test_the_planner_reads_the_in_process_profile_though_the_served_one_is_newer(registered, profiled):
    from ipa_airflow.spec_variants import Shape

    shape = Shape(hardware="ci-cpu", resources={"cpu": 1})
    found = registered.find_profile(f"models:/{MODEL}/1", shape)
    assert found is not None and found.provenance["method"] != "served"
    assert found.id == f"{MODEL}/ci-cpu/fp32/cpu=1"
    served, _ = registered.latest(found_key(shape), check_runtime=False, method="served")
    assert served.provenance["method"] == "served" and served.id == f"{found.id}/served"
    # a registry reading served profiles (a pipeline of real replicas) finds the served one
    reading_served = MlflowProfileRegistry(registered.tracking_uri, method="served")
    assert reading_served.find_profile(f"models:/{MODEL}/1", shape) == served


def found_key(shape):
    from ipa_airflow.registry import ProfileKey

    return ProfileKey(f"models:/{MODEL}/1", shape.hardware, shape.dtype, shape.resources.key, "")
