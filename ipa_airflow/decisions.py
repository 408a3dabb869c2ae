"""Decision records: why the pipeline is configured as it is, browsable in MLflow.

Every adaptation step writes one run in the decisions experiment: the forecast, the plan and the
objective's terms as metrics, what changed (and the binding constraint) as tags, the why in full as the
run's description, the whole record as `decision.json`; and one point on its pipeline's timeline run.
"""

from __future__ import annotations

import datetime as dt
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
        "ipa.kind": "decision",  # beside each pipeline's 'timeline' run in the same experiment
        "ipa.pipeline": record.pipeline,
        "ipa.plan_id": str(plan.plan_id),
        "ipa.previous_plan_id": str(record.previous_plan_id),
        "ipa.changed": str(record.changed).lower(),
        "ipa.feasible": str(plan.feasible).lower(),
        "ipa.binding": ",".join(plan.binding) or "none",
        "ipa.why": record.why[:5000],
        # The run's description on its page in the MLflow UI: the why in full, and what it rests on.
        "mlflow.note.content": describe(record),
        "ipa.forecast_note": str(record.forecast.note),
        # The model version each stage runs, and where the pipeline came from (MLflow, or the kept copy).
        **{f"ipa.model.{stage}": uri for stage, uri in record.decision.models.items()},
        "ipa.pipeline_origin": str(record.decision.pipeline.get("origin", "files")),
        # A scale-up the loop's fast path made between decisions, not a decision on a forecast.
        "ipa.fast_path": str(bool(record.extra.get("fast_path"))).lower(),
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
    log_timeline(client, exp_id, record)
    return run.info.run_id


def log_timeline(client, exp_id: str, record: DecisionRecord) -> str:
    """Add this decision to its pipeline's timeline: one run per pipeline in the decisions experiment
    ('<pipeline> timeline') whose metrics have the decision's time as their step, so the MLflow UI charts
    forecast, planned load, capacity and cost over time. Returns the timeline run's id."""
    from mlflow.entities import Metric

    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`ipa.kind` = 'timeline' and tags.`ipa.pipeline` = '{record.pipeline}'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
    else:
        run_id = client.create_run(
            exp_id,
            tags={
                "mlflow.runName": f"{record.pipeline} timeline",
                "ipa.kind": "timeline",
                "ipa.pipeline": record.pipeline,
                "mlflow.note.content": (
                    f"Every decision of pipeline {record.pipeline}, one point each: the metrics' step "
                    "is the decision's time (Unix seconds). Chart load_forecast_point, load_planned, "
                    "load_observed_peak (replays only) and capacity_rps together, and cost and accuracy."
                ),
            },
        ).info.run_id
    at = dt.datetime.fromisoformat(record.decided_at)
    step, ms = int(at.timestamp()), int(at.timestamp() * 1000)
    values = timeline_values(record)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ms, step) for k, v in values.items()])
    return run_id


def timeline_values(record: DecisionRecord) -> dict[str, float]:
    plan = record.plan
    values = {
        "load_forecast_point": record.forecast.point,
        "load_planned": record.planned_load_rps,
        "capacity_rps": min((s.capacity_rps for s in plan.stages), default=0.0),  # the slowest stage's
        "cost": plan.cost,
        "accuracy": plan.accuracy,
    }
    peak = record.extra.get("observed_peak_next_20s")
    if peak is not None:
        values["load_observed_peak"] = float(peak)
    return values


def describe(record: DecisionRecord) -> str:
    """The decision run's description (Markdown): why, the stages, the models, what was left out, drift."""
    d = record.decision
    lines = [
        record.why,
        "",
        "| stage | variant | model | batch | replicas | capacity (req/s) |",
        "|---|---|---|---|---|---|",
    ]
    for s in record.plan.stages:
        model = d.models.get(s.stage, "")
        lines.append(
            f"| {s.stage} | {s.variant} | {model} | {s.batch} | {s.replicas} | {s.capacity_rps:.1f} |"
        )
    f = record.forecast
    lines += [
        "",
        f"Forecast ({f.model}): point {f.point:.1f} req/s, quantiles "
        + ", ".join(f"q{k} {v:.1f}" for k, v in sorted(f.quantiles.items()))
        + ".",
    ]
    left_out = [c for c in d.pipeline.get("candidates", ()) if c.get("status") != "candidate"]
    if left_out:
        lines += ["", "Registry versions not planned:"]
        lines += [
            f"- {c['stage']}: {c['variant']} ({c['model_uri']}) {c['status']}: {c['reason']}"
            for c in left_out
        ]
    if d.pipeline.get("note"):
        lines += ["", f"Pipeline: {d.pipeline['note']}"]
    for gap in d.drift.get("gaps", ()):
        lines.append(
            f"- drift {gap['stage']}: observed p99 {gap['observed_p99_ms']:.0f} ms, "
            f"profile {gap['predicted_p99_ms']:.0f} ms"
        )
    return "\n".join(lines)[:50000]


def keep_decision(record, home=None) -> Path:
    """Write a decision record MLflow could not take to IPA_HOME/decisions/, so it is not lost."""
    from .settings import load_settings
    from .whole_files import write_whole

    stamp = record.decided_at.replace(":", "")
    path = (home or load_settings().home) / "decisions" / f"{record.pipeline}-{stamp}.json"
    return write_whole(path, json.dumps(record.to_dict(), indent=1, default=str))


def record_or_keep(record: DecisionRecord, registry, experiment: str, warn) -> None:
    """A loop's record: the decision run in MLflow, or, with MLflow down, the record kept on disk and
    `warn(message)` said, so the loop keeps deciding and nothing is lost."""
    from .registry.mlflow_profiles import RegistryError, mlflow_errors

    try:
        with mlflow_errors(registry.tracking_uri, "record the decision"):
            log_decision(
                record,
                tracking_uri=registry.tracking_uri,
                experiment=experiment,
                artifact_root=registry.artifact_root,
            )
    except RegistryError as exc:
        warn(f"{exc}; the decision record is kept at {keep_decision(record)}")
