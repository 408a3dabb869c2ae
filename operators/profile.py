"""Profiling operators: in-process on this worker (`IpaProfileOperator`), or a pod on a GPU node
(`gpu_profile_pod`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from .hooks import IpaMlflowHook


class IpaProfileOperator(BaseOperator):
    """Profile a registered model version (or a zoo model) in-process on this worker; log it to MLflow."""

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

    def execute(self, context) -> dict[str, Any]:
        from ipa_airflow.profiling.filing import keep_and_file
        from ipa_airflow.profiling.sweep import (
            SweepRequest,
            parse_batch_sizes,
            profile_registered,
            profile_zoo,
        )

        if bool(self.model_uri) == bool(self.zoo):
            raise ValueError("give exactly one of model_uri or zoo")
        registry = IpaMlflowHook(self.ipa_mlflow_conn_id).get_conn()
        request = SweepRequest(
            self.hardware, parse_batch_sizes(str(self.batch_sizes)), self.device, self.threads, self.dtype
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
                len(request.batch_sizes),
            )

        if self.model_uri:
            ref, name, _ = registry.resolve_model_ref(self.model_uri)
            result = profile_registered(
                ref, name, request, tracking_uri=registry.tracking_uri, on_cell=progress
            )
        else:
            result = profile_zoo(self.zoo, request, on_cell=progress)
        # The CLI's path: kept on disk (IPA_HOME's spool) before MLflow, so a failure to file it says
        # where it is and `ipa profiles push` files it later, instead of losing the measurement.
        run_id = keep_and_file(registry, result.profile).run_id
        return {
            "run_id": run_id,
            "profile_id": result.profile.id,
            "staleness_key": result.key.digest,
            "b1_p99_ms": result.profile.points[0].p99_ms,
        }


def gpu_profile_pod(
    *,
    task_id: str,
    model_uri: str,
    hardware: str,
    image: str = "ipa-airflow/profiler:0.1.0",
    namespace: str = "ipa-profiling",
    node_selector: dict[str, str] | None = None,
    batch_sizes: str = "1,2,4,8,16,32,64",
    dtype: str = "fp16",
    mlflow_tracking_uri: str = "http://mlflow.mlops.svc:5000",
    kubernetes_conn_id: str = "kubernetes_default",
    **kwargs,
):
    """Profile on a GPU node: a pod from the profiler image (docker/profiler) running `ipa profile`."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    return KubernetesPodOperator(
        task_id=task_id,
        name=f"ipa-profile-{hardware}",
        namespace=namespace,
        image=image,
        cmds=["ipa"],
        arguments=[
            "profile",
            "--model-uri",
            model_uri,
            "--device",
            "cuda",
            "--hardware",
            hardware,
            "--batch-sizes",
            batch_sizes,
            "--dtype",
            dtype,
            "--tracking-uri",
            mlflow_tracking_uri,
            "--json",
        ],
        node_selector=node_selector or {"nvidia.com/gpu.present": "true"},
        container_resources=k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
        kubernetes_conn_id=kubernetes_conn_id,
        get_logs=True,
        **kwargs,
    )
