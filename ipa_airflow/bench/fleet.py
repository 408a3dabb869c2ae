"""The fleet benchmark: solve time of the fleet program for 5, 20 and 50 synthetic pipelines under a
binding quota, and brute-force checks on fleets small enough to enumerate.

Each synthetic pipeline is a chain of 3-5 stages whose variants (3-9) are distinct measured H100
classification models (as in `ipa bench solver`), each runnable in two shapes (fp16 or fp32 on one
H100), batch sizes 1..64, at most 100 replicas, 20 ms of SLA per stage, at a load of 5 000-30 000 req/s
(so a pipeline needs several GPUs). The quota is 70 % of the GPUs the pipelines' independent optima use
together, so it binds. Several loads (the base loads scaled) give a median and a max. The time is the
whole plan: building every pipeline's program data, its Pareto set, and the knapsack.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

from ..fleet import FleetInput, solve_fleet
from ..fleet import brute_force as fleet_brute
from ..fleet.pareto import plan_usage
from ..optimizer import plan_from_data
from ..optimizer.model_data import ModelData
from ..optimizer.policies import policy_for
from ..profiles import ProfileSet
from ..settings import REPO
from ..spec import PipelineSpec
from .solver_grid import BENCH_MODELS, chain_spec

SIZES = (5, 20, 50)
LOAD_SCALES = (0.6, 0.8, 1.0, 1.2, 1.4)
QUOTA_SHARE = 0.7
POOL = "h100"
PROFILES = REPO / "profiles" / "h100_torchvision.json"


@cache
def _profiles(path: Path = PROFILES) -> ProfileSet:
    return ProfileSet.load([path])


def pipeline_spec(name: str, models: tuple[str, ...], stages: int, batches: tuple[int, ...]) -> PipelineSpec:
    """One synthetic pipeline of the fleet: the solver benchmark's chain, each model in 2 shapes."""
    return chain_spec(name, models, stages, _profiles(), batches=batches, dtypes=lambda s: ("fp16", "fp32"))


def synthetic_specs(n: int, *, seed: int, small: bool = False) -> list[tuple[PipelineSpec, float]]:
    """n pipelines (spec, base load): 3-5 stages of 3-9 variants; `small`: 2 stages of 2-3 variants
    and three batch sizes, for brute force."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        stages = 2 if small else rng.randint(3, 5)
        variants = rng.randint(2, 3) if small else rng.randint(3, 9)
        models = tuple(sorted(rng.sample(BENCH_MODELS, variants), key=BENCH_MODELS.index))
        batches = (1, 8, 64) if small else (1, 2, 4, 8, 16, 32, 64)
        load = rng.uniform(5_000, 30_000)
        out.append((pipeline_spec(f"pipe{i:02d}", models, stages, batches), load))
    return out


def fleet_inputs(specs: list[tuple[PipelineSpec, float]], load_scale: float) -> list[FleetInput]:
    profiles = _profiles()
    return [
        FleetInput(ModelData.build(spec, profiles, load * load_scale, policy_for("ipa", spec)))
        for spec, load in specs
    ]


def synthetic_fleet(
    n: int, *, seed: int = 0, load_scale: float = 1.0, small: bool = False
) -> list[FleetInput]:
    return fleet_inputs(synthetic_specs(n, seed=seed, small=small), load_scale)


def binding_quota(inputs: list[FleetInput], share: float = QUOTA_SHARE) -> dict[str, float]:
    """`share` of the GPUs the pipelines' independent optima take together (not timed)."""
    used = 0.0
    for inp in inputs:
        alone = plan_from_data(inp.data)
        options = [_option_of(inp.data, s) for s in alone.stages]
        used += plan_usage(options, (POOL,))[0]
    return {POOL: float(max(1, math.floor(share * used)))}


def _option_of(data: ModelData, s):
    st = next(st for st in data.stages if st.name == s.stage)
    o = next(
        o
        for o in st.options + st.too_slow
        if (o.variant, o.hardware, o.resources, o.dtype, o.batch)
        == (s.variant, s.hardware, s.resources, s.dtype, s.batch)
    )
    return replace(o, replicas=s.replicas)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def brute_force_checks(fleets: int = 12, *, seed: int = 100) -> dict:
    """Small fleets (2-3 pipelines, 2 stages) at binding quotas: the program against brute force."""
    checked = mismatches = skipped = 0
    for k in range(fleets):
        n = 2 + k % 2
        for share in (0.5, 0.7, 0.9):
            inputs = synthetic_fleet(n, seed=seed + k, small=True)
            quota = binding_quota(inputs, share)
            try:
                reference = fleet_brute.solve(inputs, quota, limit=3_000_000)
            except fleet_brute.TooLarge:
                skipped += 1
                continue
            ours = solve_fleet(inputs, quota)
            checked += 1
            misses = sum(o.weight for o in ours.pipelines if not o.sla_met)
            ok = (
                ours.fits
                and _same(misses, reference.misses)
                and _same(ours.program_objective, reference.objective)
            )
            mismatches += 0 if ok else 1
    return {"brute_force_checked": checked, "mismatches": mismatches, "skipped_too_large": skipped}


def run(
    *,
    sizes: tuple[int, ...] = SIZES,
    load_scales: tuple[float, ...] = LOAD_SCALES,
    seed: int = 0,
    brute_force_fleets: int = 12,
    on_row: Callable[[dict], None] | None = None,
) -> dict:
    rows = []
    for n in sizes:
        specs = synthetic_specs(n, seed=seed)
        times, fronts, knapsack, points, lost, missed = [], [], [], [], [], []
        for scale in load_scales:
            quota = binding_quota(fleet_inputs(specs, scale))
            t0 = time.perf_counter()
            inputs = fleet_inputs(specs, scale)  # the program's data is part of the timed plan
            result = solve_fleet(inputs, quota)
            times.append(time.perf_counter() - t0)
            fronts.append(result.timings["fronts_s"])
            knapsack.append(result.timings["knapsack_s"])
            points.append(result.front_points)
            missed.append(len(result.missed))
            free = sum(o.alone_objective or 0.0 for o in result.pipelines)
            lost.append(free - result.objective)
            if result.status != "Optimal" or not result.fits:
                raise AssertionError(f"fleet of {n} at x{scale}: {result.status}, fits={result.fits}")
        row = {
            "pipelines": n,
            "median_s": round(statistics.median(times), 4),
            "max_s": round(max(times), 4),
            "median_fronts_s": round(statistics.median(fronts), 4),
            "median_knapsack_s": round(statistics.median(knapsack), 4),
            "median_front_points": statistics.median(points),
            "missed_sla_max": max(missed),
            "median_objective_lost_to_quota": round(statistics.median(lost), 4),
        }
        rows.append(row)
        if on_row:
            on_row(row)
    checks = brute_force_checks(brute_force_fleets) if brute_force_fleets else {}
    return {
        "pool": POOL,
        "quota_share": QUOTA_SHARE,
        "load_scales": list(load_scales),
        "rows": rows,
        **checks,
    }
