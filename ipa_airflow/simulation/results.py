"""What a simulated run reports: per-second series, request counts, and the log of its decisions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cluster.reconcile import ReconcileResult
from ..control import Decision


@dataclass
class SimResult:
    policy: str
    seconds: int
    sent: int
    completed: int
    late: int
    dropped: int
    latencies: np.ndarray  # end-to-end, completed requests
    per_second: dict[str, np.ndarray]  # load, planned, p99_s, accuracy, cost (each one value per second)
    reconfigurations: int
    solver_s: float
    wall_s: float
    sla_s: float
    plans: list[tuple[float, str]] = field(default_factory=list)  # (second, plan id) of each plan that took
    failed_reconciles: int = 0  # refused by the guardrails, or rolled back
    bursts: int = 0  # scale-ups the fast path made between decisions
    stage_latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # per stage: hop p50, p99

    @property
    def violation_rate(self) -> float:
        return (self.late + self.dropped) / self.sent if self.sent else 0.0

    def summary(self) -> dict:
        ps = self.per_second
        return {
            "policy": self.policy,
            "seconds": self.seconds,
            "sent": self.sent,
            "completed": self.completed,
            "late": self.late,
            "dropped": self.dropped,
            "sla_violation_rate": round(self.violation_rate, 5),
            "p99_latency_s": round(float(np.percentile(self.latencies, 99)), 4)
            if len(self.latencies)
            else None,
            "seconds_p99_within_sla": round(
                float(np.mean(np.nan_to_num(ps["p99_s"], nan=0.0) <= self.sla_s)), 4
            ),
            "mean_accuracy": round(float(np.mean(ps["accuracy"])), 5),
            "mean_cost": round(float(np.mean(ps["cost"])), 4),
            # The load the decisions planned for, over the load that came: what the forecasts asked for.
            # Cost follows it only in part, because the planner also spends headroom on more accurate
            # variants.
            "planned_over_load": round(float(np.mean(ps["planned"]) / max(np.mean(ps["load"]), 1e-9)), 4),
            # What the ready replicas carried (at max_utilisation), over the load that came: the capacity
            # side, with what whole replicas, the capacity hold and the fast path add to the forecast.
            "carried_over_load": round(float(np.mean(ps["carried"]) / max(np.mean(ps["load"]), 1e-9)), 4)
            if "carried" in ps
            else None,  # a live run samples cost, not capacity
            # What a plan sized for the next 20 s's peak must carry even with a perfect forecast: that
            # peak, every 10 s, over the load that came. planned / load cannot go below it.
            "peak_over_load": peak_over_load(ps["load"]),
            "bursts": self.bursts,
            "reconfigurations": self.reconfigurations,
            "failed_reconciles": self.failed_reconciles,
            "solver_s": round(self.solver_s, 3),
            "wall_s": round(self.wall_s, 3),
            "solver_share": round(self.solver_s / self.wall_s, 3) if self.wall_s else 0,
        }


def peak_over_load(load: np.ndarray, every_s: int = 10, horizon_s: int = 20) -> float | None:
    """The mean of the next `horizon_s` seconds' peak, at every `every_s`, over the mean load."""
    starts = range(0, len(load) - horizon_s + 1, every_s)
    if not len(starts) or np.mean(load) <= 0:
        return None
    return round(float(np.mean([load[t : t + horizon_s].max() for t in starts]) / np.mean(load)), 4)


class DecisionLog:
    """What the simulation reports of its decisions: the load planned for, the plans that took, how
    many reconciles changed the cluster (the first, which sets it up, is not a reconfiguration) and how
    many failed."""

    def __init__(self):
        self.planned_now = 0.0
        self.solver_s = 0.0
        self.plans: list[tuple[float, str]] = []
        self.reconfigurations = 0
        self.failed_reconciles = 0
        self.bursts = 0

    def burst(self, decision: Decision) -> None:
        """A fast-path scale-up between decisions (it plans for the measured demand, not a forecast)."""
        self.bursts += 1

    def decided(self, decision: Decision) -> None:
        self.solver_s += decision.solve_s
        self.planned_now = decision.load_rps

    def reconciled(self, now: float, decision: Decision, result: ReconcileResult) -> None:
        if not result.ok:
            self.failed_reconciles += 1
            return
        if self.plans and result.changed:
            self.reconfigurations += 1
        self.plans.append((now, decision.plan.plan_id))

    def failed(self, now: float, decision: Decision, why: str) -> None:
        self.failed_reconciles += 1
