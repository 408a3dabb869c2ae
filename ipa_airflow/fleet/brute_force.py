"""Exhaustive reference for small fleets: every SLA-meeting plan of every pipeline (no Pareto pruning),
every combination across pipelines, the best that fits. It shares nothing with pareto.py and solve.py
but the floors a pipeline that misses its SLA gets (`floor_choices`, a definition), so
agreement with it is evidence that the fleet program is exact."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..optimizer.model_data import ModelData
from ..optimizer.objective import score_choice
from .pareto import option_usage, plan_usage
from .solve import FleetInput, floor_choices

DEFAULT_LIMIT = 5_000_000


class TooLarge(ValueError):
    pass


@dataclass(frozen=True)
class FleetBruteForce:
    misses: float  # weight of the pipelines that miss their SLA (the first thing minimised)
    objective: float | None  # weighted sum of objectives; None when nothing fits
    combinations: int


def every_plan(
    data: ModelData, pools: Sequence[str], *, limit: int = DEFAULT_LIMIT
) -> tuple[np.ndarray, np.ndarray]:
    """(usage per pool, objective) of every plan that meets the SLA (and max_cost), as arrays."""
    data = data.restricted()
    total = math.prod(len(st.options) for st in data.stages)
    if total > limit:
        raise TooLarge(f"{total} plans is over the brute-force limit of {limit}")
    d = len(pools)
    product = data.accuracy_method == "product"
    lat, pen, cost = np.zeros(1), np.zeros(1), np.zeros(1)
    acc = np.ones(1) if product else np.zeros(1)
    use = np.zeros((1, d))
    for st in data.stages:
        o_lat = np.array([o.total_latency_s for o in st.options])
        o_acc = np.array([o.accuracy for o in st.options])
        o_pen = np.array([data.penalty(o) for o in st.options])
        o_cost = np.array([o.cost for o in st.options])
        o_use = np.array([option_usage(o, pools) for o in st.options]).reshape(len(st.options), d)
        lat = (lat[:, None] + o_lat[None, :]).ravel()
        acc = (acc[:, None] * o_acc[None, :] if product else acc[:, None] + o_acc[None, :]).ravel()
        pen = (pen[:, None] + o_pen[None, :]).ravel()
        cost = (cost[:, None] + o_cost[None, :]).ravel()
        use = (use[:, None, :] + o_use[None, :, :]).reshape(-1, d)
    ok = lat <= data.latency_budget_s + 1e-9
    if data.max_cost is not None:
        ok &= cost <= data.max_cost + 1e-9
    return use[ok], (data.accuracy_weight * acc - pen)[ok]


def solve(
    inputs: Sequence[FleetInput], quota: Mapping[str, float], *, limit: int = DEFAULT_LIMIT
) -> FleetBruteForce:
    pools = tuple(quota)
    cap = np.array([quota[p] for p in pools], dtype=float)
    use = np.zeros((1, len(pools)))
    value = np.zeros(1)
    misses = np.zeros(1)
    total = 1
    for inp in inputs:
        p_use, p_val = every_plan(inp.data, pools, limit=limit)
        floors = floor_choices(inp.data, pools, quota)
        p_use = np.vstack([p_use, np.array([plan_usage(f, pools) for f in floors])])
        p_val = np.concatenate([p_val, [score_choice(inp.data, f).objective for f in floors]])
        p_miss = np.zeros(len(p_val))
        p_miss[len(p_val) - len(floors) :] = inp.weight
        total *= len(p_val)
        if len(value) * len(p_val) > limit:
            raise TooLarge(f"over {limit} combinations")
        use = (use[:, None, :] + p_use[None, :, :]).reshape(-1, len(pools))
        value = (value[:, None] + inp.weight * p_val[None, :]).ravel()
        misses = (misses[:, None] + p_miss[None, :]).ravel()
        # Usage only grows as pipelines are added: a combination over the quota stays over it.
        fits = (use <= cap + 1e-9).all(axis=1)
        use, value, misses = use[fits], value[fits], misses[fits]
    if len(value) == 0:
        return FleetBruteForce(math.inf, None, total)
    least = misses.min()
    best = value[misses <= least + 1e-7].max()
    return FleetBruteForce(float(least), float(best), total)
