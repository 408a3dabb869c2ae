"""Operators: templated arguments in, one engine call, plain JSON out (through XCom).

The adaptation step is four operators along the data-flow arrows (forecast, plan, reconcile, record), or
one operator that runs them on a short cadence for a while (`IpaAdaptationLoopOperator`); profiling is
one operator in-process, or a pod on a GPU node (`gpu_profile_pod`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from ipa_airflow.settings import DECISIONS_EXPERIMENT, KUBERNETES_CONN_ID

from .hooks import IpaMlflowHook, IpaPrometheusHook


def cluster_backend(
    kind: str,
    *,
    kubernetes_conn_id: str | None = None,
    state_file: str | None = None,
    startup_s: float = 0.0,
):
    """The cluster the plans go to: 'kubernetes' (through the cncf provider's connection) or 'simulated'
    (its state in `state_file`, default under IPA_HOME; a changed Deployment is ready `startup_s` later:
    the DAG passes settings.cluster.simulated_startup_s)."""
    if kind == "kubernetes":
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from ipa_airflow.cluster.kubernetes_backend import KubernetesBackend

        return KubernetesBackend(KubernetesHook(conn_id=kubernetes_conn_id or KUBERNETES_CONN_ID).get_conn())
    if kind != "simulated":
        raise ValueError(f"cluster_backend must be 'kubernetes' or 'simulated', not {kind!r}")
    from ipa_airflow.cluster.simulated import simulated_cluster

    return simulated_cluster(state_file, startup_s=startup_s)


class _ClusterMixin:
    def backend(self):
        return cluster_backend(
            self.cluster_backend,
            kubernetes_conn_id=self.kubernetes_conn_id,
            state_file=self.simulated_state_file,
            startup_s=self.simulated_startup_s,
        )


class IpaForecastOperator(BaseOperator):
    """Forecast the next interval's peak load: from Prometheus, or from a replayed trace (the demo).

    With `model_uri` (e.g. `models:/ipa-load-forecaster/latest`, what `ipa_train_forecaster` registers)
    the registered forecaster is loaded from MLflow; without it, or when it cannot be loaded, `model` is
    fitted on the last hours of load and the forecast's note says why."""

    template_fields: Sequence[str] = ("trace", "trace_second", "query", "model_uri")

    def __init__(
        self,
        *,
        source: str = "trace",
        trace: str | None = None,
        damping: float = 8.0,
        trace_second: Any = None,
        query: str = "sum(rate(ipa_requests_total[2s]))",
        model: str = "exp-smoothing",
        model_uri: str | None = None,
        spec_path: str | None = None,
        ipa_prometheus_conn_id: str = IpaPrometheusHook.default_conn_name,
        ipa_mlflow_conn_id: str = IpaMlflowHook.default_conn_name,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source, self.trace, self.damping, self.trace_second = source, trace, damping, trace_second
        self.query, self.model, self.ipa_prometheus_conn_id = query, model, ipa_prometheus_conn_id
        self.model_uri, self.ipa_mlflow_conn_id = model_uri or None, ipa_mlflow_conn_id
        # With a spec, the forecast also carries the earlier forecasts its stabilisation looks back on.
        self.spec_path = spec_path

    def _trace_second(self, context) -> int:
        """The second of the trace this run stands for (checked after templating)."""
        if not self.trace:
            raise ValueError("source='trace' needs trace= (a per-second count file)")
        if self.trace_second not in (None, "", "None"):
            return int(self.trace_second)
        return int(context["logical_date"].timestamp())

    def _prometheus(self):
        if self.source != "prometheus":
            raise ValueError(f"source must be 'trace' or 'prometheus', not {self.source!r}")
        return IpaPrometheusHook(self.ipa_prometheus_conn_id).get_conn(self.query)

    def execute(self, context) -> dict[str, Any]:
        import datetime as dt

        from ipa_airflow.adaptation import adaptation_of, forecast_from_trace, forecaster_for
        from ipa_airflow.forecasting.step import forecast_for

        now = dt.datetime.now(dt.UTC)
        tracking_uri = IpaMlflowHook(self.ipa_mlflow_conn_id).tracking_uri if self.model_uri else None
        if self.source == "trace":
            return forecast_from_trace(
                self.trace,
                damping=self.damping,
                second=self._trace_second(context),
                model=self.model,
                now=now,
                spec_path=self.spec_path,
                model_uri=self.model_uri,
                tracking_uri=tracking_uri,
            )
        source = self._prometheus()
        fitted, why = forecaster_for(
            self.model,
            lambda: source.rates(end=now.timestamp(), window_s=3600),
            model_uri=self.model_uri,
            tracking_uri=tracking_uri,
        )
        return forecast_for(
            lambda window_s: source.rates(end=now.timestamp(), window_s=window_s),
            fitted,
            now=now,
            adaptation=adaptation_of(self.spec_path),
            note=why,
        ).to_dict()


class IpaPlanOperator(_ClusterMixin, BaseOperator):
    """Solve the program for the forecast, then keep what the cluster runs or switch (see
    `ipa_airflow.switching`); say which and why."""

    template_fields: Sequence[str] = ("spec_path", "forecast", "policy")

    def __init__(
        self,
        *,
        spec_path: str,
        forecast: Any,
        quantile: float | None = None,  # None: the spec's adaptation.quantile
        policy: str = "ipa",
        cluster_backend: str = "simulated",
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,
        ipa_mlflow_conn_id: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec_path, self.forecast, self.quantile, self.policy = spec_path, forecast, quantile, policy
        self.cluster_backend, self.kubernetes_conn_id = cluster_backend, kubernetes_conn_id
        self.simulated_state_file, self.ipa_mlflow_conn_id = simulated_state_file, ipa_mlflow_conn_id
        self.simulated_startup_s = simulated_startup_s

    def execute(self, context) -> dict[str, Any]:
        from ipa_airflow.adaptation import plan_task

        registry = IpaMlflowHook(self.ipa_mlflow_conn_id).get_conn() if self.ipa_mlflow_conn_id else None
        decision = plan_task(
            self.spec_path,
            self.forecast,
            self.backend(),
            quantile=self.quantile,
            policy=self.policy,
            registry=registry,
        )
        plan = decision["plan"]
        self.log.info(
            "plan %s (running: %s, proposed: %s): %s; %s",
            plan["plan_id"],
            decision["previous_plan_id"],
            decision["proposal_id"],
            plan.get("message") or "feasible",
            decision["reason"],
        )
        return decision


class IpaReconcileOperator(_ClusterMixin, BaseOperator):
    """Apply the plan to the cluster; skipped when it is what the cluster already runs."""

    template_fields: Sequence[str] = ("spec_path", "planned")

    def __init__(
        self,
        *,
        spec_path: str,
        planned: Any,
        dry_run: bool = False,
        cluster_backend: str = "simulated",
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec_path, self.planned, self.dry_run = spec_path, planned, dry_run
        self.cluster_backend, self.kubernetes_conn_id = cluster_backend, kubernetes_conn_id
        self.simulated_state_file, self.simulated_startup_s = simulated_state_file, simulated_startup_s

    def execute(self, context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowSkipException

        from ipa_airflow.adaptation import reconcile_task
        from ipa_airflow.cluster.reconcile import ReconcileResult

        result = reconcile_task(self.spec_path, self.planned, self.backend(), dry_run=self.dry_run)
        if result is None:
            # The record task reads OUTCOME_KEY, which exists for skipped runs too (a skipped task has no
            # return value, and pulling a missing one logs an error).
            reason = f"plan {self.planned['plan']['plan_id']} is already running"
            context["ti"].xcom_push(key=OUTCOME_KEY, value={"skipped": True, "reason": reason})
            raise AirflowSkipException(reason)
        context["ti"].xcom_push(key=OUTCOME_KEY, value=result)
        for o in result["stages"]:
            self.log.info("%s: %s %s %s", o["stage"], o["action"], o["status"], o["message"])
        if not result["ok"]:
            raise AirflowException(
                f"reconcile did not complete: {ReconcileResult.from_dict(result).summary()}"
            )
        return result


class IpaAdaptationLoopOperator(_ClusterMixin, IpaForecastOperator):
    """Forecast -> plan -> reconcile -> record every `adaptation.interval_s` of the spec, for `duration_s`,
    inside this one task: the cadence bursts need and Airflow's scheduler cannot give a DAG. The load and
    forecaster arguments are IpaForecastOperator's. Every decision goes to MLflow as the four-task DAG's
    do; returns how many decisions and changes it made."""

    template_fields: Sequence[str] = (*IpaForecastOperator.template_fields, "spec_path")

    def __init__(
        self,
        *,
        spec_path: str,
        duration_s: float = 600.0,
        quantile: float | None = None,
        policy: str = "ipa",
        cluster_backend: str = "simulated",
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,
        **kwargs,
    ):
        super().__init__(spec_path=spec_path, **kwargs)
        self.duration_s, self.quantile, self.policy = duration_s, quantile, policy
        self.cluster_backend, self.kubernetes_conn_id = cluster_backend, kubernetes_conn_id
        self.simulated_state_file, self.simulated_startup_s = simulated_state_file, simulated_startup_s

    def _rates(self, context):
        """read_rates(window_s) for the loop, and the history to fit a forecaster on."""
        import time

        from ipa_airflow.adaptation import HISTORY_S
        from ipa_airflow.forecasting.sources import TraceReplay, read_trace

        if self.source == "trace":
            second = self._trace_second(context)
            replay = TraceReplay(read_trace(self.trace, damping=self.damping), origin=time.time() - second)
        else:
            replay = self._prometheus()
        window = HISTORY_S if self.source == "trace" else 3600
        return (
            lambda window_s: replay.rates(end=time.time(), window_s=window_s),
            lambda: replay.rates(end=time.time(), window_s=window),
        )

    def execute(self, context) -> dict[str, Any]:
        from ipa_airflow.adaptation import forecaster_for
        from ipa_airflow.control_loop import run_loop
        from ipa_airflow.decisions import log_decision

        mlflow = IpaMlflowHook(self.ipa_mlflow_conn_id)
        registry = mlflow.get_conn()
        read_rates, read_history = self._rates(context)
        fitted, why = forecaster_for(
            self.model, read_history, model_uri=self.model_uri, tracking_uri=mlflow.tracking_uri
        )
        if why:
            self.log.warning(why)

        def record(rec) -> None:
            log_decision(
                rec,
                tracking_uri=registry.tracking_uri,
                experiment=DECISIONS_EXPERIMENT,
                artifact_root=registry.artifact_root,
            )
            self.log.info("%s", rec.why)

        summary = run_loop(
            self.spec_path,
            read_rates=read_rates,
            fitted=fitted,
            backend=self.backend(),
            duration_s=self.duration_s,
            record=record,
            quantile=self.quantile,
            policy=self.policy,
        )
        return summary.to_dict()


OUTCOME_KEY = "outcome"  # what IpaReconcileOperator did: its result, or {"skipped": True, "reason": ...}


class IpaRecordDecisionOperator(BaseOperator):
    """Write the decision (forecast, plan, objective terms, what changed and why) to MLflow."""

    template_fields: Sequence[str] = ("spec_path", "forecast", "planned", "reconciled")

    def __init__(
        self,
        *,
        spec_path: str,
        forecast: Any,
        planned: Any,
        reconciled: Any = None,
        ipa_mlflow_conn_id: str = IpaMlflowHook.default_conn_name,
        **kwargs,
    ):
        kwargs.setdefault("trigger_rule", "none_failed")  # also after a skipped reconcile
        super().__init__(**kwargs)
        self.spec_path, self.forecast, self.planned, self.reconciled = (
            spec_path,
            forecast,
            planned,
            reconciled,
        )
        self.ipa_mlflow_conn_id = ipa_mlflow_conn_id

    def execute(self, context) -> dict[str, Any]:
        from ipa_airflow.adaptation import record_task
        from ipa_airflow.decisions import log_decision

        record = record_task(self.spec_path, self.forecast, self.planned, self.reconciled)
        registry = IpaMlflowHook(self.ipa_mlflow_conn_id).get_conn()
        run_id = log_decision(
            record,
            tracking_uri=registry.tracking_uri,
            experiment=DECISIONS_EXPERIMENT,
            artifact_root=registry.artifact_root,
        )
        self.log.info("decision %s: %s", run_id, record.why)
        return {"run_id": run_id, "why": record.why, "changed": record.changed}


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
