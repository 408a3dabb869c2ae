"""Adaptation policies for the simulator. Each sees what a real controller would: the per-second rates
observed so far (never the future) and the plan in force, and returns the next plan.

- ipa / fa2-low / fa2-high / rim / per-stage: forecast the next interval's peak (an upper quantile),
  then the program of the planning core under that policy.
- hpa: a Kubernetes-HPA-like replica scaler on one fixed variant at batch 1: target utilisation,
  15-s sync, 300-s scale-down stabilisation; what most users run today.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..forecasting.base import FittedForecaster
from ..forecasting.step import forecast_for
from ..optimizer import plan as solve
from ..optimizer import score_config
from ..optimizer.policies import POLICIES, Policy, policy_for
from ..plans import Plan
from ..profiles import ProfileSet
from ..spec import PipelineSpec
from ..switching import choose, held_load

# The planner's policies, and an HPA on one fixed variant.
SIMULATED_POLICIES = (*POLICIES, "hpa")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # second s of the trace is simulated as _EPOCH + s


@dataclass
class Decision:
    plan: Plan
    planned_load: float
    solve_s: float


@dataclass
class PlannedPolicy:
    """What the `ipa_adaptation` DAG does, every `adaptation.interval_s`: forecast (with the earlier
    forecasts its stabilisation compares), solve for the highest of them, then keep the running plan or
    switch as `switching.choose` decides. Every switch costs a start-up."""

    name: str
    spec: PipelineSpec
    profiles: ProfileSet
    forecaster: FittedForecaster
    quantile: float | None = None  # None: the spec's adaptation.quantile
    current: Plan | None = None
    # The trace second simulated time 0 falls on, so a seasonal forecaster knows the time of day. A
    # window pieced together from several places keeps the clock of its first piece.
    start_s: int = 0

    @property
    def interval_s(self) -> float:
        return self.spec.adaptation.interval_s

    def decide(self, now: float, observed: np.ndarray) -> Decision:
        a = self.spec.adaptation
        q = self.quantile or a.quantile
        last_second = _EPOCH + dt.timedelta(seconds=self.start_s + int(now) - 1)  # of `observed`
        f = forecast_for(
            lambda window_s: observed[-window_s:],
            self.forecaster,
            now=last_second,
            adaptation=a,
            quantiles=(q,),
        )
        load = held_load(f.held(q, a.stabilisation), a.stabilisation)
        proposal = solve(self.spec, self.profiles, load, policy=self.name)
        shares = policy_for(self.name, self.spec).budget_shares
        self.current = choose(self.current, proposal, load, self.spec, shares).plan
        return Decision(self.current, load, proposal.solve_time_s)


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
        config = []
        for stage in self.spec.stages:
            v = next(x for x in stage.variants if x.name == self.variant[stage.name])
            shape = v.shapes[0]
            config.append(
                (
                    stage.name,
                    v.name,
                    shape.hardware,
                    shape.resources.key,
                    shape.dtype,
                    1,
                    self.replicas.get(stage.name, 1),
                )
            )
        return score_config(self.spec, self.profiles, load, config, policy=Policy("hpa"))

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
    quantile: float | None = None,
    start_s: int = 0,
):
    if name == "hpa":
        heaviest = policy_for("fa2-high", spec).pinned_variants
        return HpaPolicy(spec, profiles, dict(heaviest))
    if name not in POLICIES:
        raise ValueError(f"unknown policy '{name}'; choose one of {', '.join(SIMULATED_POLICIES)}")
    return PlannedPolicy(name, spec, profiles, forecaster, quantile, start_s=start_s)
