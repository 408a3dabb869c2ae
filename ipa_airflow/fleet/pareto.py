"""One pipeline's Pareto set at its load: every SLA-meeting plan no other plan beats on quota usage and
objective at once.

The fleet program only ever needs these plans: a plan that uses no less of every quota kind than another
and scores no more is never worth choosing, whatever the other pipelines do. They are enumerated exactly,
stage by stage, over partial plans (labels: latency L, usage U per pool, accuracy so far P, penalty C),
as the chain search does (optimizer/chain_search.py), with usage as extra dimensions. A label is dropped
only when no completion of it can be on the front:

- its latency plus the fastest completion breaks the SLA (or its cost plus the cheapest completion
  breaks the spec's max_cost);
- a plan already known uses no more of any pool than the label plus its leanest completion, and scores
  at least the label's best completion (an upper bound that ignores the SLA); or
- another label dominates it: no more latency, no more usage, and a value at least as high for every
  completion (both ends of the completion's accuracy range, as in the chain search).

Replicas are what the single-pipeline program gives each option: the fewest that carry the load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..optimizer import chain_search
from ..optimizer.model_data import ModelData, Option
from ..optimizer.objective import score_choice

_EPS = 1e-9
_BLOCK = 128


@dataclass(frozen=True)
class FrontPoint:
    """One SLA-meeting plan of a pipeline: its options, what it uses of each pool, and its objective."""

    choice: tuple[Option, ...]
    usage: tuple[float, ...]  # per pool, in the order of `Front.pools`
    objective: float


@dataclass(frozen=True)
class Front:
    pipeline: str
    pools: tuple[str, ...]
    points: tuple[FrontPoint, ...]  # by usage ascending; empty when no plan meets the SLA at this load
    labels: int  # partial plans kept over all stages (the enumeration's work)


def option_kind_units(option: Option) -> tuple[str, float]:
    """'cpu=2' -> ('cpu', 2.0): what one replica of the option is given."""
    kind, _, units = option.resources.partition("=")
    return kind, float(units)


def pools_of(option: Option, pools: Sequence[str]) -> list[int]:
    """The pools an option draws on: a pool is named by a resource kind ('cpu', 'gpu') or a hardware."""
    kind, _ = option_kind_units(option)
    return [k for k, pool in enumerate(pools) if pool in (kind, option.hardware)]


def option_usage(option: Option, pools: Sequence[str]) -> tuple[float, ...]:
    _, units = option_kind_units(option)
    hits = set(pools_of(option, pools))
    return tuple(option.replicas * units if k in hits else 0.0 for k in range(len(pools)))


def plan_usage(choice: Sequence[Option], pools: Sequence[str]) -> tuple[float, ...]:
    totals = [0.0] * len(pools)
    for o in choice:
        for k, u in enumerate(option_usage(o, pools)):
            totals[k] += u
    return tuple(totals)


@dataclass(frozen=True)
class _Stage(chain_search.StageArrays):
    use: np.ndarray  # options x dims (pools, then cost when the spec caps it)


def _dims(data: ModelData, o: Option, pools: Sequence[str]) -> list[float]:
    dims = list(option_usage(o, pools))
    if data.max_cost is not None:
        dims.append(o.cost)  # max_cost is one more capacity, the pipeline's own
    return dims


def _stage(data: ModelData, options: Sequence[Option], pools: Sequence[str]) -> _Stage:
    lat = np.array([o.total_latency_s for o in options], dtype=float)
    acc = np.array([o.accuracy for o in options], dtype=float)
    pen = np.array([data.penalty(o) for o in options], dtype=float)
    use = np.array([_dims(data, o, pools) for o in options], dtype=float).reshape(len(options), -1)
    # Within a stage, an option another beats on latency, accuracy, penalty and usage at once is never on
    # the front (accuracies are >= 0, so a higher one never lowers a product).
    keep = _nondominated(np.column_stack([lat, -acc, pen, use]))
    keep.sort()
    return _Stage(tuple(options[i] for i in keep), lat[keep], acc[keep], pen[keep], use[keep])


def _nondominated(cost: np.ndarray) -> np.ndarray:
    """Indices of the rows no other row beats: <= in every column and < in one (lower is better).
    Of identical rows the first is kept. Sorted by the columns' sum, a row can only be beaten by an
    earlier one, so each is compared with the rows kept so far, a block at a time."""
    n = len(cost)
    if n <= 1:
        return np.arange(n)
    if cost.shape[1] == 2:
        # Two columns: sorted by the first, a row is kept when its second is below every earlier one's.
        order = np.lexsort((cost[:, 1], cost[:, 0]))
        second = cost[order, 1]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(second)[:-1]])
        return order[second < best_before]
    order = np.lexsort(tuple(cost[:, c] for c in range(cost.shape[1] - 1, -1, -1)))
    order = order[np.argsort(cost[order].sum(axis=1), kind="stable")]
    kept: list[int] = []
    kept_rows = np.empty((0, cost.shape[1]))
    lower = None
    for start in range(0, n, _BLOCK):
        idx = order[start : start + _BLOCK]
        rows = cost[idx]
        # A row beaten by a dropped row is beaten by whatever dropped that one (<= is transitive), so
        # comparing with every earlier row of the block, kept or not, is the same as with the kept ones.
        if lower is None or len(lower) != len(idx):
            lower = np.tri(len(idx), k=-1, dtype=bool)
        beaten = (_no_worse(rows, rows) & lower).any(axis=1)
        if len(kept_rows):
            beaten |= _no_worse(rows, kept_rows).any(axis=1)
        kept.extend(idx[~beaten].tolist())
        kept_rows = np.vstack([kept_rows, rows[~beaten]])
    return np.array(kept, dtype=np.int64)


def _tie(values: np.ndarray) -> np.ndarray:
    """Objectives as dominance compares them: two plans whose objectives differ only by rounding (the
    same accuracies summed in another order) tie, so the one using more of a pool is dropped."""
    return np.round(values, 9)


def _no_worse(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """m[i, j]: others[j] <= rows[i] in every column (one 2-D comparison per column: no 3-D temporary)."""
    m = others[None, :, 0] <= rows[:, None, 0]
    for c in range(1, rows.shape[1]):
        m &= others[None, :, c] <= rows[:, None, c]
    return m


def pareto_front(data: ModelData, pools: Sequence[str]) -> Front:
    """Every SLA-meeting plan of `data` that no other beats on (usage per pool, objective), exactly."""
    pools = tuple(pools)
    restricted = data.restricted()  # the policy as option filters, as every non-MILP solver reads it
    if any(not st.options for st in restricted.stages):
        return Front(data.pipeline, pools, (), 0)
    # The single-pipeline optimum bounds every plan's objective and is a known point of the front.
    best = chain_search.solve(data) if data.max_cost is None else None
    if best is not None and not best.feasible:
        return Front(data.pipeline, pools, (), 0)
    stages = [_stage(restricted, st.options, pools) for st in restricted.stages]
    product = data.accuracy_method == "product"
    bounds = chain_search.Bounds(  # what the later stages can still add (latency, accuracy, value)
        list(stages),
        product,
        data.accuracy_weight,
    )
    d = stages[0].use.shape[1]
    min_use = np.zeros((len(stages) + 1, d))
    for k in range(len(stages) - 1, -1, -1):
        min_use[k] = min_use[k + 1] + stages[k].use.min(axis=0)
    cap = np.full(d, np.inf)
    if data.max_cost is not None:
        cap[-1] = data.max_cost
    known_use = np.empty((0, d))
    known_val = np.empty(0)
    known: list[tuple[Option, ...]] = []
    v_max = math.inf
    if best is not None and best.choice is not None:
        known.append(best.choice)
        known_use = np.array([[*_use_of(data, best.choice, pools)]])
        known_val = np.array([score_choice(data, best.choice).objective])
        v_max = float(known_val[0])

    lat = np.zeros(1)
    acc = np.ones(1) if product else np.zeros(1)
    pen = np.zeros(1)
    use = np.zeros((1, d))
    parents: list[tuple[np.ndarray, np.ndarray]] = []
    kept_total = 0
    last = len(stages) - 1
    final_choices: list[tuple[Option, ...]] = []
    final_use = np.empty((0, d))
    final_val = np.empty(0)
    for k, st in enumerate(stages):
        m = len(st.options)
        c_lat = (lat[:, None] + st.lat[None, :]).ravel()
        c_acc = (acc[:, None] * st.acc[None, :] if product else acc[:, None] + st.acc[None, :]).ravel()
        c_pen = (pen[:, None] + st.pen[None, :]).ravel()
        c_use = (use[:, None, :] + st.use[None, :, :]).reshape(-1, d)
        c_parent = np.repeat(np.arange(len(lat)), m)
        c_opt = np.tile(np.arange(m), len(lat))
        ok = c_lat + bounds.min_lat[k + 1] <= data.latency_budget_s + _EPS
        ok &= (c_use + min_use[k + 1] <= cap + _EPS).all(axis=1)
        if k == last:
            value = bounds.weight * c_acc - c_pen
            idx = np.flatnonzero(ok)
            # Only the plans on the front are traced back to their options.
            idx = idx[_nondominated(np.column_stack([c_use[idx, : len(pools)], -_tie(value[idx])]))]
            for i in idx.tolist():
                path = [int(c_opt[i])]
                label = int(c_parent[i])
                for p_parent, p_opt in reversed(parents):
                    path.append(int(p_opt[label]))
                    label = int(p_parent[label])
                path.reverse()
                final_choices.append(tuple(s.options[j] for s, j in zip(stages, path, strict=True)))
            final_use = c_use[idx]
            final_val = value[idx]
            break
        ub = np.minimum(bounds.upper_bound(k + 1, c_acc, c_pen), v_max)
        if len(known_val):
            lean = c_use + min_use[k + 1]
            covered = (known_use[None, :, :] <= lean[:, None, :] + _EPS).all(axis=2)
            best_known = np.where(covered, known_val[None, :], -np.inf).max(axis=1)
            ok &= best_known < ub - _EPS * max(1.0, abs(v_max) if math.isfinite(v_max) else 1.0)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            break
        u, w = bounds.extremes(k + 1, c_acc[idx], c_pen[idx])
        keep = _nondominated(np.column_stack([c_lat[idx], c_use[idx], -u, -w]))
        idx = idx[np.sort(keep)]
        lat, acc, pen, use = c_lat[idx], c_acc[idx], c_pen[idx], c_use[idx]
        parents.append((c_parent[idx], c_opt[idx]))
        kept_total += len(idx)
    choices = known + final_choices
    all_use = np.vstack([known_use, final_use]) if len(final_use) else known_use
    all_val = np.concatenate([known_val, final_val])
    if not choices:
        return Front(data.pipeline, pools, (), kept_total)
    front = _nondominated(np.column_stack([all_use[:, : len(pools)], -_tie(all_val)]))
    points = []
    for i in front.tolist():
        choice = choices[i]
        points.append(FrontPoint(choice, plan_usage(choice, pools), score_choice(data, choice).objective))
    points.sort(key=lambda p: (p.usage, -p.objective))
    return Front(data.pipeline, pools, tuple(points), kept_total)


def _use_of(data: ModelData, choice: Sequence[Option], pools: Sequence[str]) -> list[float]:
    dims = list(plan_usage(choice, pools))
    if data.max_cost is not None:
        dims.append(math.fsum(o.cost for o in choice))
    return dims
