"""Fleet planning: many pipelines, one cluster quota, one exact program.

- spec.py: the fleet spec (pipelines, weights, quota per pool) and `load_fleet`.
- pareto.py: one pipeline's Pareto set over (usage per pool, objective) at its load.
- solve.py: the multiple-choice knapsack over those sets (HiGHS), and the typed `FleetPlan`.

`plan_fleet(fleet, loads)` is what a caller (the CLI, the adaptation DAG, the simulator) needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from .solve import FleetInput, FleetPlan, PipelineOutcome, PoolUse, solve_fleet
from .spec import Fleet, FleetError, FleetMember, FleetSpec, is_fleet_file, load_fleet

__all__ = [
    "Fleet",
    "FleetError",
    "FleetInput",
    "FleetMember",
    "FleetPlan",
    "FleetSpec",
    "PipelineOutcome",
    "PoolUse",
    "fleet_inputs",
    "is_fleet_file",
    "load_fleet",
    "plan_fleet",
    "solve_fleet",
]


def fleet_inputs(fleet: Fleet, loads: Mapping[str, float], *, policy: str = "ipa") -> list[FleetInput]:
    """Each pipeline's program at its load. Every pipeline needs a load; a load for no pipeline is an
    error too (a typo would otherwise plan a pipeline for nothing)."""
    from ..optimizer.model_data import ModelData
    from ..optimizer.policies import policy_for

    names = fleet.pipeline_names
    missing = [n for n in names if n not in loads]
    if missing:
        raise ValueError(
            f"no load for pipeline{'s' if len(missing) > 1 else ''} {', '.join(missing)} of fleet "
            f"'{fleet.name}': give one for each of {', '.join(names)}, e.g. --loads "
            + ",".join(f"{n}=10" for n in names)
        )
    unknown = [n for n in loads if n not in names]
    if unknown:
        raise ValueError(
            f"fleet '{fleet.name}' has no pipeline {', '.join(unknown)} (its pipelines: {', '.join(names)})"
        )
    return [
        FleetInput(
            ModelData.build(
                m.pipeline.spec, m.pipeline.profiles, loads[m.name], policy_for(policy, m.pipeline.spec)
            ),
            m.weight,
        )
        for m in fleet.members
    ]


def plan_fleet(fleet: Fleet, loads: Mapping[str, float], *, policy: str = "ipa") -> FleetPlan:
    """The fleet's exact plan at these loads (pipeline name -> req/s)."""
    import time
    from dataclasses import replace

    t0 = time.perf_counter()
    inputs = fleet_inputs(fleet, loads, policy=policy)
    build_s = time.perf_counter() - t0
    result = solve_fleet(inputs, fleet.quota, name=fleet.name)
    return replace(
        result,
        solve_time_s=result.solve_time_s + build_s,
        timings={"build_s": build_s, **result.timings},
    )
