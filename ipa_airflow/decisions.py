"""Decision records: why the pipeline is configured as it is, browsable in MLflow.

Every adaptation step writes one run in the decisions experiment: the forecast, the plan and the
objective's terms as metrics, what changed (and the binding constraint) as tags, the whole record as
`decision.json`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .control.record import DecisionRecord


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
    terms = plan.terms
    tags = {
        "mlflow.runName": f"{record.pipeline} {record.decided_at}",
        "ipa.pipeline": record.pipeline,
        "ipa.plan_id": str(plan.plan_id),
        "ipa.previous_plan_id": str(record.previous_plan_id),
        "ipa.changed": str(record.changed).lower(),
        "ipa.feasible": str(plan.feasible).lower(),
        "ipa.binding": ",".join(plan.binding) or "none",
        "ipa.why": record.why[:5000],
        "ipa.forecast_note": str(record.forecast.note),
        # The model version each stage runs, and where the pipeline came from (MLflow, or the kept copy).
        **{f"ipa.model.{stage}": uri for stage, uri in record.decision.models.items()},
        "ipa.pipeline_origin": str(record.decision.pipeline.get("origin", "files")),
    }
    note = record.decision.pipeline.get("note")
    if note:
        tags["ipa.pipeline_note"] = str(note)[:5000]
    run = client.create_run(exp_id, tags=tags)
    metrics = {
        "load_forecast_point": record.forecast.point,
        "load_planned": record.planned_load_rps,
        "accuracy": plan.accuracy,
        "cost": plan.cost,
        "objective": plan.objective,
        "term_accuracy": terms.get("accuracy"),
        "term_cost": terms.get("cost"),
        "term_batch": terms.get("batch"),
        "latency_ms": plan.latency_s * 1000,
        "solve_ms": plan.solve_time_s * 1000,
        "changed": float(record.changed),
        "feasible": float(plan.feasible),
    }
    params = {
        "policy": plan.policy,
        "forecaster": record.forecast.model,
        "sla_s": plan.sla_s,
        "solver": plan.solver,
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


def keep_decision(record, home=None) -> Path:
    """Write a decision record MLflow could not take to IPA_HOME/decisions/, so it is not lost."""
    from .settings import load_settings

    folder = (home or load_settings().home) / "decisions"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = record.decided_at.replace(":", "")
    path = folder / f"{record.pipeline}-{stamp}.json"
    path.write_text(json.dumps(record.to_dict(), indent=1, default=str))
    return path
