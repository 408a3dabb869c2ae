"""Score a chosen set of options independently of any solver: the objective's terms and the constraints.

Every solver's answer goes through `score_choice`, so a plan's reported numbers never come from the solver's
own bookkeeping, and `check` re-verifies feasibility after solving.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .model_data import TOLERANCE, ModelData, Option


@dataclass(frozen=True)
class Evaluation:
    accuracy: float  # pipeline accuracy as the spec defines it (sum, average or product of scores)
    cost: float
    batch_sum: int
    latency_s: float  # end to end: batch latencies plus batch-filling times
    objective: float
    violations: tuple[str, ...]  # names of the constraints the choice breaks

    @property
    def feasible(self) -> bool:
        return not self.violations


def pipeline_accuracy(method: str, scores: Sequence[float]) -> float:
    if method == "product":
        return math.prod(scores)
    total = math.fsum(scores)
    return total / len(scores) if method == "average" else total


def score_choice(data: ModelData, choice: Sequence[Option]) -> Evaluation:
    accuracy = pipeline_accuracy(data.accuracy_method, [o.accuracy for o in choice])
    cost = math.fsum(o.cost for o in choice)
    batch_sum = sum(o.batch for o in choice)
    latency = math.fsum(o.total_latency_s for o in choice)
    objective = data.alpha * accuracy - data.beta * cost - data.gamma * batch_sum
    violations = []
    if latency > data.latency_budget_s + TOLERANCE:
        violations.append("latency_sla")
    for o in choice:
        if o.capacity_rps + TOLERANCE < data.load_rps:
            violations.append(f"throughput[{o.stage}]")
        if o.replicas > data.max_replicas:
            violations.append(f"max_replicas[{o.stage}]")
    if data.max_cost is not None and cost > data.max_cost + TOLERANCE:
        violations.append("max_cost")
    for o in choice:
        pinned = data.policy.pinned_variants.get(o.stage)
        if pinned is not None and o.variant != pinned:
            violations.append(f"pinned_variant[{o.stage}]")
        fixed = data.policy.fixed_replicas.get(o.stage)
        if fixed is not None and o.replicas != fixed:
            violations.append(f"fixed_replicas[{o.stage}]")
        budget = data.stage_budget_s(o.stage)
        if budget is not None and o.total_latency_s > budget + TOLERANCE:
            violations.append(f"stage_budget[{o.stage}]")
    return Evaluation(accuracy, cost, batch_sum, latency, objective, tuple(violations))
