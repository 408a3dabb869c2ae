"""Adaptation policies for the simulator. Each sees what a real controller would: the per-second rates
observed so far (never the future) and the plan in force, and returns the next plan.

- ipa / fa2-low / fa2-high / rim: forecast the next interval's peak (an upper quantile), then the
  program of the planning core under that policy.
- hpa: a Kubernetes-HPA-like replica scaler on one fixed variant at batch 1: target utilisation,
  15-s sync, 300-s scale-down stabilisation; what most users run today.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from ..forecasting.base import FittedForecaster
from ..forecasting.windows import recent_bins
from ..optimizer import _make_plan
from ..optimizer import plan as solve
from ..optimizer.evaluation import evaluate
from ..optimizer.model_data import ModelData
from ..optimizer.policies import POLICIES, Policy, policy_for
from ..plans import Plan
from ..profiles import ProfileSet
from ..spec import PipelineSpec


@dataclass
class Decision:
    plan: Plan
    planned_load: float
    solve_s: float


@dataclass
class PlannedPolicy:
    """Forecast, solve, and change the running plan only when it must or the change has held: a plan
    that no longer carries the forecast (or breaks the SLA) is replaced at once; any other change (a
    cheaper or more accurate plan) only after `stabilisation` decisions in a row propose it, as
    InfAdapter waits for four lower forecasts before scaling down. Every switch costs a start-up."""

    name: str
    spec: PipelineSpec
    profiles: ProfileSet
    forecaster: FittedForecaster
    quantile: float | None = 0.95
    interval_s: float = 10.0
    stabilisation: int = 4
    current: Plan | None = None
    _streak: int = 0

    def decide(self, now: float, observed: np.ndarray) -> Decision:
        X = recent_bins(observed, self.forecaster.window)
        point = (
            self.forecaster.predict(X)
            if self.quantile is None
            else self.forecaster.quantile(X, self.quantile)
        )
        load = float(point[0])
        proposal = solve(self.spec, self.profiles, load, policy=self.name)
        cur = self.current
        must = cur is None or not self._still_good(cur, load)
        if must or proposal.plan_id == cur.plan_id:
            self._streak = 0
        else:
            self._streak += 1
        if must or self._streak >= self.stabilisation:
            self.current, self._streak = proposal, 0
        return Decision(self.current, load, proposal.solve_time_s)

    def _still_good(self, plan: Plan, load: float) -> bool:
        rho = self.spec.limits.max_utilisation
        if any(s.capacity_rps * rho < load for s in plan.stages):
            return False
        fill = sum((s.batch - 1) / load for s in plan.stages if s.batch > 1) if load > 0 else 0.0
        return sum(s.latency_s for s in plan.stages) + fill <= self.spec.sla_s


@dataclass
class HpaPolicy:
    spec: PipelineSpec
    profiles: ProfileSet
    variant: dict[str, str]  # stage -> the one variant it runs
    target_utilisation: float = 0.7
    interval_s: float = 15.0
    stabilisation_s: float = 300.0
    replicas: dict[str, int] = field(default_factory=dict)
    _recommendations: dict[str, deque] = field(default_factory=dict)
    name: str = "hpa"

    def _plan(self, load: float) -> Plan:
        pinned = Policy("hpa", pinned_variants=self.variant, fixed_replicas=dict(self.replicas))
        data = ModelData.build(self.spec, self.profiles, max(load, 1e-6), pinned)
        stages = []
        for st in data.stages:
            opts = [
                o for o in st.options + st.too_slow if o.variant == self.variant[st.name] and o.batch == 1
            ]
            stages.append(opts[0])
        choice = tuple(replace(o, replicas=self.replicas.get(o.stage, o.replicas)) for o in stages)
        ev = evaluate(data, choice)
        return _make_plan(data, choice, ev, ev.feasible, ev.violations, "hpa", "hpa", 0.0, "")

    def decide(self, now: float, observed: np.ndarray) -> Decision:
        rate = float(np.mean(observed[-int(self.interval_s) :])) if len(observed) else 0.0
        for stage in self.spec.stages:
            v = next(x for x in stage.variants if x.name == self.variant[stage.name])
            profile = self.profiles.get(v.profile_id(v.shapes[0]))
            per_replica = profile.throughput_rps(1)
            current = self.replicas.get(stage.name) or max(
                1, math.ceil(rate / per_replica / self.target_utilisation)
            )
            utilisation = rate / (current * per_replica)
            desired = max(1, math.ceil(current * utilisation / self.target_utilisation))
            desired = min(desired, self.spec.limits.max_replicas)
            recs = self._recommendations.setdefault(stage.name, deque())
            recs.append((now, desired))
            while recs and recs[0][0] < now - self.stabilisation_s:
                recs.popleft()
            # Scale up at once; scale down only to the highest recommendation of the last 300 s.
            self.replicas[stage.name] = max(r for _, r in recs)
        return Decision(self._plan(rate), rate, 0.0)


def make_policy(
    name: str,
    spec: PipelineSpec,
    profiles: ProfileSet,
    forecaster: FittedForecaster,
    quantile: float | None = 0.95,
):
    if name == "hpa":
        heaviest = policy_for("fa2-high", spec).pinned_variants
        return HpaPolicy(spec, profiles, dict(heaviest))
    if name not in POLICIES:
        raise ValueError(f"unknown policy '{name}'; choose one of {', '.join([*POLICIES, 'hpa'])}")
    return PlannedPolicy(name, spec, profiles, forecaster, quantile)
