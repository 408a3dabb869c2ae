"""Adaptation policies for the simulator. Each sees what a real controller would: the per-second rates
observed so far (never the future) and, through the control context, what the cluster runs; each is a
`forecast` (what it makes of the load) and a `decide(ctx) -> (Decision, state)` over the same context the
Airflow tasks and the loop operator decide on.

- ipa / fa2-low / fa2-high / rim / per-stage: forecast the next interval's peak (an upper quantile),
  then `control.decide` under that policy: exactly the decision the `ipa_adaptation` DAG makes.
- hpa: a Kubernetes-HPA-like replica scaler on one fixed variant at batch 1: target utilisation (70 %, or
  the spec's `max_utilisation` when lower), 15-s sync, 300-s scale-down stabilisation; what most users
  run today.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..control import Context, Decision, decide
from ..forecasting.base import FittedForecaster, Forecast
from ..forecasting.step import forecast_for
from ..optimizer import score_config
from ..optimizer.policies import POLICIES, Policy, policy_for
from ..plans import Plan
from ..profiles import ProfileSet
from ..spec import PipelineSpec

# The planner's policies, and an HPA on one fixed variant.
SIMULATED_POLICIES = (*POLICIES, "hpa")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # second s of the trace is simulated as EPOCH + s


def trace_time(second: float) -> dt.datetime:
    """The wall-clock time a second of the trace stands for (a seasonal forecaster reads its hour)."""
    return EPOCH + dt.timedelta(seconds=second)


@dataclass(frozen=True)
class PlannedPolicy:
    """What the `ipa_adaptation` DAG does, every `adaptation.interval_s`: forecast (with the earlier
    forecasts its stabilisation compares), then `control.decide`."""

    name: str
    spec: PipelineSpec
    forecaster: FittedForecaster
    quantile: float | None = None  # None: the spec's adaptation.quantile
    # The trace second simulated time 0 falls on, so a seasonal forecaster knows the time of day. A
    # window pieced together from several places keeps the clock of its first piece.
    start_s: int = 0

    @property
    def interval_s(self) -> float:
        return self.spec.adaptation.interval_s

    @property
    def fast_path(self) -> bool:
        """Whether the simulator runs the fast path (`control.burst`) between this policy's decisions: for
        ipa only, as in the loop operator; the baselines keep the rule that defines them."""
        return self.name == "ipa" and self.spec.adaptation.burst_window_s > 0

    def forecast(self, now: float, observed: np.ndarray) -> Forecast:
        a = self.spec.adaptation
        return forecast_for(
            lambda window_s: observed[-window_s:],
            self.forecaster,
            now=trace_time(self.start_s + int(now) - 1),  # the last second of `observed`
            adaptation=a,
            quantiles=(self.quantile or a.quantile,),
        )

    def decide(self, ctx: Context) -> tuple[Decision, Any]:
        return decide(ctx)


@dataclass(frozen=True)
class HpaState:
    """Per stage, the recommendations of the stabilisation window: (time s, replicas), oldest first."""

    recommendations: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class HpaPolicy:
    """Kubernetes' HPA algorithm over the same context as the planner: replicas from the measured rate
    and what runs (`ctx.running`), the scale-down window carried in the state it hands back."""

    spec: PipelineSpec
    profiles: ProfileSet
    variant: Mapping[str, str]  # stage -> the one variant it runs
    target_utilisation: float = 0.7
    interval_s: float = 15.0
    stabilisation_s: float = 300.0
    start_s: int = 0
    name: str = "hpa"
    quantile: float | None = None  # an HPA reacts to the rate it measured, no quantile

    def forecast(self, now: float, observed: np.ndarray) -> Forecast:
        """No forecast: the mean rate over the last sync period, as the metrics pipeline reports it."""
        rate = float(np.mean(observed[-int(self.interval_s) :])) if len(observed) else 0.0
        issued = trace_time(self.start_s + now).isoformat(timespec="seconds")
        return Forecast("observed-mean", int(self.interval_s), rate, {}, issued)

    def decide(self, ctx: Context) -> tuple[Decision, HpaState]:
        rate = ctx.forecast.point
        t = ctx.now.timestamp()
        running = {c[0]: int(c[6]) for c in ctx.running or ()}
        state = ctx.state or HpaState()
        recommendations, replicas = {}, {}
        for stage in self.spec.stages:
            v = next(x for x in stage.variants if x.name == self.variant[stage.name])
            per_replica = self.profiles.get(v.profile_id(v.shapes[0])).throughput_rps(1)
            current = running.get(stage.name) or max(
                1, math.ceil(rate / per_replica / self.target_utilisation)
            )
            utilisation = rate / (current * per_replica)
            desired = min(
                max(1, math.ceil(current * utilisation / self.target_utilisation)),
                self.spec.limits.max_replicas,
            )
            # Scale up at once; scale down only to the highest recommendation of the last 300 s.
            window = (*state.recommendations.get(stage.name, ()), (t, desired))
            recommendations[stage.name] = tuple((s, r) for s, r in window if s >= t - self.stabilisation_s)
            replicas[stage.name] = max(r for _, r in recommendations[stage.name])
        plan = self._plan(rate, replicas)
        decision = Decision(
            plan, ctx.previous_plan_id, "replicas for the target utilisation", plan.plan_id, rate
        )
        return decision, HpaState(recommendations)

    def _plan(self, load: float, replicas: Mapping[str, int]) -> Plan:
        config = []
        for stage in self.spec.stages:
            v = next(x for x in stage.variants if x.name == self.variant[stage.name])
            shape = v.shapes[0]
            key = (
                stage.name,
                v.name,
                shape.hardware,
                shape.resources.key,
                shape.dtype,
                1,
                replicas[stage.name],
            )
            config.append(key)
        return score_config(self.spec, self.profiles, load, config, policy=Policy("hpa"))


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
        # The HPA's usual 70 % target, but never above the spec's utilisation cap, which every other policy
        # plans under: a spec that keeps half of each replica free (the IPA paper's audio and NLP pipelines)
        # holds the HPA to it too.
        target = min(0.7, spec.limits.max_utilisation)
        return HpaPolicy(spec, profiles, dict(heaviest), target_utilisation=target, start_s=start_s)
    if name not in POLICIES:
        raise ValueError(f"unknown policy '{name}'; choose one of {', '.join(SIMULATED_POLICIES)}")
    return PlannedPolicy(name, spec, forecaster, quantile, start_s=start_s)
