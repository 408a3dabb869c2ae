"""Exhaustive reference solver for small instances: every combination of stage options, vectorised.

It shares nothing with the other solvers but `ModelData.restricted()` (policies as option filters), so
agreement with it is evidence that the MILP and the chain search are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model_data import ModelData, Option

DEFAULT_LIMIT = 2_000_000


class TooLarge(ValueError):
    pass


@dataclass(frozen=True)
class BruteForceResult:
    feasible: bool
    choice: tuple[Option, ...] | None
    objective: float | None
    combinations: int


def combinations(data: ModelData) -> int:
    return math.prod(len(st.options) for st in data.restricted().stages)


def solve(data: ModelData, *, limit: int = DEFAULT_LIMIT) -> BruteForceResult:
    data = data.restricted()
    total = math.prod(len(st.options) for st in data.stages)
    if total > limit:
        raise TooLarge(f"{total} combinations is over the brute-force limit of {limit}")
    if total == 0:
        return BruteForceResult(False, None, None, 0)
    product = data.accuracy_method == "product"
    lat = np.zeros(1)
    acc = np.ones(1) if product else np.zeros(1)
    cost = np.zeros(1)
    pen = np.zeros(1)
    idx = np.zeros((1, 0), dtype=np.int64)
    for st in data.stages:
        o_lat = np.array([o.total_latency_s for o in st.options])
        o_acc = np.array([o.accuracy for o in st.options])
        o_cost = np.array([o.cost for o in st.options])
        o_pen = np.array([data.penalty(o) for o in st.options])
        k = len(st.options)
        lat = (lat[:, None] + o_lat[None, :]).ravel()
        acc = (acc[:, None] * o_acc[None, :] if product else acc[:, None] + o_acc[None, :]).ravel()
        cost = (cost[:, None] + o_cost[None, :]).ravel()
        pen = (pen[:, None] + o_pen[None, :]).ravel()
        idx = np.concatenate([np.repeat(idx, k, axis=0), np.tile(np.arange(k), len(idx))[:, None]], axis=1)
    ok = lat <= data.latency_budget_s + 1e-9
    if data.max_cost is not None:
        ok &= cost <= data.max_cost + 1e-9
    if not ok.any():
        return BruteForceResult(False, None, None, total)
    value = np.where(ok, data.accuracy_weight * acc - pen, -np.inf)
    best = int(np.argmax(value))
    choice = tuple(st.options[int(i)] for st, i in zip(data.stages, idx[best], strict=True))
    return BruteForceResult(True, choice, float(value[best]), total)
