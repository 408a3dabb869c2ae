"""The forecast operator: the next interval's peak load, from Prometheus or a replayed trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from .hooks import IpaMlflowHook, IpaPrometheusHook


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
        query: str | None = None,  # None: PrometheusSource's default, MLServer's request counter
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
        source = IpaPrometheusHook(self.ipa_prometheus_conn_id).get_conn(self.query)
        if self.spec_path:  # the query's {pipeline} and {stage}: this pipeline's first stage
            from ipa_airflow.spec import load_spec

            source = source.for_pipeline(load_spec(self.spec_path))
        return source

    def execute(self, context) -> dict[str, Any]:
        import time

        t0 = time.perf_counter()
        out = self._forecast(context)
        quantiles = ", ".join(f"q{k} {v:.1f}" for k, v in sorted(out["quantiles"].items()))
        self.log.info(
            "forecast by %s for the next %d s: point %.1f req/s, %s (%.1f s)%s",
            out["model"],
            out["horizon_s"],
            out["point"],
            quantiles,
            time.perf_counter() - t0,
            f"; {out['note']}" if out.get("note") else "",
        )
        return out

    def _forecast(self, context) -> dict[str, Any]:
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
