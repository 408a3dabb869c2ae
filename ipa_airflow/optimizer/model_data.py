"""The data of one adaptation step's program: every (variant, shape, batch) option of every stage, priced.

Pure data, built once from a spec, its profiles and the predicted load; every solver (MILP, chain search,
brute force) reads the same `ModelData`, so they can be checked against each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..profiles import ProfileSet
from ..spec import PipelineSpec
from .policies import Policy

TOLERANCE = 1e-7  # numerical slack of every constraint check (seconds, req/s, cost)


@dataclass(frozen=True)
class Option:
    """One way to run a stage: a variant on a shape at a batch size, and what that implies at the load."""

    stage: str
    variant: str
    hardware: str
    resources: str  # 'cpu=2', 'gpu=1'
    dtype: str
    batch: int
    latency_s: float  # one batch, at the spec's latency percentile
    queue_s: float  # time to fill a batch: (batch - 1) / load
    throughput_rps: float  # of one replica
    accuracy: float  # score used by the objective (fraction or rank)
    unit_cost: float  # cost of one replica
    replicas: int  # fewest replicas that cover the load (or the fixed count under RIM)

    @property
    def total_latency_s(self) -> float:
        return self.latency_s + self.queue_s

    @property
    def cost(self) -> float:
        return self.replicas * self.unit_cost

    @property
    def capacity_rps(self) -> float:
        return self.replicas * self.throughput_rps


@dataclass(frozen=True)
class StageData:
    name: str
    options: tuple[Option, ...]
    # Options the load rules out before any solver runs: they would need more than max_replicas.
    too_slow: tuple[Option, ...] = ()


@dataclass(frozen=True)
class ModelData:
    pipeline: str
    load_rps: float
    sla_s: float
    alpha: float
    beta: float
    gamma: float
    accuracy_method: str  # sum | average | product
    max_replicas: int
    max_cost: float | None
    latency_budget_s: float  # what plans may use: the SLA less the spec's latency_headroom
    stages: tuple[StageData, ...]
    policy: Policy = field(default_factory=Policy)

    @property
    def accuracy_weight(self) -> float:
        """alpha, divided by the stage count for `average` so every method is a sum or product of scores."""
        return self.alpha / len(self.stages) if self.accuracy_method == "average" else self.alpha

    def penalty(self, option: Option) -> float:
        """The part of the objective one option subtracts: beta * cost + gamma * batch."""
        return self.beta * option.cost + self.gamma * option.batch

    def stage_budget_s(self, stage: str) -> float | None:
        """The latency a stage may use on its own under the policy (per-stage), else None."""
        share = self.policy.budget_shares.get(stage)
        return None if share is None else share * self.latency_budget_s

    def restricted(self, *, stage_budgets: bool = True) -> ModelData:
        """The same data with the policy applied as option filters (for the non-MILP solvers)."""
        stages = []
        for st in self.stages:
            pinned = self.policy.pinned_variants.get(st.name)
            fixed = self.policy.fixed_replicas.get(st.name)
            budget = self.stage_budget_s(st.name) if stage_budgets else None
            keep = []
            for o in st.options + st.too_slow:
                if pinned is not None and o.variant != pinned:
                    continue
                if budget is not None and o.total_latency_s > budget + TOLERANCE:
                    continue
                if fixed is not None:
                    if fixed > self.max_replicas or fixed * o.throughput_rps < self.load_rps:
                        continue
                    o = replace(o, replicas=fixed)
                elif o.replicas > self.max_replicas:
                    continue
                keep.append(o)
            stages.append(StageData(st.name, tuple(keep)))
        return replace(self, stages=tuple(stages), policy=Policy(name=self.policy.name))

    @classmethod
    def build(cls, spec: PipelineSpec, profiles: ProfileSet, load_rps: float, policy: Policy) -> ModelData:
        if not math.isfinite(load_rps) or load_rps < 0:
            raise ValueError(f"load must be a non-negative number of requests per second, got {load_rps}")
        pct = spec.latency_percentile
        stages = []
        for stage in spec.stages:
            scores = spec.accuracy_scores(stage)
            feasible: list[Option] = []
            too_slow: list[Option] = []
            for variant in stage.variants:
                for shape in variant.shapes:
                    profile = profiles.get(
                        variant.profile_id(shape), wanted_by=f"{stage.name}/{variant.name}"
                    )
                    unit_cost = spec.replica_cost(shape.resources)
                    for b in spec.batch_sizes:
                        if profile.is_extrapolated(b):
                            continue  # never trust a curve past the largest measured batch
                        h = profile.throughput_rps(b)
                        option = Option(
                            stage=stage.name,
                            variant=variant.name,
                            hardware=shape.hardware,
                            resources=shape.resources.key,
                            dtype=shape.dtype,
                            batch=b,
                            latency_s=profile.latency_ms(b, pct) / 1000.0,
                            queue_s=_fill_time(b, load_rps),
                            throughput_rps=h,
                            accuracy=scores[variant.name],
                            unit_cost=unit_cost,
                            replicas=_replicas_for(load_rps, h * spec.limits.max_utilisation),
                        )
                        (feasible if option.replicas <= spec.limits.max_replicas else too_slow).append(option)
            stages.append(StageData(stage.name, tuple(feasible), tuple(too_slow)))
        return cls(
            pipeline=spec.name,
            load_rps=float(load_rps),
            sla_s=spec.sla_s,
            latency_budget_s=spec.latency_budget_s,
            alpha=spec.objective.alpha,
            beta=spec.objective.beta,
            gamma=spec.objective.gamma,
            accuracy_method=spec.objective.accuracy,
            max_replicas=spec.limits.max_replicas,
            max_cost=spec.limits.max_cost,
            stages=tuple(stages),
            policy=policy,
        )


def _replicas_for(load_rps: float, throughput_rps: float) -> int:
    # Never zero: a stage scaled to zero drops every request that still arrives.
    return max(1, math.ceil(load_rps / throughput_rps - 1e-9))


def _fill_time(batch: int, load_rps: float) -> float:
    if batch == 1:
        return 0.0
    return (batch - 1) / load_rps if load_rps > 0 else math.inf
