"""`ipa demo`: the main job on embedded defaults. Today: plan every example pipeline at a range of loads
under every policy (the CLI prints the plans side by side). The end-to-end demo runs the DAGs through
Airflow, so it lives in the Airflow layer (ipa_airflow_provider.demo_e2e)."""

from __future__ import annotations

from pathlib import Path

from .optimizer import POLICIES, plan
from .pipelines import load_pipeline
from .plans import Plan

DEMO_LOADS_RPS = (5.0, 20.0, 50.0, 200.0, 1000.0)


def run_plans(spec_paths: list[Path], loads=DEMO_LOADS_RPS) -> list[Plan]:
    plans = []
    for path in spec_paths:
        pipeline = load_pipeline(path)
        for load in loads:
            for policy in POLICIES:
                plans.append(plan(pipeline.spec, pipeline.profiles, load, policy=policy))
    return plans


def run_plans_in(folder: str, loads=DEMO_LOADS_RPS) -> list[Plan]:
    """`run_plans` on every spec (*.yaml) in `folder`, in name order; a ValueError when there is none."""
    specs = sorted(Path(folder).glob("*.yaml"))
    if not specs:
        raise ValueError(f"no pipeline specs (*.yaml) in {folder}")
    return run_plans(specs, loads)
