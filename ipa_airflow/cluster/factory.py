"""The one place a cluster backend is made from its name, for the CLI (`--backend`) and the Airflow
layer (ClusterHook) alike, so both accept the same names and fail the same way on any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backends import ClusterBackend

BACKEND_KINDS = ("simulated", "kubernetes")


def backend_for(
    kind: str,
    *,
    startup_s: float,
    kubeconfig: str | None = None,
    api_client: Any = None,
    state_file: str | Path | None = None,
) -> ClusterBackend:
    """The cluster the plans go to.

    'kubernetes': through `api_client` when the caller has one (Airflow's connection), else the
    credentials of `kubeconfig` (or the default kubeconfig, or the in-cluster account).
    'simulated': its state in `state_file` (default under IPA_HOME); a changed Deployment is ready
    `startup_s` later. There is no default on purpose: each caller says its own (the CLI 10 s, the
    operators the value their DAG passes), so a shared default cannot shift one of them unseen.
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f"cluster backend must be one of {', '.join(BACKEND_KINDS)}, not {kind!r}")
    if kind == "kubernetes":
        from .kubernetes_backend import KubernetesBackend

        if api_client is not None:
            return KubernetesBackend(api_client)
        return KubernetesBackend.from_config(kubeconfig=kubeconfig)
    from .simulated import simulated_cluster

    return simulated_cluster(state_file, startup_s=startup_s)
