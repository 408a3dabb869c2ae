"""The adaptation step's operators along the data-flow arrows (plan, reconcile, record; the forecast is
in forecast.py), and the operator that runs the whole step on a short cadence for a while.

Every operator that touches the cluster gets its backend from ClusterHook, as the sensor and the
trigger do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator

from ipa_airflow.settings import DECISIONS_EXPERIMENT

from .forecast import IpaForecastOperator
from .hooks import ClusterHook, IpaMlflowHook
from .links import MlflowDecisionRunLink
from .plugin import MODEL_VERSIONS_URI, PROFILES_URI

OUTCOME_KEY = "outcome"  # what IpaReconcileOperator did: its result, or {"skipped": True, "reason": ...}


class _ClusterMixin:
    """The cluster arguments every cluster operator takes, turned into a backend by ClusterHook.
    `simulated_startup_s` defaults to 0 s in each operator (the DAG passes its settings' value)."""

    def backend(self):
        return ClusterHook(
            self.cluster_backend,
            kubernetes_conn_id=self.kubernetes_conn_id,
            simulated_state_file=self.simulated_state_file,
            simulated_startup_s=self.simulated_startup_s,
        ).get_conn()


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
        ipa_mlflow_conn_id: str | None = IpaMlflowHook.default_conn_name,
        ipa_prometheus_conn_id: str | None = None,  # given: each stage's observed p99 for the drift check
        **kwargs,
    ):
        # The profiling DAG's event on this asset says MLflow holds new profiles: read the registry again.
        kwargs["inlets"] = [*(kwargs.get("inlets") or []), Asset(PROFILES_URI)]
        super().__init__(**kwargs)
        self.spec_path, self.forecast, self.quantile, self.policy = spec_path, forecast, quantile, policy
        self.cluster_backend, self.kubernetes_conn_id = cluster_backend, kubernetes_conn_id
        self.simulated_state_file, self.ipa_mlflow_conn_id = simulated_state_file, ipa_mlflow_conn_id
        self.simulated_startup_s = simulated_startup_s
        self.ipa_prometheus_conn_id = ipa_prometheus_conn_id

    def _read_observed(self):
        """Each stage's observed p99 from Prometheus (None when no Prometheus connection is given)."""
        if not self.ipa_prometheus_conn_id:
            return None
        from ipa_airflow.forecasting.stage_latency import DEFAULT_QUERY, stage_p99_ms
        from ipa_airflow.settings import load_settings

        from .hooks import IpaPrometheusHook

        drift, url = load_settings().drift, IpaPrometheusHook(self.ipa_prometheus_conn_id).url

        def read(pipeline):
            spec = pipeline.spec
            return stage_p99_ms(
                url,
                drift.query or DEFAULT_QUERY,
                pipeline=spec.name,
                namespace=spec.namespace,
                stages=spec.stage_names,
                window_s=drift.window_s,
            )

        return read

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
            profiles_changed_at=profiles_changed_at(context),
            read_observed=self._read_observed(),
        )
        for gap in decision["drift"].get("gaps", ()):
            self.log.info(
                "drift %s: observed p99 %s ms, profile %s ms",
                gap["stage"],
                gap["observed_p99_ms"],
                gap["predicted_p99_ms"],
            )
        source = decision["pipeline"]
        if source.get("origin") == "cache-fallback":
            self.log.warning("%s", source["note"])
        for c in source.get("candidates", ()):
            if c["status"] != "candidate":
                self.log.info(
                    "%s: %s (%s) %s: %s", c["stage"], c["variant"], c["model_uri"], c["status"], c["reason"]
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


def profiles_changed_at(context):
    """When the profiling DAG last said MLflow holds new profiles (None when it never did, or the task
    has no such inlet): the planner reads the registry again when its kept copy is older."""
    try:
        newest = list(context["inlet_events"][Asset(PROFILES_URI)].ascending(False).limit(1))
        return newest[0].timestamp if newest else None
    except Exception:  # noqa: BLE001 - no inlet or no event store (a bare test context): age alone decides
        return None


class IpaReprofileOperator(BaseOperator):
    """Ask for re-profiling when the plan task's drift check says a stage's profile no longer matches what
    it serves: one event on ipa://mlflow/model-versions (the profiling DAG's trigger) per version and shape.
    Skipped when there is none: a task with an outlet that succeeds emits an event, and this runs every
    decision."""

    template_fields: Sequence[str] = ("planned",)

    def __init__(self, *, planned: Any, **kwargs):
        kwargs.setdefault("outlets", [Asset(MODEL_VERSIONS_URI)])
        super().__init__(**kwargs)
        self.planned = planned

    def execute(self, context) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowSkipException

        events = list((self.planned.get("drift") or {}).get("events") or [])
        if not events:
            raise AirflowSkipException("no drift that asks for re-profiling")
        context["outlet_events"][Asset(MODEL_VERSIONS_URI)].extra = {"versions": events, "source": "drift"}
        for e in events:
            self.log.warning(
                "re-profiling %s v%s on %s: %s", e["name"], e["version"], e["hardware"], e["gap"]
            )
        return events


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


class IpaRecordDecisionOperator(BaseOperator):
    """Write the decision (forecast, plan, objective terms, what changed and why) to MLflow."""

    template_fields: Sequence[str] = ("spec_path", "forecast", "planned", "reconciled")
    operator_extra_links = (MlflowDecisionRunLink(),)  # the task's button to its decision run in MLflow

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
        from airflow.sdk.exceptions import AirflowException

        from ipa_airflow.adaptation import record_task
        from ipa_airflow.decisions import keep_decision, log_decision
        from ipa_airflow.registry.mlflow_profiles import RegistryError, mlflow_errors

        record = record_task(self.spec_path, self.forecast, self.planned, self.reconciled)
        registry = IpaMlflowHook(self.ipa_mlflow_conn_id).get_conn()
        try:
            with mlflow_errors(registry.tracking_uri, "record the decision"):
                run_id = log_decision(
                    record,
                    tracking_uri=registry.tracking_uri,
                    experiment=DECISIONS_EXPERIMENT,
                    artifact_root=registry.artifact_root,
                )
        except RegistryError as exc:
            # The decision was made (and applied); keep its record so it is not lost with MLflow down.
            kept = keep_decision(record)
            raise AirflowException(f"{exc}; the decision record is kept at {kept}") from None
        self.log.info("decision %s: %s", run_id, record.why)
        return {"run_id": run_id, "why": record.why, "changed": record.changed}


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
        kwargs["inlets"] = [*(kwargs.get("inlets") or []), Asset(PROFILES_URI)]  # see IpaPlanOperator
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
        from ipa_airflow.decisions import record_or_keep

        mlflow = IpaMlflowHook(self.ipa_mlflow_conn_id)
        registry = mlflow.get_conn()
        read_rates, read_history = self._rates(context)
        fitted, why = forecaster_for(
            self.model, read_history, model_uri=self.model_uri, tracking_uri=mlflow.tracking_uri
        )
        if why:
            self.log.warning(why)

        def record(rec) -> None:
            record_or_keep(rec, registry, DECISIONS_EXPERIMENT, self.log.warning)
            self.log.info("%s", rec.why)

        from ipa_airflow.pipeline_cache import live_pipeline
        from ipa_airflow.settings import load_settings

        settings = load_settings()

        def load(at):
            return live_pipeline(
                self.spec_path,
                registry=registry,
                home=settings.home,
                now=at,
                max_age_s=settings.registry.pipeline_max_age_s,
                profiles_changed_at=profiles_changed_at(context),  # asked afresh at each tick
            )

        summary = run_loop(
            self.spec_path,
            load=load,
            read_rates=read_rates,
            fitted=fitted,
            backend=self.backend(),
            duration_s=self.duration_s,
            record=record,
            quantile=self.quantile,
            policy=self.policy,
        )
        return summary.to_dict()
