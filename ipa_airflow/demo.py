"""`ipa demo`: the main job on embedded defaults. Today: plan every example pipeline at a range of loads
under every policy and print the plans side by side."""

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


def render(plans: list[Plan], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title="plans of the example pipelines (cost in the spec's units; accuracy = PAS unless the spec says)"
    )
    for col in (
        "pipeline",
        "load req/s",
        "policy",
        "stages: variant b=batch xreplicas",
        "accuracy",
        "cost",
        "latency ms",
        "SLA ms",
        "ok",
    ):
        table.add_column(
            col,
            justify="right"
            if col not in ("pipeline", "policy", "stages: variant b=batch xreplicas")
            else "left",
        )
    last = None
    for p in plans:
        if last is not None and (p.pipeline, p.load_rps) != last:
            table.add_section()
        last = (p.pipeline, p.load_rps)
        stages = "  ".join(f"{s.variant} b={s.batch} x{s.replicas}" for s in p.stages)
        table.add_row(
            p.pipeline,
            f"{p.load_rps:g}",
            p.policy,
            stages,
            f"{p.accuracy:.4f}",
            f"{p.cost:g}",
            f"{p.latency_s * 1000:.1f}",
            f"{p.sla_s * 1000:.0f}",
            "yes" if p.feasible else f"[red]no: {escape(', '.join(p.binding))}[/red]",
        )
    console.print(table)
