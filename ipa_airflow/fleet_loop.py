"""The adaptation step for a fleet: several pipelines under one quota, decided together, on a short cadence.

`control_loop.run_loop` for one pipeline, with the same clock, sleep and skipped ticks, but each tick:
every pipeline's forecast -> one `control.fleet.decide_fleet` (the joint program and the keep-or-switch
rule, under the fleet's quota) -> `cluster.fleet_reconcile.reconcile_fleet` (capacity-freeing changes
before capacity-taking ones, a change that would overrun the quota held back) -> one DecisionRecord per
pipeline, which says what the quota cost it. The fast path between decisions adds replicas of what runs
only where the quota has room (its scale-ups go through `reconcile_fleet` too).

The DAG's one-decision-per-run mode is this loop for zero seconds: one tick, then it returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import control
from .cluster.backends import ClusterError
from .cluster.fleet_reconcile import FleetReconcile, PipelineApply, reconcile_fleet
from .control.fleet import decide_fleet
from .control_loop import measured_rates  # the fast path's window, as one pipeline's loop reads it
from .fleet.spec import Fleet, FleetError, load_fleet
from .forecasting.base import FittedForecaster, Forecast
from .forecasting.sources import LoadSourceError
from .forecasting.step import forecast_for
from .profiles import ProfileError
from .spec import SpecError

log = logging.getLogger(__name__)

ReadRates = Callable[[int], np.ndarray]


@dataclass
class FleetLoopSummary:
    ticks: int = 0  # fleet decisions made
    decisions: int = 0  # pipeline decisions recorded (one per pipeline per tick)
    changes: int = 0
    skipped: list[str] = field(default_factory=list)  # why a tick made no decision
    failed_reconciles: int = 0  # pipelines whose reconcile failed or was refused
    held: int = 0  # capacity-taking changes held back: the quota had no room for them then
    bursts: int = 0  # scale-ups the fast path made between decisions

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "decisions": self.decisions,
            "changes": self.changes,
            "bursts": self.bursts,
            "held": self.held,
            "skipped": self.skipped,
            "failed_reconciles": self.failed_reconciles,
        }


def spacing_s(fleet: Fleet) -> int:
    """The fleet decides at the shortest interval any of its pipelines asks for."""
    return min(m.pipeline.spec.adaptation.spacing_s for m in fleet.members)


def run_fleet_loop(
    fleet_path: str,
    *,
    read_rates_for: Callable[[str], ReadRates],
    fitted: FittedForecaster | Mapping[str, FittedForecaster],
    backend,
    duration_s: float,
    record: Callable[[control.DecisionRecord], None],
    quantile: float | None = None,
    policy: str = "ipa",
    load: Callable[[dt.datetime], Fleet] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> FleetLoopSummary:
    """Decide the fleet at once and then every `spacing_s(fleet)` seconds while `duration_s` lasts.

    `read_rates_for(pipeline)` gives that pipeline's `read_rates(window_s)` (its last per-second rates);
    `fitted` is one forecaster for all, or one per pipeline name. A tick where a pipeline's load cannot
    be read (and it has no fresh last forecast), or the fleet cannot be loaded or decided, is skipped and
    said so: the fleet is decided whole or not at all, since one pipeline's plan depends on the others'.
    A pipeline whose reconcile fails is reported (and counted); the others are applied. `load(now)` gives
    the fleet of each decision (the operator's reads the registry); default: the fleet's files."""
    summary = FleetLoopSummary()
    last_good: dict[str, Forecast] = {}
    fleet = load(now()) if load is not None else load_fleet(fleet_path)  # a bad fleet fails here, at once
    if isinstance(fitted, Mapping):
        for name in fleet.pipeline_names:
            _fitted(fitted, name)  # a forecaster missing for a pipeline is said now, not mid-loop
    last: dict[str, Forecast] = {}
    start = clock()
    tick = start
    first = True
    while True:
        at = now()
        try:
            if not first:
                fleet = load(at) if load is not None else load_fleet(fleet_path)
            first = False
            forecasts = {
                m.name: forecast_for(
                    read_rates_for(m.name),
                    _fitted(fitted, m.name),
                    now=at,
                    adaptation=m.pipeline.spec.adaptation,
                    last_good=last_good.get(m.name),
                )
                for m in fleet.members
            }
        except (ProfileError, SpecError, FleetError, LoadSourceError) as exc:
            log.warning("no fleet decision at %.0f s: %s", tick - start, exc)
            summary.skipped.append(f"{tick - start:.0f} s: {exc}")
        else:
            last_good.update({n: f for n, f in forecasts.items() if not f.note})
            last = forecasts
            try:
                fleet_step(
                    fleet,
                    forecasts,
                    backend,
                    record,
                    summary,
                    now(),
                    # The measured-rate floor and hold come with the fast path, which is ipa's.
                    {m.name: measured_rates(m.pipeline, read_rates_for(m.name)) for m in fleet.members}
                    if policy == "ipa"
                    else {},
                    quantile=quantile,
                    policy=policy,
                    clock=clock,
                    sleep=sleep,
                )
            except ClusterError as exc:  # what runs cannot be read: nothing was applied
                log.warning("no fleet decision applied at %.0f s: %s", tick - start, exc)
                summary.skipped.append(f"{tick - start:.0f} s: {exc}")
            except ValueError as exc:  # decide_fleet: a pipeline as loaded the fleet cannot plan
                log.warning("no fleet decision at %.0f s: %s", tick - start, exc)
                summary.skipped.append(f"{tick - start:.0f} s: {exc}")
        tick = control.next_tick(tick, spacing_s(fleet), clock())
        if tick - start >= duration_s:
            return summary
        # Between decisions, once a second: the fast path, on the last fleet loaded, within the quota.
        while tick - clock() > 1.0 and clock() - start < duration_s:
            sleep(1.0)
            if last:
                _bursts(
                    fleet,
                    read_rates_for,
                    backend,
                    record,
                    last,
                    summary,
                    now(),
                    policy=policy,
                    quantile=quantile,
                    clock=clock,
                    sleep=sleep,
                )
        if clock() - start >= duration_s:  # a fast-path rollout outlasted the run
            return summary
        sleep(max(0.0, tick - clock()))


def _fitted(fitted: FittedForecaster | Mapping[str, FittedForecaster], name: str) -> FittedForecaster:
    if isinstance(fitted, Mapping):
        if name not in fitted:
            raise ValueError(f"no forecaster for pipeline '{name}' (have {', '.join(fitted)})")
        return fitted[name]
    return fitted


def _specs_and_bases(fleet: Fleet):
    specs = {m.name: m.pipeline.spec for m in fleet.members}
    bases = {m.name: Path(m.pipeline.source).parent for m in fleet.members}
    return specs, bases


def fleet_step(
    fleet: Fleet,
    forecasts: Mapping[str, Forecast],
    backend,
    record: Callable[[control.DecisionRecord], None],
    summary: FleetLoopSummary,
    at: dt.datetime,
    measured: Mapping[str, tuple[float | None, float | None]] | None = None,
    *,
    quantile: float | None = None,
    policy: str = "ipa",
    dry_run: bool = False,
    **waits: Any,
) -> FleetReconcile:
    """One fleet decision: contexts from the cluster, `decide_fleet`, `reconcile_fleet`, a record per
    pipeline. Raises ClusterError when what runs cannot be read, ValueError when the fleet cannot be
    decided (`decide_fleet`); nothing was applied then."""
    measured = measured or {}
    contexts = {
        m.name: control.context(
            m.pipeline,
            forecasts[m.name],
            backend,
            now=at,
            policy=policy,
            quantile=quantile,
            measured_rps=measured.get(m.name, (None, None))[0],
            measured_peak_rps=measured.get(m.name, (None, None))[1],
        )
        for m in fleet.members
    }
    decisions = decide_fleet(contexts, fleet)
    specs, bases = _specs_and_bases(fleet)
    # A reconcile that adds capacity waits for the rollout (on the loop's clock), as one pipeline's does.
    result = reconcile_fleet(
        decisions, specs, backend, quota=fleet.quota, bases=bases, dry_run=dry_run, **waits
    )
    if not result.ok:
        log.warning("fleet reconcile: %s", result.summary())
    summary.ticks += 1
    for m in fleet.members:
        d, applied = decisions[m.name], result.of(m.name)
        summary.failed_reconciles += bool(applied.error or (applied.result and not applied.result.ok))
        summary.held += bool(applied.held)
        record(
            control.DecisionRecord(
                decided_at=at.isoformat(timespec="seconds"),
                forecast=forecasts[m.name],
                decision=d,
                reconcile=applied.result,
                extra={"spec": str(m.pipeline.source), "fleet": fleet_extra(fleet, d, applied)},
            )
        )
        summary.decisions += 1
        summary.changes += d.changed
    return result


def fleet_extra(fleet: Fleet, decision: control.Decision, applied: PipelineApply) -> dict[str, Any]:
    """What a pipeline's record says of the fleet: what the quota cost it (its objective alone and in the
    fleet, from the decision) and how its change went in the fleet's reconcile (its place in the order,
    whether it freed or took capacity, held back or refused)."""
    info = dict(decision.load_basis.get("fleet") or {})
    return {
        "name": fleet.name,
        "source": str(fleet.source),
        "quota_cost": info.get("quota_cost"),
        "objective_alone": info.get("objective_alone"),
        "objective_in_fleet": info.get("objective_in_fleet"),
        "quota_binds": info.get("quota_binds"),
        "apply": {k: v for k, v in applied.to_dict().items() if k != "reconcile"},
    }


def _bursts(
    fleet: Fleet,
    read_rates_for,
    backend,
    record,
    last,
    summary,
    at: dt.datetime,
    *,
    policy: str = "ipa",
    quantile: float | None = None,
    **waits,
) -> None:
    """One look of the fast path for every pipeline: the scale-ups the measured rates ask for, applied
    through the fleet's reconcile, so one the quota has no room for is held back. A load or cluster that
    cannot be read now is left to the next decision, which says so."""
    wanted: dict[str, control.Decision] = {}
    try:
        for m in fleet.members:
            rate, _ = measured_rates(m.pipeline, read_rates_for(m.name))
            if rate is None:
                continue
            ctx = control.context(m.pipeline, last[m.name], backend, now=at, policy=policy, quantile=quantile)
            d = control.burst(ctx, control.Measured(rate))
            if d is not None:
                wanted[m.name] = d
        if not wanted:
            return
        specs, bases = _specs_and_bases(fleet)
        result = reconcile_fleet(wanted, specs, backend, quota=fleet.quota, bases=bases, **waits)
    except (LoadSourceError, ClusterError) as exc:
        log.info("fast path skipped: %s", exc)
        return
    for m in fleet.members:
        if m.name not in wanted:
            continue
        applied = result.of(m.name)
        if applied.held:
            summary.held += 1
            log.info("fast path for %s: %s", m.name, applied.held)
            continue
        if applied.error or applied.result is None or not applied.result.ok:
            log.info("fast path for %s not applied: %s", m.name, applied.error or applied.result)
            continue
        summary.bursts += 1
        record(
            control.DecisionRecord(
                decided_at=at.isoformat(timespec="seconds"),
                forecast=last[m.name],
                decision=wanted[m.name],
                reconcile=applied.result,
                extra={
                    "spec": str(m.pipeline.source),
                    "fast_path": True,
                    "fleet": fleet_extra(fleet, wanted[m.name], applied),
                },
            )
        )
