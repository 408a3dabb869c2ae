"""Operators and sensors that need no DAG run: the profiling pods and the rollout sensor/trigger."""

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


def _profile_pods(kwargs_list, **partial):
    """The pod operators a mapped `profile_pod` task builds at run time, one per expanded kwargs."""
    import pendulum
    from airflow.sdk import DAG
    from ipa_airflow_provider.operators import IpaProfilePodOperator

    with DAG("pods", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        mapped = IpaProfilePodOperator.partial(
            task_id="profile_pod",
            batch_sizes="1,2,4",
            map_index_template="{{ task.target_label }}",
            **partial,
        ).expand_kwargs(kwargs_list)
    return [mapped.unmap(kwargs) for kwargs in kwargs_list]


def _cli_args(container):
    """The pod's command line as `ipa` parses it (parsed only: nothing runs)."""
    from ipa_airflow.cli import build_parser
    from ipa_airflow.cli.profiling import cmd_profile
    from ipa_airflow.profiling.sweep import parse_batch_sizes

    assert container.command == ["ipa"]
    args = build_parser().parse_args(container.args)
    assert args.func is cmd_profile and args.json and not args.no_log
    assert parse_batch_sizes(args.batch_sizes) == (1, 2, 4)
    return args


def test_mapped_profile_pods_run_the_profiler_on_each_targets_node_pool():
    """The DAG maps the pod operator over the targets the specs ask for: each expanded pod goes to its
    hardware's node pool with the replica's resources, and runs an `ipa profile` the CLI accepts."""
    from ipa_airflow.profiling.targets import profiling_targets
    from ipa_airflow.spec import PipelineSpec

    spec = PipelineSpec.from_dict(
        {
            "name": "p",
            "sla_s": 0.5,
            "stages": [
                {
                    "name": "detect",
                    "registered_model": {
                        "name": "detector",
                        "select": {"newest": 1},
                        "accuracy": {"metric": "map"},
                        "shapes": [
                            {"hardware": "h100", "dtype": "fp16", "resources": {"gpu": 1}},
                            {"hardware": "epyc", "resources": {"cpu": 2}},
                            {"hardware": "airflow-cpu", "resources": {"cpu": 1}},
                        ],
                    },
                }
            ],
        }
    )
    targets = profiling_targets("detector", "7", [spec], worker_hardware="airflow-cpu", fallback_threads=[1])
    pods = [t.operator_kwargs() for t in targets if t.where == "pod"]
    gpu_op, cpu_op = _profile_pods(pods, mlflow_tracking_uri="http://mlflow.mlops.svc:5000")

    gpu_pod = gpu_op.build_pod_request_obj(dry_run=True)
    assert gpu_pod.spec.node_selector == {"ipa.io/hardware": "h100"}
    assert gpu_pod.metadata.namespace == "ipa-profiling" and gpu_pod.metadata.name.startswith(
        "ipa-profile-h100"
    )
    [container] = gpu_pod.spec.containers
    assert container.image == "ipa-airflow/profiler:0.1.0"
    assert container.resources.limits == {"nvidia.com/gpu": "1"} and not container.resources.requests
    args = _cli_args(container)
    assert (args.model_uri, args.hardware, args.device, args.dtype) == (
        "models:/detector/7",
        "h100",
        "cuda",
        "fp16",
    )
    assert args.tracking_uri == "http://mlflow.mlops.svc:5000"
    assert gpu_op.target_label == "detector v7 on h100 gpu=1 fp16"

    cpu_pod = cpu_op.build_pod_request_obj(dry_run=True)
    assert cpu_pod.spec.node_selector == {"ipa.io/hardware": "epyc"}
    [container] = cpu_pod.spec.containers
    assert container.resources.requests == {"cpu": "2"} and container.resources.limits == {"cpu": "2"}
    args = _cli_args(container)
    assert (args.hardware, args.device, args.threads, args.dtype) == ("epyc", "cpu", 2, "fp32")
    assert cpu_op.target_label == "detector v7 on epyc cpu=2 fp32"

    # The worker's own hardware is measured in-process, with the same arguments the DAG maps over.
    from ipa_airflow_provider.operators import IpaProfileOperator

    [worker] = [t.operator_kwargs() for t in targets if t.where == "worker"]
    op = IpaProfileOperator(task_id="profile", **worker)
    assert (op.hardware, op.device, op.threads) == ("airflow-cpu", "cpu", 1)
    assert op.target_label == "detector v7 on airflow-cpu cpu=1 fp32"


def test_a_profile_pod_refuses_what_it_cannot_measure_or_file():
    from ipa_airflow_provider.profile import IpaProfilePodOperator, pod_tracking_uri

    base = {"task_id": "p", "model_uri": "models:/m/1", "hardware": "epyc"}
    with pytest.raises(ValueError, match="whole CPU threads, not cpu=0.5"):
        IpaProfilePodOperator(**base, cpu=0.5)
    with pytest.raises(ValueError, match="exactly one of cpu"):
        IpaProfilePodOperator(**base, cpu=1, gpu=1)
    with pytest.raises(ValueError, match="local MLflow store 'sqlite:///tmp/mlflow.db'"):
        pod_tracking_uri("sqlite:///tmp/mlflow.db")
    assert pod_tracking_uri("https://mlflow.example") == "https://mlflow.example"


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
