"""Exact search over the chain of stages, for every accuracy method (the fast path for `product`).

The SLA is one additive budget and the stages form a chain, so the program can be solved stage by stage
over *labels*: partial pipelines (latency used L, accuracy so far P, penalty so far C). A label can be
dropped without losing the optimum when

- its latency plus the fastest completion breaks the SLA;
- an upper bound on its best completion is below a known feasible value; or
- another label dominates it: no more latency, and a value at least as high for *every* completion.
  A completion multiplies P by some R in [R_min, R_max] (product) or adds to it (sum), so the value
  alpha*P*R - C is linear in R and checking both ends suffices: domination is a comparison of
  (L, u = aP R_min - C, w = aP R_max - C), a 2-D staircase query once the labels are sorted by L.

Nothing here is approximate; `tests/` checks it against the MILP and brute force on random instances.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np

from .model_data import ModelData, Option

_BEAM = 24


@dataclass(frozen=True)
class ChainResult:
    feasible: bool
    choice: tuple[Option, ...] | None
    objective: float | None
    labels: int  # labels kept over all stages (a measure of the search's work)
    solve_s: float


@dataclass(frozen=True)
class StageArrays:
    options: tuple[Option, ...]
    lat: np.ndarray
    acc: np.ndarray
    pen: np.ndarray


def _prune_dominated_options(data: ModelData, options: tuple[Option, ...]) -> tuple[Option, ...]:
    """Within a stage, drop options another beats on latency, accuracy and penalty at once."""
    if len(options) <= 1:
        return options
    lat = np.array([o.total_latency_s for o in options])
    acc = np.array([o.accuracy for o in options])
    pen = np.array([data.penalty(o) for o in options])
    no_worse = (
        (lat[None, :] <= lat[:, None]) & (acc[None, :] >= acc[:, None]) & (pen[None, :] <= pen[:, None])
    )
    better = (lat[None, :] < lat[:, None]) | (acc[None, :] > acc[:, None]) | (pen[None, :] < pen[:, None])
    # i is dropped if some j is no worse everywhere and better somewhere, or is an identical earlier twin.
    twin = no_worse & ~better & (np.arange(len(options))[None, :] < np.arange(len(options))[:, None])
    dominated = ((no_worse & better) | twin).any(axis=1)
    return tuple(options[i] for i in np.flatnonzero(~dominated))


def _stages(data: ModelData) -> list[StageArrays]:
    out = []
    for st in data.stages:
        opts = _prune_dominated_options(data, st.options)
        out.append(
            StageArrays(
                opts,
                np.array([o.total_latency_s for o in opts], dtype=float),
                np.array([o.accuracy for o in opts], dtype=float),
                np.array([data.penalty(o) for o in opts], dtype=float),
            )
        )
    return out


class Bounds:
    """What the stages after k can still add: fastest latency, accuracy range, and an upper bound."""

    def __init__(self, stages: list[StageArrays], product: bool, weight: float):
        n = len(stages)
        self.product = product
        self.weight = weight
        self.min_lat = np.zeros(n + 1)
        self.r_min = np.full(n + 1, 1.0 if product else 0.0)
        self.r_max = self.r_min.copy()
        # Upper bound of the completion after stage k, ignoring the SLA. Sum: per-stage best values add up.
        # Product: keep the (R, C) Pareto front of the suffix and take the best point for a label's P.
        self.best_add = np.zeros(n + 1)
        self.front: list[tuple[np.ndarray, np.ndarray]] = [(np.array([1.0]), np.array([0.0]))] * (n + 1)
        for k in range(n - 1, -1, -1):
            st = stages[k]
            self.min_lat[k] = self.min_lat[k + 1] + st.lat.min()
            if product:
                self.r_min[k] = self.r_min[k + 1] * st.acc.min()
                self.r_max[k] = self.r_max[k + 1] * st.acc.max()
                r_next, c_next = self.front[k + 1]
                r = (st.acc[:, None] * r_next[None, :]).ravel()
                c = (st.pen[:, None] + c_next[None, :]).ravel()
                self.front[k] = _front_2d(r, c)
            else:
                self.r_min[k] = self.r_min[k + 1] + st.acc.min()
                self.r_max[k] = self.r_max[k + 1] + st.acc.max()
                self.best_add[k] = self.best_add[k + 1] + (weight * st.acc - st.pen).max()

    def upper_bound(self, k: int, acc: np.ndarray, pen: np.ndarray) -> np.ndarray:
        """Best value any completion after stage k-1 could give labels (acc, pen), ignoring latency."""
        if not self.product:
            return self.weight * acc - pen + self.best_add[k]
        r, c = self.front[k]
        return (self.weight * acc[:, None] * r[None, :] - c[None, :]).max(axis=1) - pen

    def extremes(self, k: int, acc: np.ndarray, pen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The label's value at the worst and best completion accuracy (u, w)."""
        if not self.product:
            v = self.weight * acc - pen
            return v, v
        return self.weight * acc * self.r_min[k] - pen, self.weight * acc * self.r_max[k] - pen


def _front_2d(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points not beaten on both higher r and lower c."""
    order = np.lexsort((c, -r))  # r descending, then c ascending
    r, c = r[order], c[order]
    keep = c < np.concatenate([[np.inf], np.minimum.accumulate(c)[:-1]])
    return r[keep], c[keep]


def _nondominated(lat: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Indices of labels no other label dominates in (lower lat, higher u, higher w)."""
    order = np.lexsort((-w, -u, lat))
    if np.array_equal(u, w):
        # One value per label: dominated unless strictly above every label with no more latency.
        best_before = np.concatenate([[-np.inf], np.maximum.accumulate(u[order])[:-1]])
        return order[u[order] > best_before]
    us: list[float] = []  # staircase: u ascending, w descending
    ws: list[float] = []
    kept = []
    for i, ui, wi in zip(order.tolist(), u[order].tolist(), w[order].tolist(), strict=True):
        pos = bisect_left(us, ui)
        if pos < len(us) and ws[pos] >= wi:
            continue
        kept.append(i)
        hi = bisect_right(us, ui)
        lo = hi
        while lo > 0 and ws[lo - 1] <= wi:
            lo -= 1
        us[lo:hi] = [ui]
        ws[lo:hi] = [wi]
    return np.array(kept, dtype=np.int64)


def _search(data: ModelData, stages: list[StageArrays], bounds: Bounds, lower_bound: float, beam: int | None):
    product = data.accuracy_method == "product"
    lat = np.zeros(1)
    acc = np.ones(1) if product else np.zeros(1)
    pen = np.zeros(1)
    parents: list[tuple[np.ndarray, np.ndarray]] = []
    kept_total = 0
    for k, st in enumerate(stages):
        m = len(st.options)
        c_lat = (lat[:, None] + st.lat[None, :]).ravel()
        c_acc = (acc[:, None] * st.acc[None, :] if product else acc[:, None] + st.acc[None, :]).ravel()
        c_pen = (pen[:, None] + st.pen[None, :]).ravel()
        c_parent = np.repeat(np.arange(len(lat)), m)
        c_opt = np.tile(np.arange(m), len(lat))
        ok = c_lat + bounds.min_lat[k + 1] <= data.latency_budget_s + 1e-9
        if k == len(stages) - 1:
            value = np.where(ok, bounds.weight * c_acc - c_pen, -np.inf)
            if not ok.any():
                return None, None, kept_total
            best = int(np.argmax(value))
            path = [int(c_opt[best])]
            label = int(c_parent[best])
            for p_parent, p_opt in reversed(parents):
                path.append(int(p_opt[label]))
                label = int(p_parent[label])
            path.reverse()
            return float(value[best]), path, kept_total
        ub = bounds.upper_bound(k + 1, c_acc, c_pen)
        ok &= ub >= lower_bound - 1e-9
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return None, None, kept_total
        u, w = bounds.extremes(k + 1, c_acc[idx], c_pen[idx])
        idx = idx[_nondominated(c_lat[idx], u, w)]
        if beam is not None and len(idx) > beam:
            idx = idx[np.argsort(-ub[idx])[:beam]]
        lat, acc, pen = c_lat[idx], c_acc[idx], c_pen[idx]
        parents.append((c_parent[idx], c_opt[idx]))
        kept_total += len(idx)
    raise AssertionError("unreachable: the last stage returns")


def solve(data: ModelData) -> ChainResult:
    """Exact optimum of the program (the policy applied as option filters). max_cost is not supported."""
    if data.max_cost is not None:
        raise NotImplementedError("chain search does not model max_cost; use the MILP")
    t0 = time.perf_counter()
    data = data.restricted()
    if any(not st.options for st in data.stages):
        return ChainResult(False, None, None, 0, time.perf_counter() - t0)
    stages = _stages(data)
    bounds = Bounds(stages, data.accuracy_method == "product", data.accuracy_weight)
    # A narrow beam first finds a good feasible value quickly; the exact pass then prunes with it.
    seed, _, _ = _search(data, stages, bounds, -math.inf, beam=_BEAM)
    value, path, labels = _search(data, stages, bounds, seed if seed is not None else -math.inf, beam=None)
    elapsed = time.perf_counter() - t0
    if path is None:
        return ChainResult(False, None, None, labels, elapsed)
    choice = tuple(st.options[i] for st, i in zip(stages, path, strict=True))
    return ChainResult(True, choice, value, labels, elapsed)
