"""The local cluster with real MLServer processes, driven by the production reconciler: one stage scaled
from one replica to two (both serve), then its batch size changed while the router sends requests: the
new servers start beside the old ones, which are retired only once the new ones answer, and no request
fails. Skipped when MLServer is not installed (`make serving-env`)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from ipa_airflow.cluster.local_backend import LocalCluster
from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.plans import Plan, StagePlan
from ipa_airflow.serving import v2
from ipa_airflow.serving.environment import ServingEnvError, mlserver_executable
from ipa_airflow.serving.router import Router
from ipa_airflow.spec import PipelineSpec

MODEL = "local-cluster-linear"


try:  # at collection: a fixture's skip would come after the session's MLflow server had started
    MLSERVER = mlserver_executable()
except ServingEnvError as exc:
    pytest.skip(f"no MLServer to run replicas with: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def registered(mlflow_server):
    import mlflow
    import torch

    mlflow.set_tracking_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=np.zeros((2, 16), np.float32),  # two rows: the batch axis stays dynamic
            registered_model_name=MODEL,
        )
    return mlflow_server


def _spec() -> PipelineSpec:
    variant = {
        "name": "linear",
        "accuracy": 50,
        "model_uri": f"models:/{MODEL}/1",
        "shapes": [{"hardware": "cpu", "resources": {"cpu": 1}}],
    }
    return PipelineSpec.from_dict(
        {
            "name": "local",
            "sla_s": 2.0,
            "limits": {"batch_sizes": [1, 4], "max_replicas": 4},
            "deployment": {"rollout_deadline_s": 180},
            "stages": [{"name": "classify", "variants": [variant]}],
        }
    )


def _plan(spec: PipelineSpec, replicas: int, batch: int) -> Plan:
    stage = StagePlan(
        "classify", "linear", "cpu", "cpu=1", "fp32", batch, replicas, 0.01, 0.01, 50, 50, 0.5, 1
    )
    return Plan(
        spec.name, "test", 1.0, spec.sla_s, True, (stage,), 0.5, replicas, 0, 0.01, {}, (), "", "", 0.0
    )


def test_replicas_scale_and_a_batch_change_is_make_before_break(registered, tmp_path):
    spec = _spec()
    with LocalCluster(tracking_uri=registered, mlserver=MLSERVER, drain_s=20) as cluster:
        sd = cluster.prometheus_targets(tmp_path / "targets.json")

        def go(p: Plan):
            result = reconcile(p, spec, cluster, poll_s=0.25)
            assert result.ok, f"{result.cause}; logs: {[s.log_tail() for s in cluster.servers().values()]}"

        go(_plan(spec, 1, 1))
        go(_plan(spec, 2, 1))
        before = cluster.endpoints("classify")
        assert len(before) == 2
        inp = v2.model_input(before[0], "classify")
        body = v2.request_body(inp, inp.sample(1))
        for url in before:  # both replicas serve
            assert len(v2.infer(url, "classify", body)["outputs"][0]["data"]) == 4

        results, outcome = [], []
        rollout = threading.Thread(
            target=lambda: outcome.append(reconcile(_plan(spec, 2, 4), spec, cluster, poll_s=0.25))
        )

        async def trickle():
            async with Router(cluster, spec) as router:
                rollout.start()
                while rollout.is_alive():
                    results.append(await router.send(len(results)))
                    await asyncio.sleep(0.05)  # a trickle, not a flood: the new servers need the cores

        asyncio.run(trickle())
        rollout.join()
        assert outcome and outcome[0].ok, outcome and outcome[0].cause
        cluster.wait_stopped()
        after = cluster.endpoints("classify")

        assert len(after) == 2 and not set(after) & set(before)
        assert len(results) > 10 and [r.error for r in results if not r.ok] == []
        kinds = [e.kind for e in cluster.events]
        assert kinds.count("ready") == 4 and kinds.count("stop") == 2
        assert max(i for i, k in enumerate(kinds) if k == "ready") < kinds.index("retire")
        for url in after:
            assert len(v2.infer(url, "classify", body)["outputs"][0]["data"]) == 4
        assert sd.read_text().count('"stage": "classify"') == 2  # the stopped servers left the targets
        servers = list(cluster.servers().values())
        assert {s.env["MLSERVER_MODEL_MAX_BATCH_SIZE"] for s in servers} == {"4"}  # type: ignore[attr-defined]
    assert all(s.exited() is not None for s in servers)  # close() stopped them
