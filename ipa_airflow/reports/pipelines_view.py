"""What the Airflow view shows per pipeline, from the decision records in MLflow: what runs now, the last
forecast against the load that came, the last decisions and why, and the MLflow runs behind each number.

Pure: decision records (and the profile runs found for the running stages) in, plain frozen values out;
`to_dict` is the view's JSON. decision_runs.py reads MLflow; the plugin renders the HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from ..control.record import DecisionRecord


@dataclass(frozen=True)
class DecisionRun:
    """One decision run of the decisions experiment, its decision.json read back."""

    run_id: str
    experiment_id: str
    record: DecisionRecord


@dataclass(frozen=True)
class StageKey:
    """Which profile a running stage's numbers came from: the stage's model on its hardware shape."""

    model_ref: str  # 'models:/name/3' or 'zoo:resnet18'
    hardware: str
    resources: str
    dtype: str


@dataclass(frozen=True)
class ProfileRun:
    run_id: str
    experiment_id: str | None  # None when only the run id is known (a model version's tag)
    found_by: str  # 'model version tag' or 'profiles experiment'


@dataclass(frozen=True)
class MlflowLinks:
    """Pages of the MLflow UI at `ui` (no links without one: a sqlite or file store has no UI address)."""

    ui: str | None

    def run(self, run_id: str, experiment_id: str | None = None) -> str | None:
        if not self.ui or not run_id:
            return None
        if experiment_id is None:  # the UI's /runs/<id> page finds the experiment itself
            return f"{self.ui}/#/runs/{run_id}"
        return f"{self.ui}/#/experiments/{experiment_id}/runs/{run_id}"

    def experiment(self, experiment_id: str | None) -> str | None:
        return f"{self.ui}/#/experiments/{experiment_id}" if self.ui and experiment_id else None

    def model(self, model_ref: str) -> str | None:
        """'models:/name/3' -> the version's page; None for zoo models and aliases."""
        if not self.ui or not model_ref.startswith("models:/"):
            return None
        name, _, version = model_ref[len("models:/") :].partition("/")
        if not version.isdigit():
            return None
        return f"{self.ui}/#/models/{quote(name, safe='')}/versions/{version}"


def mlflow_ui_base(tracking_uri: str, ui_url: str | None = None) -> str | None:
    """Where people open MLflow: `ui_url` when set, else an http(s) tracking server's own address (without
    any user:password in it, since the links are shown to everyone who sees the view)."""
    if ui_url:
        return ui_url.rstrip("/")
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class StageNow:
    stage: str
    variant: str
    model_ref: str
    model_url: str | None
    hardware: str
    resources: str
    dtype: str
    batch: int
    replicas: int
    capacity_rps: float
    latency_ms: float
    profile_run_id: str | None
    profile_url: str | None
    profile_note: str  # how the profile run was found, or why there is none


@dataclass(frozen=True)
class Running:
    """The plan the pipeline runs now, and the decision that put (or kept) it there."""

    plan_id: str
    state: str  # 'applied', 'kept', 'dry run' or 'chosen' (changed, no reconcile recorded)
    decided_at: str
    run_id: str
    run_url: str | None
    load_rps: float
    cost: float
    accuracy: float
    latency_ms: float
    sla_ms: float
    feasible: bool
    stages: tuple[StageNow, ...]


@dataclass(frozen=True)
class ForecastNow:
    """The newest decision's forecast beside what it planned for and, for a replayed trace, the load
    that came (`observed_peak_rps`, the peak of the forecast's horizon)."""

    model: str
    issued_at: str
    horizon_s: int
    point_rps: float
    quantiles: Mapping[str, float]
    planned_rps: float
    basis: str  # how the planned load came from the forecast ('' when the record does not say)
    observed_peak_rps: float | None
    note: str


@dataclass(frozen=True)
class DecisionRow:
    decided_at: str
    run_id: str
    run_url: str | None
    plan_id: str
    changed: bool
    outcome: str
    why: str
    forecast_rps: float
    planned_rps: float
    observed_peak_rps: float | None
    capacity_rps: float  # the slowest stage's, all replicas
    cost: float
    accuracy: float


@dataclass(frozen=True)
class PipelineView:
    pipeline: str
    running: Running | None
    note: str  # e.g. newer decisions that were not applied
    forecast: ForecastNow | None
    decisions: tuple[DecisionRow, ...]  # newest first
    timeline_url: str | None


@dataclass(frozen=True)
class Overview:
    experiment: str
    experiment_url: str | None
    mlflow_ui: str | None
    read_at: str
    pipelines: tuple[PipelineView, ...]
    skipped: tuple[str, ...] = ()  # decision runs that could not be read, and why
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---- the decisions ------------------------------------------------------------------------------------
def outcome(record: DecisionRecord) -> str:
    """What became of a decision: kept what ran, applied a new plan, or did not apply it (and why)."""
    if not record.changed:
        return "kept"
    r = record.reconcile
    if r is None:
        return "chosen"  # changed, but no reconcile on record: the plan was not known to be applied
    if r.dry_run:
        return "dry run"
    if r.ok:
        return "applied"
    return f"not applied: {r.cause or 'the reconcile failed'}"


RUNNING_OUTCOMES = ("applied", "kept", "dry run", "chosen")


def running_decision(runs_newest_first: Sequence[DecisionRun]) -> tuple[DecisionRun | None, str]:
    """The decision whose plan runs now: the newest that kept what ran or applied its plan. A newer one
    whose reconcile failed left the older plan running (the reconcile rolls back); the note says so."""
    skipped: list[str] = []
    for run in runs_newest_first:
        what = outcome(run.record)
        if what in RUNNING_OUTCOMES:
            note = ""
            if skipped:
                note = f"{len(skipped)} newer decision(s) not applied; the newest at {skipped[0]}"
            return run, note
        skipped.append(f"{run.record.decided_at} ({what})")
    return None, ("no decision was applied: " + "; ".join(skipped[:3])) if skipped else ""


def stage_keys(run: DecisionRun) -> list[StageKey]:
    """The profiles a decision's stages were planned from."""
    models = run.record.decision.models
    return [
        StageKey(models.get(s.stage, f"zoo:{s.variant}"), s.hardware, s.resources, s.dtype)
        for s in run.record.plan.stages
    ]


def _stage_now(s, model_ref: str, profiles: Mapping[StageKey, ProfileRun], links: MlflowLinks) -> StageNow:
    profile = profiles.get(StageKey(model_ref, s.hardware, s.resources, s.dtype))
    if profile is None:
        note = "no profile run in MLflow (profiles from files)"
    else:
        note = f"found by {profile.found_by}"
    return StageNow(
        stage=s.stage,
        variant=s.variant,
        model_ref=model_ref,
        model_url=links.model(model_ref),
        hardware=s.hardware,
        resources=s.resources,
        dtype=s.dtype,
        batch=s.batch,
        replicas=s.replicas,
        capacity_rps=s.capacity_rps,
        latency_ms=s.latency_s * 1000,
        profile_run_id=profile.run_id if profile else None,
        profile_url=links.run(profile.run_id, profile.experiment_id) if profile else None,
        profile_note=note,
    )


def running(run: DecisionRun, profiles: Mapping[StageKey, ProfileRun], links: MlflowLinks) -> Running:
    r, plan = run.record, run.record.plan
    models = r.decision.models
    return Running(
        plan_id=plan.plan_id,
        state=outcome(r),
        decided_at=r.decided_at,
        run_id=run.run_id,
        run_url=links.run(run.run_id, run.experiment_id),
        load_rps=plan.load_rps,
        cost=plan.cost,
        accuracy=plan.accuracy,
        latency_ms=plan.latency_s * 1000,
        sla_ms=plan.sla_s * 1000,
        feasible=plan.feasible,
        stages=tuple(
            _stage_now(s, models.get(s.stage, f"zoo:{s.variant}"), profiles, links) for s in plan.stages
        ),
    )


def observed_peak(record: DecisionRecord) -> float | None:
    """The peak load of the forecast's horizon, recorded when the load is a replayed trace."""
    value = record.extra.get(f"observed_peak_next_{record.forecast.horizon_s}s")
    if value is None:
        value = record.extra.get("observed_peak_next_20s")
    return None if value is None else float(value)


def load_basis(record: DecisionRecord) -> str:
    """The planned load in words: the forecast quantile now, and the load the capacity hold kept."""
    b = record.decision.load_basis
    q, now = b.get("quantile"), b.get("now")
    if q is None or now is None:
        return ""
    text = f"q{float(q):g} of this forecast: {float(now):.1f} req/s"
    planned = record.decision.load_rps
    if planned > max(float(now), float(b.get("measured") or 0.0)) + 1e-9:
        text += f"; {planned:.1f} req/s held for the last {len(b.get('recent') or [])} loads"
    return text


def forecast_now(record: DecisionRecord) -> ForecastNow:
    f = record.forecast
    return ForecastNow(
        model=f.model,
        issued_at=f.issued_at,
        horizon_s=f.horizon_s,
        point_rps=f.point,
        quantiles=dict(f.quantiles),
        planned_rps=record.planned_load_rps,
        basis=load_basis(record),
        observed_peak_rps=observed_peak(record),
        note=f.note,
    )


def row(run: DecisionRun, links: MlflowLinks) -> DecisionRow:
    r = run.record
    return DecisionRow(
        decided_at=r.decided_at,
        run_id=run.run_id,
        run_url=links.run(run.run_id, run.experiment_id),
        plan_id=r.plan.plan_id,
        changed=r.changed,
        outcome=outcome(r),
        why=r.why,
        forecast_rps=r.forecast.point,
        planned_rps=r.planned_load_rps,
        observed_peak_rps=observed_peak(r),
        capacity_rps=min((s.capacity_rps for s in r.plan.stages), default=0.0),
        cost=r.plan.cost,
        accuracy=r.plan.accuracy,
    )


def by_pipeline(runs: Iterable[DecisionRun]) -> dict[str, list[DecisionRun]]:
    """Each pipeline's decisions, newest first (by decision time: the runs' start times can tie)."""
    out: dict[str, list[DecisionRun]] = {}
    for run in runs:
        out.setdefault(run.record.pipeline, []).append(run)
    for runs_of in out.values():
        runs_of.sort(key=lambda r: r.record.decided_at, reverse=True)
    return dict(sorted(out.items()))


def pipeline_view(
    pipeline: str,
    runs_newest_first: Sequence[DecisionRun],
    profiles: Mapping[StageKey, ProfileRun],
    links: MlflowLinks,
    *,
    recent: int = 10,
    timeline: tuple[str, str] | None = None,  # (run id, experiment id) of the pipeline's timeline run
) -> PipelineView:
    now, note = running_decision(runs_newest_first)
    newest = runs_newest_first[0] if runs_newest_first else None
    return PipelineView(
        pipeline=pipeline,
        running=None if now is None else running(now, profiles, links),
        note=note,
        forecast=None if newest is None else forecast_now(newest.record),
        decisions=tuple(row(r, links) for r in runs_newest_first[:recent]),
        timeline_url=links.run(*timeline) if timeline else None,
    )
