"""`ipa live` end to end, kept short: a one-stage pipeline of a registered model (profiled here and filed
in a real MLflow) replayed for half a minute as real requests through real MLServer replicas, while the
loop operator's run_loop forecasts from a real Prometheus scraping them, plans and reconciles. The long
sim-versus-real comparison is a command (`ipa live run`), not a test. Skipped without MLServer
(`make serving-env`) or Prometheus (`make services`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ipa_airflow.serving.environment import ServingEnvError, mlserver_executable

MODEL = "live-test-linear"

try:  # at collection: a fixture's skip would come after the session's MLflow server had started
    mlserver_executable()
except ServingEnvError as exc:
    pytest.skip(f"no MLServer to run replicas with: {exc}", allow_module_level=True)
PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None:
    pytest.skip("prometheus is not installed (make services installs it)", allow_module_level=True)

SPEC = f"""
name: live-test
sla_s: 1.0
limits: {{batch_sizes: [1, 2], max_replicas: 2}}
adaptation: {{interval_s: 5}}
stages:
  - name: only
    registered_model:
      name: {MODEL}
      select: {{newest: 1}}
      accuracy: {{tag: accuracy}}
      startup_s: 10
      shapes: [{{hardware: local-cpu, resources: {{cpu: 1}}}}]
"""


@pytest.fixture(scope="module")
def pipeline(mlflow_server, tmp_path_factory):
    import mlflow
    import torch

    from ipa_airflow.pipelines import load_pipeline
    from ipa_airflow.profiling.job import prepare, profile_and_register
    from ipa_airflow.profiling.timing import TimingSettings
    from ipa_airflow.registry import registry_for

    mlflow.set_tracking_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            model, name="model", input_example=np.zeros((2, 16), np.float32), registered_model_name=MODEL
        )
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_model_version_tag(MODEL, version, "accuracy", "0.7")
    registry = registry_for(mlflow_server)
    job = prepare(
        zoo=None,
        model_uri=f"models:/{MODEL}/{version}",
        name=None,
        batch_sizes=(1, 2),
        device="cpu",
        threads=1,
        dtype="fp32",
        hardware="local-cpu",
        registry=registry,
        log=True,
    )
    profile_and_register(job, registry, settings=TimingSettings(min_iters=10, min_seconds=0.2, max_seconds=2))
    path = tmp_path_factory.mktemp("live") / "live-test.yaml"
    path.write_text(SPEC)
    return load_pipeline(path, registry=registry)


def test_a_window_replayed_on_real_servers_is_measured_as_the_simulator_measures(pipeline, mlflow_server):
    from ipa_airflow.forecasting.catalog import forecaster
    from ipa_airflow.live.compare import side_by_side
    from ipa_airflow.live.run import LiveWindow, run_policy
    from ipa_airflow.simulation.controllers import make_policy
    from ipa_airflow.simulation.simulator import Simulator

    history = np.full(3600, 4.0)
    fitted = forecaster("max").fit(history, seed=0, start_s=0)
    window = LiveWindow(np.full(30, 6.0), history, 3600)
    live = run_policy(
        pipeline, window, "ipa", fitted=fitted, tracking_uri=mlflow_server, prometheus_binary=PROMETHEUS
    )
    r = live.result
    assert r.sent == 180 and r.completed + r.dropped == r.sent
    assert r.completed >= 170, live.summary()  # the replicas were ready before the replay started
    assert (r.per_second["cost"] >= 1).all() and len(r.per_second["cost"]) == 30
    assert list(live.stage_latency_ms) == ["only"] and 0 < live.stage_latency_ms["only"]["p50"] < 1000
    assert live.startup_s and all(0 < s < 300 for s in live.startup_s)
    # The loop decided on the Prometheus reads: each tick after the first read had a load.
    assert live.loop["decisions"] >= 3 and not live.loop["skipped"], live.loop
    pol = make_policy("ipa", pipeline.spec, pipeline.profiles, fitted, start_s=3600)
    sim = Simulator(
        pipeline.spec, pipeline.profiles, window.counts, pol, history=history, source=pipeline.source
    ).run()
    row = side_by_side(sim, r)
    assert row["rows"]["sent"] == {"simulated": 180, "measured": 180}
