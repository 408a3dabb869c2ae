"""The adaptation step on a short cadence inside one long task.

Airflow starts DAG runs a minute or more apart, but bursts need decisions every few seconds: in the
simulator the CPU example's bursty window goes from 0 % SLA violations at a 10-s cadence to 11 % at
60 s (see docs/going-live.md). This loop runs forecast -> plan -> reconcile -> record every
`adaptation.interval_s` for a fixed time, with the same functions the four-task DAG uses.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .adaptation import adaptation_of, decision, plan_step, reconcile_step, running
from .cluster.backends import ClusterError
from .cluster.reconcile import ReconcileResult
from .decisions import DecisionRecord
from .forecasting.base import FittedForecaster, Forecast
from .forecasting.sources import LoadSourceError
from .forecasting.step import forecast_for

log = logging.getLogger(__name__)


@dataclass
class LoopSummary:
    decisions: int = 0
    changes: int = 0
    skipped: list[str] = field(default_factory=list)  # why a tick made no decision
    failed_reconciles: int = 0

    def to_dict(self) -> dict:
        return {
            "decisions": self.decisions,
            "changes": self.changes,
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
    record: Callable[[DecisionRecord], None],
    quantile: float | None = None,
    policy: str = "ipa",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> LoopSummary:
    """Decide at once and then every `adaptation.interval_s` seconds while `duration_s` lasts.

    `read_rates(window_s)` returns the last `window_s` per-second rates. A tick whose load cannot be read
    (and has no fresh last forecast) is skipped and said so; a reconcile that fails is logged and the
    next tick tries again from what the cluster then runs."""
    adaptation = adaptation_of(spec_path)
    summary, last_good = LoopSummary(), None
    start = clock()
    tick = start
    while True:
        try:
            f = forecast_for(read_rates, fitted, now=now(), adaptation=adaptation, last_good=last_good)
        except LoadSourceError as exc:
            log.warning("no decision at %.0f s: %s", tick - start, exc)
            summary.skipped.append(f"{tick - start:.0f} s: {exc}")
        else:
            last_good = f if not f.note else last_good
            try:
                _decide(spec_path, f, backend, record, quantile, policy, summary, clock=clock, sleep=sleep)
            except ClusterError as exc:  # the cluster could not be read, or another writer holds it
                summary.failed_reconciles += 1
                log.warning("no decision applied at %.0f s: %s", tick - start, exc)
                summary.skipped.append(f"{tick - start:.0f} s: {exc}")
        tick += adaptation.spacing_s
        if tick - start >= duration_s:
            return summary
        sleep(max(0.0, tick - clock()))


def _decide(spec_path, f: Forecast, backend, record, quantile, policy, summary: LoopSummary, **waits) -> None:
    config, previous = running(spec_path, backend)
    out = plan_step(
        spec_path,
        f.to_dict(),
        running=config,
        quantile=quantile,
        policy=policy,
    )
    changed = out["plan"]["plan_id"] != previous
    # A reconcile that adds capacity waits for the rollout (on the loop's clock), as the DAG's task does.
    result = reconcile_step(spec_path, out["plan"], backend, **waits) if changed else None
    if result is not None and not result["ok"]:
        summary.failed_reconciles += 1
        log.warning("reconcile did not complete: %s", ReconcileResult.from_dict(result).summary())
    record(decision(spec_path, f.to_dict(), out["plan"], previous, result, reason=out["reason"]))
    summary.decisions += 1
    summary.changes += changed
