"""Operators and sensors that need no DAG run: the GPU profiling pod and the rollout sensor/trigger."""

from __future__ import annotations

import asyncio

import pytest

from ipa_airflow.cluster.reconcile import reconcile
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from tests.conftest import PIPELINES

pytestmark = pytest.mark.slow


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_gpu_profile_pod_asks_for_a_gpu_node(tmp_path):
    from ipa_airflow_provider.operators import gpu_profile_pod

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)  # the pod is only built, never sent
    op = gpu_profile_pod(
        task_id="profile_h100",
        model_uri="models:/detector/3",
        hardware="h100",
        config_file=str(kubeconfig),
        in_cluster=False,
    )
    pod = op.build_pod_request_obj()
    container = pod.spec.containers[0]
    assert container.command == ["ipa"]
    assert container.args[:3] == ["profile", "--model-uri", "models:/detector/3"]
    assert "--device" in container.args and container.args[container.args.index("--device") + 1] == "cuda"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}


def test_rollout_sensor_and_trigger_follow_the_cluster(tmp_path):
    from ipa_airflow_provider.sensors import IpaRolloutSensor
    from ipa_airflow_provider.triggers import IpaRolloutTrigger

    video = load_pipeline(PIPELINES / "video-gpu.yaml")
    state = tmp_path / "cluster.json"
    clock = [1000.0]
    backend = SimulatedBackend(clock=lambda: clock[0], startup_s=0.0, state_file=state)
    p = plan(video.spec, video.profiles, 100)
    assert reconcile(p, video.spec, backend, clock=lambda: clock[0], sleep=lambda s: None).ok
    names = ["video-gpu-detect", "video-gpu-classify"]
    sensor = IpaRolloutSensor(
        task_id="wait", namespace="default", names=names, simulated_state_file=str(state)
    )
    assert sensor.poke({}) is True
    trigger = IpaRolloutTrigger(
        namespace="default", names=names, simulated_state_file=str(state), poll_s=0.01
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "ipa_airflow_provider.triggers.IpaRolloutTrigger" and kwargs["names"] == names

    async def first_event():
        async for event in trigger.run():
            return event.payload

    assert asyncio.run(first_event())["status"] == "success"
    missing = IpaRolloutSensor(
        task_id="w2", namespace="default", names=["nope"], simulated_state_file=str(state)
    )
    assert missing.poke({}) is False


class _Ti:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_plan_and_reconcile_operators_hand_on_typed_values_as_dicts(tmp_path):
    """The plan task's XCom is a Decision's dict, the reconcile task's a ReconcileResult's; a second run
    on the same load keeps what runs and the reconcile task skips."""
    from airflow.sdk.exceptions import AirflowSkipException
    from ipa_airflow_provider.operators import OUTCOME_KEY, IpaPlanOperator, IpaReconcileOperator

    from ipa_airflow.cluster.reconcile import ReconcileResult
    from ipa_airflow.control import Decision
    from ipa_airflow.forecasting.base import Forecast
    from ipa_airflow.spec import PLAN_QUANTILES

    spec_path = str(PIPELINES / "video-gpu.yaml")
    forecast = Forecast("exp-smoothing", 20, 400.0, {f"{q:g}": 400.0 for q in PLAN_QUANTILES}).to_dict()
    cluster = {"cluster_backend": "simulated", "simulated_state_file": str(tmp_path / "cluster.json")}

    def run_once():
        planned = IpaPlanOperator(task_id="plan", spec_path=spec_path, forecast=forecast, **cluster).execute(
            {}
        )
        ti = _Ti()
        op = IpaReconcileOperator(task_id="reconcile", spec_path=spec_path, planned=planned, **cluster)
        try:
            result = op.execute({"ti": ti})
        except AirflowSkipException:
            result = None
        return planned, result, ti.pushed[OUTCOME_KEY]

    planned, result, outcome = run_once()
    decision = Decision.from_dict(planned)
    assert decision.changed and planned["changed"] and decision.previous_plan_id is None
    assert ReconcileResult.from_dict(result).ok and outcome == result
    again, skipped, outcome = run_once()
    assert not Decision.from_dict(again).changed and again["previous_plan_id"] == decision.plan.plan_id
    assert skipped is None and outcome["skipped"]


def test_one_backend_factory_for_the_cli_and_the_operators(tmp_path):
    """The CLI and ClusterHook name backends the same way and refuse any other; each keeps its own
    simulated start-up (the CLI 10 s, the operators 0 s unless the DAG passes its settings)."""
    from ipa_airflow_provider.hooks import ClusterHook

    from ipa_airflow.cli.planning import CLI_SIMULATED_STARTUP_S
    from ipa_airflow.cluster.factory import backend_for

    state = str(tmp_path / "cluster.json")
    hooked = ClusterHook("simulated", simulated_state_file=state).get_conn()
    assert isinstance(hooked, SimulatedBackend) and hooked.startup_s == 0.0
    cli = backend_for("simulated", state_file=state, startup_s=CLI_SIMULATED_STARTUP_S)
    assert isinstance(cli, SimulatedBackend) and cli.startup_s == 10.0
    for make in (
        lambda: backend_for("kind-of-cluster", startup_s=0.0),
        lambda: ClusterHook("kind-of-cluster").get_conn(),
    ):
        with pytest.raises(ValueError, match="simulated, kubernetes"):
            make()
