"""The fleet's adaptation operator: every pipeline of a fleet spec forecast, decided together under its
quota, reconciled in order and recorded, in one task (`ipa_airflow.fleet_loop`). One task, because the
decision is joint: a task per pipeline could not plan one pipeline without the others' forecasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset

from ipa_airflow.settings import DECISIONS_EXPERIMENT

from .adaptation import _ClusterMixin
from .forecast import IpaForecastOperator
from .hooks import IpaMlflowHook
from .plugin import PROFILES_URI


class IpaFleetAdaptationOperator(_ClusterMixin, IpaForecastOperator):
    """Forecast every pipeline of `fleet_path` -> decide the fleet -> reconcile -> record, every interval
    for `duration_s` (0: one decision, the DAG's run-per-decision mode). The load and forecaster
    arguments are IpaForecastOperator's, per pipeline (Prometheus: each pipeline's own request rate; a
    replayed trace: the same trace for every pipeline). Every pipeline's decision goes to MLflow, saying
    what the quota cost it. Returns the loop's summary."""

    template_fields: Sequence[str] = (*IpaForecastOperator.template_fields, "fleet_path")

    def __init__(
        self,
        *,
        fleet_path: str,
        duration_s: float = 0.0,
        quantile: float | None = None,
        policy: str = "ipa",
        cluster_backend: str = "simulated",
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,
        **kwargs,
    ):
        kwargs["inlets"] = [*(kwargs.get("inlets") or []), Asset(PROFILES_URI)]  # see IpaPlanOperator
        super().__init__(**kwargs)
        self.fleet_path, self.duration_s, self.quantile, self.policy = (
            fleet_path,
            duration_s,
            quantile,
            policy,
        )
        self.cluster_backend, self.kubernetes_conn_id = cluster_backend, kubernetes_conn_id
        self.simulated_state_file, self.simulated_startup_s = simulated_state_file, simulated_startup_s

    def _sources(self, context, fleet):
        """Each pipeline's load source (something with `rates(end=, window_s=)`), and the history window."""
        import time

        from ipa_airflow.adaptation import HISTORY_S
        from ipa_airflow.forecasting.sources import TraceReplay, read_trace

        if self.source == "trace":
            second = self._trace_second(context)
            replay = TraceReplay(read_trace(self.trace, damping=self.damping), origin=time.time() - second)
            return {name: replay for name in fleet.pipeline_names}, HISTORY_S
        source = self._prometheus()
        return {m.name: source.for_pipeline(m.pipeline.spec) for m in fleet.members}, 3600

    def execute(self, context) -> dict[str, Any]:
        import time

        from ipa_airflow.adaptation import forecaster_for
        from ipa_airflow.decisions import record_or_keep
        from ipa_airflow.fleet import load_fleet
        from ipa_airflow.fleet_loop import run_fleet_loop

        mlflow = IpaMlflowHook(self.ipa_mlflow_conn_id)
        registry = mlflow.get_conn()

        # Registry stages and profiles from MLflow at every decision, as each pipeline's plan task reads
        # them; the first decision uses the fleet loaded here for the sources.
        fleet = load_fleet(self.fleet_path, registry=registry)
        loaded = [fleet]

        def load(_at):
            return loaded.pop() if loaded else load_fleet(self.fleet_path, registry=registry)

        sources, window = self._sources(context, fleet)

        def read_rates_for(name):
            return lambda window_s: sources[name].rates(end=time.time(), window_s=window_s)

        fitted = {}
        for name in fleet.pipeline_names:
            fitted[name], why = forecaster_for(
                self.model,
                lambda name=name: sources[name].rates(end=time.time(), window_s=window),
                model_uri=self.model_uri,
                tracking_uri=mlflow.tracking_uri,
            )
            if why:
                self.log.warning("%s: %s", name, why)

        def record(rec) -> None:
            record_or_keep(rec, registry, DECISIONS_EXPERIMENT, self.log.warning)
            quota = rec.extra.get("fleet", {})
            self.log.info("%s: %s (quota cost %s)", rec.pipeline, rec.why, quota.get("quota_cost"))

        self.log.info("fleet %s: %s under quota %s", fleet.name, ", ".join(fleet.pipeline_names), fleet.quota)
        summary = run_fleet_loop(
            self.fleet_path,
            read_rates_for=read_rates_for,
            fitted=fitted,
            backend=self.backend(),
            duration_s=self.duration_s,
            record=record,
            quantile=self.quantile,
            policy=self.policy,
            load=load,
        )
        return summary.to_dict()
