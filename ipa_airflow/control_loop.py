"""The adaptation step on a short cadence inside one long task.

Airflow starts DAG runs a minute or more apart, but bursts need decisions every few seconds: in the
simulator the CPU example's bursty window goes from 1.7 % SLA violations at a 10-s cadence to 11 % at
60 s (see docs/going-live.md). This loop runs forecast -> decide -> reconcile -> record every
`adaptation.interval_s` for a fixed time, with the decision the four-task DAG and the simulator make
(`control`); the pipeline is loaded once per decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import control
from .cluster.backends import ClusterError
from .cluster.reconcile import GuardrailError
from .forecasting.base import FittedForecaster, Forecast
from .forecasting.sources import LoadSourceError
from .forecasting.step import forecast_for
from .pipelines import Pipeline, load_pipeline
from .profiles import ProfileError
from .spec import SpecError, load_spec

log = logging.getLogger(__name__)


@dataclass
class LoopSummary:
    decisions: int = 0
    changes: int = 0
    skipped: list[str] = field(default_factory=list)  # why a tick made no decision
    failed_reconciles: int = 0
    bursts: int = 0  # scale-ups the fast path made between decisions

    def to_dict(self) -> dict:
        return {
            "decisions": self.decisions,
            "changes": self.changes,
            "bursts": self.bursts,
            "skipped": self.skipped,
            "failed_reconciles": self.failed_reconciles,
        }


def run_loop(
    spec_path: str,
    *,
    read_rates: Callable[[int], np.ndarray],
    fitted: FittedForecaster,
    backend,
    duration_s: float,
    record: Callable[[control.DecisionRecord], None],
    quantile: float | None = None,
    policy: str = "ipa",
    load: Callable[[dt.datetime], Pipeline] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> LoopSummary:
    """Decide at once and then every `adaptation.interval_s` seconds while `duration_s` lasts.

    `read_rates(window_s)` returns the last `window_s` per-second rates. A tick whose load cannot be read
    (and has no fresh last forecast) is skipped and said so; a reconcile that fails (or that the
    guardrails refuse) is logged and the next tick tries again from what the cluster then runs. A
    reconcile that outlasts the interval delays the next decision (`control.next_tick`). Between
    decisions, every second, the fast path (`control.burst`) adds replicas of what runs when the rate
    over the spec's `burst_window_s` overloads it. `load(now)` gives the pipeline of each decision (the
    operator's reads MLflow, kept between decisions); default: the spec's files."""
    summary, last_good, pipeline, last = LoopSummary(), None, None, None
    spacing_s = load_spec(spec_path).adaptation.spacing_s
    start = clock()
    tick = start
    while True:
        at = now()
        try:
            pipeline = load(at) if load is not None else load_pipeline(spec_path)
            spacing_s = pipeline.spec.adaptation.spacing_s
            f = forecast_for(
                read_rates, fitted, now=at, adaptation=pipeline.spec.adaptation, last_good=last_good
            )
        except (ProfileError, SpecError, LoadSourceError) as exc:
            # MLflow down with nothing kept, no version that can run, no load: this tick only.
            log.warning("no decision at %.0f s: %s", tick - start, exc)
            summary.skipped.append(f"{tick - start:.0f} s: {exc}")
        else:
            last_good = f if not f.note else last_good
            last = f
            try:
                _step(
                    pipeline,
                    f,
                    backend,
                    record,
                    quantile,
                    policy,
                    summary,
                    now(),
                    # The measured-rate floor and hold come with the fast path, which is ipa's.
                    measured_rates(pipeline, read_rates) if policy == "ipa" else (None, None),
                    clock=clock,
                    sleep=sleep,
                )
            except (ClusterError, GuardrailError) as exc:  # unreadable or busy cluster; a refused plan
                summary.failed_reconciles += 1
                log.warning("no decision applied at %.0f s: %s", tick - start, exc)
                summary.skipped.append(f"{tick - start:.0f} s: {exc}")
        tick = control.next_tick(tick, spacing_s, clock())
        if tick - start >= duration_s:
            return summary
        # Between decisions, once a second: the fast path, on the last pipeline loaded.
        while tick - clock() > 1.0 and clock() - start < duration_s:
            sleep(1.0)
            if pipeline is not None and last is not None:
                ctx = control.context(pipeline, last, backend, now=now(), policy=policy, quantile=quantile)
                _burst(ctx, read_rates, record, summary, backend, clock=clock, sleep=sleep)
        if clock() - start >= duration_s:  # a fast-path rollout outlasted the run
            return summary
        sleep(max(0.0, tick - clock()))


def measured_rates(pipeline, read_rates) -> tuple[float | None, float | None]:
    """The rate over the fast path's window now, and the highest such rate over the capacity hold
    (`stabilisation` intervals): (None, None) when the fast path is off or the load cannot be read."""
    a = pipeline.spec.adaptation
    window = a.burst_window_s
    if window == 0:
        return None, None
    try:
        rates = np.asarray(read_rates(window + int(a.stabilisation * a.spacing_s)), float)
    except LoadSourceError:
        return None, None
    if len(rates) < window or not np.isfinite(rates).all():
        return None, None
    means = np.convolve(rates, np.ones(window), mode="valid") / window
    return float(means[-1]), float(means.max())


def _burst(ctx: control.Context, read_rates, record, summary, backend, **waits) -> None:
    """One look of the fast path: the mean rate over the burst window against what runs. A load or
    cluster that cannot be read now is left to the next decision, which says so."""
    rate, _ = measured_rates(ctx.pipeline, read_rates)
    if rate is None:
        return
    pipeline = ctx.pipeline
    try:
        decision = control.burst(ctx, control.Measured(rate))
        if decision is None:
            return
        result = control.apply(decision, pipeline.spec, backend, base=Path(pipeline.source).parent, **waits)
    except (LoadSourceError, ClusterError, GuardrailError) as exc:
        log.info("fast path skipped: %s", exc)
        return
    if result is not None and result.ok:
        summary.bursts += 1
    record(
        control.DecisionRecord(
            decided_at=ctx.now.isoformat(timespec="seconds"),
            forecast=ctx.forecast,
            decision=decision,
            reconcile=result,
            extra={"spec": str(pipeline.source), "fast_path": True},
        )
    )


def _step(
    pipeline,
    f: Forecast,
    backend,
    record,
    quantile,
    policy,
    summary,
    at: dt.datetime,
    measured: tuple[float | None, float | None] = (None, None),
    **waits,
) -> None:
    ctx = control.context(
        pipeline,
        f,
        backend,
        now=at,
        policy=policy,
        quantile=quantile,
        measured_rps=measured[0],
        measured_peak_rps=measured[1],
    )
    decision, _ = control.decide(ctx)
    # A reconcile that adds capacity waits for the rollout (on the loop's clock), as the DAG's task does.
    result = control.apply(decision, pipeline.spec, backend, base=Path(pipeline.source).parent, **waits)
    if result is not None and not result.ok:
        summary.failed_reconciles += 1
        log.warning("reconcile did not complete: %s", result.summary())
    record(
        control.DecisionRecord(
            decided_at=at.isoformat(timespec="seconds"),
            forecast=f,
            decision=decision,
            reconcile=result,
            extra={"spec": str(pipeline.source)},
        )
    )
    summary.decisions += 1
    summary.changes += decision.changed
