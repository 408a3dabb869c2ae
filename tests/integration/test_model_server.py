"""The real model server: MLServer with its MLflow runtime from .venv-serve (`make serving-env`), started
with the environment the reconciler renders for a stage, serving a model registered in a real MLflow,
batching as the plan says, and exporting what the default Prometheus queries read, through a real
Prometheus."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import re
import shutil
import time

import numpy as np
import pytest

from ipa_airflow.cluster.desired import desired_state
from ipa_airflow.forecasting.promql import render_query
from ipa_airflow.forecasting.sources import PrometheusSource
from ipa_airflow.forecasting.stage_latency import DEFAULT_QUERY, instant_query
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.serving import v2
from ipa_airflow.serving.environment import ServingEnvError, mlserver_executable
from ipa_airflow.serving.server import ModelServer, container_env
from ipa_airflow.spec import PipelineSpec
from tests.conftest import PIPELINES

from .conftest import running_prometheus

MODEL = "ipa-tiny-classifier"


@pytest.fixture(scope="module")
def mlserver():
    try:
        return mlserver_executable()
    except ServingEnvError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def registered(mlflow_server):
    import mlflow
    import torch

    mlflow.set_tracking_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            model, name="model", input_example=np.zeros((2, 16), np.float32), registered_model_name=MODEL
        )
    return f"models:/{MODEL}/{info.registered_model_version}"


def _rendered(model_uri: str) -> tuple[PipelineSpec, dict]:
    """The first stage's Deployment of video-cpu with every variant running `model_uri`, at batch 4
    and a batch wait long enough that requests sent together are batched on a loaded machine."""
    cpu = load_pipeline(PIPELINES / "video-cpu.yaml")
    d = cpu.spec.to_dict()
    for stage in d["stages"]:
        for variant in stage["variants"]:
            variant["model_uri"] = model_uri
    spec = PipelineSpec.from_dict(d)
    p = plan(spec, cpu.profiles, 10)
    first = dataclasses.replace(p.stages[0], batch=4, queue_s=0.5)
    p = dataclasses.replace(p, stages=(first, *p.stages[1:]))
    return spec, desired_state(p, spec)[0]


def _counter(metrics: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics, flags=re.M))


def test_the_rendered_stage_serves_batches_and_exports_what_the_queries_read(
    mlserver, mlflow_server, registered, tmp_path
):
    spec, deployment = _rendered(registered)
    env = container_env(deployment)
    stage = spec.stages[0].name
    assert env["MLSERVER_MODEL_NAME"] == stage and env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == "4"
    with ModelServer(env, tracking_uri=mlflow_server, cores=[0], mlserver=mlserver) as server:
        server.wait_ready(timeout_s=180)
        inp = v2.model_input(server.url, stage)
        assert inp.shape == (16,) and inp.datatype == "FP32"
        body = v2.request_body(inp, inp.sample(1))
        answer = v2.infer(server.url, stage, body)
        assert np.asarray(answer["outputs"][0]["data"]).size == 4  # one row of the model's 4 outputs

        # Eight requests at once, at most four to a batch: MLServer's adaptive batching forms two to
        # four batches (it counts each batch it hands its inference worker once).
        before = _counter(server.metrics_text(), "parallel_request_queue_count")
        with cf.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: v2.infer(server.url, stage, body), range(8)))
        metrics = server.metrics_text()
        batches = _counter(metrics, "parallel_request_queue_count") - before
        assert all(len(a["outputs"][0]["data"]) == 4 for a in answers)
        assert 2 <= batches < 8, batches

        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus is not installed (make test installs Debian's package when run as root)")
        labels = f"{{pipeline: '{spec.name}', stage: '{stage}'}}"
        config = (
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: mlserver\n    static_configs: [{{targets: ['{server.metrics_target}'], "
            f"labels: {labels}}}]\n"
        )
        (tmp_path / "prometheus").mkdir()
        with running_prometheus(binary, tmp_path / "prometheus", config) as url:
            load = PrometheusSource(url).for_pipeline(spec)
            latency = render_query(
                DEFAULT_QUERY, pipeline=spec.name, namespace=spec.namespace, stage=stage, window_s=30
            )
            rate, p99 = 0.0, None
            deadline = time.monotonic() + 90
            while (rate <= 0 or p99 is None) and time.monotonic() < deadline:
                v2.infer(server.url, stage, body)  # traffic until Prometheus has two scrapes of it
                rate = instant_query(url, load.query) or 0.0
                p99 = instant_query(url, latency)
            assert rate > 0, f"`{load.query}` read no requests from the real server's counter"
            assert p99 is not None and 0 < p99 < 5, f"`{latency}` answered {p99}"
            rates = load.rates(end=time.time(), window_s=10)
            assert rates.max() > 0
