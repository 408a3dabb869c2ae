"""Decision records: why the pipeline is configured as it is, browsable in MLflow.

Every adaptation step writes one run in the decisions experiment: the forecast, the plan and the
objective's terms as metrics, what changed (and the binding constraint) as tags, the whole record as
`decision.json`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DecisionRecord:
    pipeline: str
    decided_at: str
    forecast: Mapping[str, Any]
    planned_load_rps: float
    plan: Mapping[str, Any]
    previous_plan_id: str | None
    reconcile: Mapping[str, Any] | None  # None when the plan did not change (reconcile skipped)
    why: str
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.plan.get("plan_id") != self.previous_plan_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "decided_at": self.decided_at,
            "forecast": dict(self.forecast),
            "planned_load_rps": self.planned_load_rps,
            "plan": dict(self.plan),
            "previous_plan_id": self.previous_plan_id,
            "reconcile": self.reconcile,
            "why": self.why,
            "changed": self.changed,
            "schema_version": self.schema_version,
            "extra": dict(self.extra),
        }


def explain(plan: Mapping[str, Any], previous_plan_id: str | None) -> str:
    """One sentence a person can read in the MLflow UI."""
    stages = ", ".join(f"{s['stage']}={s['variant']} b{s['batch']} x{s['replicas']}" for s in plan["stages"])
    if not plan["feasible"]:
        return f"no configuration meets the SLA ({plan.get('message')}); best effort: {stages}"
    binding = ", ".join(plan.get("binding") or []) or "none (slack in every constraint)"
    verb = "kept" if plan.get("plan_id") == previous_plan_id else "chose"
    return (
        f"{verb} {stages} for {plan['load_rps']:.1f} req/s: accuracy {plan['accuracy']:.4f}, cost "
        f"{plan['cost']:g}, latency {plan['latency_s'] * 1000:.0f} of {plan['sla_s'] * 1000:.0f} ms; "
        f"binding: {binding}"
    )


def log_decision(
    record: DecisionRecord,
    *,
    tracking_uri: str,
    experiment: str = "ipa-decisions",
    artifact_root: str | None = None,
) -> str:
    """One MLflow run per decision; returns the run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = (
        exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifact_root)
    )
    plan = record.plan
    terms = plan.get("terms", {})
    tags = {
        "mlflow.runName": f"{record.pipeline} {record.decided_at}",
        "ipa.pipeline": record.pipeline,
        "ipa.plan_id": str(plan.get("plan_id")),
        "ipa.previous_plan_id": str(record.previous_plan_id),
        "ipa.changed": str(record.changed).lower(),
        "ipa.feasible": str(plan.get("feasible")).lower(),
        "ipa.binding": ",".join(plan.get("binding") or []) or "none",
        "ipa.why": record.why[:5000],
        "ipa.forecast_note": str(record.forecast.get("note", "")),
    }
    run = client.create_run(exp_id, tags=tags)
    metrics = {
        "load_forecast_point": record.forecast.get("point"),
        "load_planned": record.planned_load_rps,
        "accuracy": plan.get("accuracy"),
        "cost": plan.get("cost"),
        "objective": plan.get("objective"),
        "term_accuracy": terms.get("accuracy"),
        "term_cost": terms.get("cost"),
        "term_batch": terms.get("batch"),
        "latency_ms": plan.get("latency_s", 0) * 1000,
        "solve_ms": plan.get("solve_time_s", 0) * 1000,
        "changed": float(record.changed),
        "feasible": float(bool(plan.get("feasible"))),
    }
    params = {
        "policy": plan.get("policy"),
        "forecaster": record.forecast.get("model"),
        "sla_s": plan.get("sla_s"),
        "solver": plan.get("solver"),
    }
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items() if v is not None],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "decision.json").write_text(json.dumps(record.to_dict(), indent=1, default=str))
        client.log_artifacts(run.info.run_id, tmp)
    client.set_terminated(run.info.run_id)
    return run.info.run_id
