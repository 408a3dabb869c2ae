"""Profiling operators: in-process on this worker (`IpaProfileOperator`), or a pod from the profiler image
on the node pool of another hardware kind (`IpaProfilePodOperator`, GPU included). Both take plain values,
so the profiling DAG maps them over the targets the specs ask for (`.partial(...).expand_kwargs(...)`).

This module imports the Kubernetes provider (a second or so): `operators.py` loads it only when a DAG
asks for one of its operators, so the other DAGs parse without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseOperator

from .hooks import IpaMlflowHook

PROFILER_IMAGE = "ipa-airflow/profiler:0.1.0"
PROFILING_NAMESPACE = "ipa-profiling"
HARDWARE_LABEL = "ipa.io/hardware"  # the node label naming a node pool's hardware, as the specs do


def _label(model_uri: str | None, zoo: str | None, hardware: str, resources: str, dtype: str) -> str:
    from ipa_airflow.profiling.targets import model_label

    return f"{model_label(model_uri) if model_uri else zoo} on {hardware} {resources} {dtype}"


class IpaProfileOperator(BaseOperator):
    """Profile a registered model version (or a zoo model) in-process on this worker; file it in MLflow
    and tag the model version (the path `ipa profile` takes)."""

    template_fields: Sequence[str] = ("model_uri", "zoo", "hardware", "batch_sizes")

    def __init__(
        self,
        *,
        model_uri: str | None = None,
        zoo: str | None = None,
        hardware: str,
        batch_sizes: str = "1,2,4,8",
        device: str = "cpu",
        threads: int = 1,
        dtype: str = "fp32",
        ipa_mlflow_conn_id: str = IpaMlflowHook.default_conn_name,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model_uri, self.zoo, self.hardware, self.batch_sizes = model_uri, zoo, hardware, batch_sizes
        self.device, self.threads, self.dtype, self.ipa_mlflow_conn_id = (
            device,
            threads,
            dtype,
            ipa_mlflow_conn_id,
        )

    # Not `label`: Airflow's nodes have one (the task id within its group).
    @property
    def target_label(self) -> str:
        """What this task measures ('video-classifier v3 on epyc cpu=2 fp32'), for map_index_template."""
        resources = {"cuda": "gpu=1", "cpu": f"cpu={self.threads}"}.get(self.device, f"device={self.device}")
        return _label(self.model_uri, self.zoo, self.hardware, resources, self.dtype)

    def execute(self, context) -> dict[str, Any]:
        from ipa_airflow.profiling.job import prepare, profile_and_register
        from ipa_airflow.profiling.sweep import parse_batch_sizes

        if bool(self.model_uri) == bool(self.zoo):
            raise ValueError("give exactly one of model_uri or zoo")
        registry = IpaMlflowHook(self.ipa_mlflow_conn_id).get_conn()
        batch_sizes = parse_batch_sizes(str(self.batch_sizes))
        job = prepare(
            zoo=self.zoo,
            model_uri=self.model_uri,
            name=None,
            batch_sizes=batch_sizes,
            device=self.device,
            threads=int(self.threads),
            dtype=self.dtype,
            hardware=self.hardware,
            registry=registry,
            log=True,
            say=self.log.info,
        )
        done = [0]

        def progress(timing):
            done[0] += 1
            self.log.info(
                "batch %d: p50 %.2f ms, p99 %.2f ms (%d/%d)",
                timing.batch,
                timing.p50_ms,
                timing.p99_ms,
                done[0],
                len(batch_sizes),
            )

        summary = profile_and_register(job, registry, on_cell=progress)
        return {
            "run_id": summary["run_id"],
            "profile_id": summary["profile_id"],
            "staleness_key": summary["staleness_key"],
            "b1_p99_ms": summary["cells"][0]["p99_ms"],
        }


def profile_arguments(
    *,
    model_uri: str,
    hardware: str,
    device: str,
    threads: int,
    dtype: str,
    batch_sizes: str,
    tracking_uri: str,
) -> list[str]:
    """The `ipa profile` command line the profiler pod runs (its image's entry point is `ipa`)."""
    return [
        "profile",
        "--model-uri",
        model_uri,
        "--hardware",
        hardware,
        "--device",
        device,
        "--threads",
        str(threads),
        "--dtype",
        dtype,
        "--batch-sizes",
        batch_sizes,
        "--tracking-uri",
        tracking_uri,
        "--json",
    ]


def pod_tracking_uri(uri: str) -> str:
    """The tracking URI a pod files its profile to: a server. A local store (SQLite, a folder) lives on
    the worker's disk, which the pod cannot reach: its profile would be filed into the pod and lost."""
    if uri.startswith(("sqlite:", "file:")) or ("://" not in uri and not uri.startswith("databricks")):
        raise ValueError(
            f"a profiling pod cannot file into the worker's local MLflow store '{uri}': point the "
            "ipa_mlflow connection (or MLFLOW_TRACKING_URI) at an MLflow server, or give "
            "mlflow_tracking_uri"
        )
    return uri


class IpaProfilePodOperator(KubernetesPodOperator):
    """Profile a registered model version in a pod on the node pool of `hardware`: the profiler image
    (docker/profiler) runs `ipa profile`, which files the profile in MLflow under `hardware` and tags the
    model version. Exactly one of `cpu` (whole cores: the profiler's threads, requested and limited) or
    `gpu` (devices, as `nvidia.com/gpu`; the profiler measures one). The pod is pinned to the pool by the
    node label `node_selector_key` = `hardware` (or an explicit `node_selector`). Without
    `mlflow_tracking_uri`, the `ipa_mlflow_conn_id` connection's server, read when the task runs.

    Every argument is a plain value, so the operator maps: the profiling DAG builds it per target with
    `.partial(...).expand_kwargs(...)`, and Airflow calls this constructor with the expanded values."""

    def __init__(
        self,
        *,
        model_uri: str,
        hardware: str,
        dtype: str = "fp32",
        cpu: float | None = None,
        gpu: int | None = None,
        batch_sizes: str = "1,2,4,8",
        image: str = PROFILER_IMAGE,
        namespace: str = PROFILING_NAMESPACE,
        mlflow_tracking_uri: str | None = None,
        ipa_mlflow_conn_id: str = IpaMlflowHook.default_conn_name,
        node_selector_key: str = HARDWARE_LABEL,
        node_selector: dict[str, str] | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        **kwargs,
    ):
        from kubernetes.client import models as k8s

        if (cpu is None) == (gpu is None):
            raise ValueError(f"profiling {model_uri} on {hardware}: give exactly one of cpu (cores) or gpu")
        if gpu is not None:
            device, threads = "cuda", 1
            resources = k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": str(int(gpu))})
        else:
            assert cpu is not None  # one of the two, checked above
            if float(cpu) != int(float(cpu)) or float(cpu) < 1:
                raise ValueError(
                    f"profiling {model_uri} on {hardware}: the profiler runs whole CPU threads, not cpu={cpu}"
                )
            device, threads = "cpu", int(float(cpu))
            cores = str(threads)
            resources = k8s.V1ResourceRequirements(requests={"cpu": cores}, limits={"cpu": cores})
        profile_args = {
            "model_uri": model_uri,
            "hardware": hardware,
            "device": device,
            "threads": threads,
            "dtype": dtype,
            "batch_sizes": str(batch_sizes),
        }
        kwargs.setdefault("get_logs", True)
        super().__init__(
            name=f"ipa-profile-{hardware}",
            namespace=namespace,
            image=image,
            cmds=["ipa"],
            # The server is read from the connection when the task runs (`execute`) unless given here.
            arguments=profile_arguments(**profile_args, tracking_uri=mlflow_tracking_uri or ""),
            node_selector=node_selector or {node_selector_key: hardware},
            container_resources=resources,
            kubernetes_conn_id=kubernetes_conn_id,
            **kwargs,
        )
        self.model_uri, self.hardware, self.dtype = model_uri, hardware, dtype
        self.cpu, self.gpu, self.batch_sizes = cpu, gpu, batch_sizes
        self.mlflow_tracking_uri, self.ipa_mlflow_conn_id = mlflow_tracking_uri, ipa_mlflow_conn_id
        self.profile_args = profile_args

    @property
    def target_label(self) -> str:
        """What this task measures ('video-classifier v3 on h100 gpu=1 fp16'), for map_index_template."""
        resources = f"gpu={self.gpu}" if self.gpu is not None else f"cpu={self.cpu:g}"
        return _label(self.model_uri, None, self.hardware, resources, self.dtype)

    def execute(self, context):
        if not self.mlflow_tracking_uri:
            uri = pod_tracking_uri(IpaMlflowHook(self.ipa_mlflow_conn_id).tracking_uri)
            self.arguments = profile_arguments(**self.profile_args, tracking_uri=uri)
        return super().execute(context)


def gpu_profile_pod(
    *,
    task_id: str,
    model_uri: str,
    hardware: str,
    image: str = PROFILER_IMAGE,
    namespace: str = PROFILING_NAMESPACE,
    node_selector: dict[str, str] | None = None,
    batch_sizes: str = "1,2,4,8,16,32,64",
    dtype: str = "fp16",
    mlflow_tracking_uri: str = "http://mlflow.mlops.svc:5000",
    kubernetes_conn_id: str = "kubernetes_default",
    **kwargs,
) -> IpaProfilePodOperator:
    """One GPU profiling pod (the earlier spelling, kept for DAGs that use it): IpaProfilePodOperator on
    one GPU, on any node with a GPU unless `node_selector` says which."""
    return IpaProfilePodOperator(
        task_id=task_id,
        model_uri=model_uri,
        hardware=hardware,
        dtype=dtype,
        gpu=1,
        batch_sizes=batch_sizes,
        image=image,
        namespace=namespace,
        mlflow_tracking_uri=mlflow_tracking_uri,
        node_selector=node_selector or {"nvidia.com/gpu.present": "true"},
        kubernetes_conn_id=kubernetes_conn_id,
        **kwargs,
    )
