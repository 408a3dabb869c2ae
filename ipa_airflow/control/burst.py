"""The fast path for bursts: between decisions, a measured overload adds replicas of what runs at once.

The planner decides every `adaptation.interval_s` on a forecast quantile; a burst the forecast missed
would otherwise wait for the next decision and then for its pods. Like HPA's and Ray Serve's upscale
path, this reads only what was measured (the arrival rate over the last `adaptation.burst_window_s`
seconds and the requests each stage has queued), never changes a variant, a shape or a batch size (that
restarts pods and is the program's choice), and only adds replicas.

A pure function of the same context the decision gets (its forecast is the last one made). Replicas
still starting count as capacity: `ctx.running` holds the Deployments' desired replicas, so a burst
already answered is not answered again while its pods start. The next decisions see them as what runs,
and the driver's `measured_peak_rps` (the highest rate over the capacity hold) keeps them until the
burst has passed for `adaptation.stabilisation` intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..optimizer import ConfigError, score_config
from .context import Context
from .decide import models_of, pipeline_info
from .decision import Decision


@dataclass(frozen=True)
class Measured:
    """What the fast path reads: the arrival rate over the burst window, and per stage the requests
    waiting (the simulator knows them; the loop operator, which reads only Prometheus' request rate,
    passes none)."""

    rate_rps: float
    queued: Mapping[str, int] = field(default_factory=dict)


def demand(ctx: Context, measured: Measured, stage: str) -> float:
    """The rate a stage must serve: the arrivals, plus its backlog cleared over the longer of the SLA and
    the time new replicas take to start (clearing it faster would ask for replicas that come too late)."""
    spec = ctx.spec
    startup = max((v.startup_s for v in spec.stage(stage).variants), default=0.0)
    return measured.rate_rps + measured.queued.get(stage, 0) / max(spec.sla_s, startup)


def burst(ctx: Context, measured: Measured) -> Decision | None:
    """More replicas of what runs (`ctx.running`), for each stage whose demand exceeds what it carries at
    the spec's `max_utilisation`; None when every stage carries its demand, when the planner's policy is
    not `ipa` (a baseline keeps its own rule), when nothing of ours runs or the spec no longer offers
    what runs (the next decision replaces it), or when the replicas would break `limits.max_cost`."""
    spec = ctx.spec
    if ctx.running is None or spec.adaptation.burst_window_s == 0 or ctx.policy != "ipa":
        return None
    rho, cap = spec.limits.max_utilisation, spec.limits.max_replicas
    try:
        now = score_config(spec, ctx.pipeline.profiles, max(measured.rate_rps, 1e-6), ctx.running)
    except ConfigError:
        return None
    config, short = [], []
    for key, s in zip(ctx.running, now.stages, strict=True):
        need = demand(ctx, measured, s.stage)
        replicas = int(key[6])
        if s.capacity_rps * rho < need and replicas < cap:
            replicas = min(cap, max(replicas + 1, math.ceil(need / (s.throughput_rps * rho))))
            short.append(f"'{s.stage}' {int(key[6])} -> {replicas}")
        config.append((*key[:6], replicas))
    if not short:
        return None
    load = max(demand(ctx, measured, s.stage) for s in now.stages)
    plan = score_config(spec, ctx.pipeline.profiles, load, config)
    if spec.limits.max_cost is not None and plan.cost > spec.limits.max_cost:
        return None  # the guardrails would refuse it: the next decision plans within the budget
    return Decision(
        plan=plan,
        previous_plan_id=ctx.previous_plan_id,
        reason=(
            f"fast path: {measured.rate_rps:.1f} req/s measured over the last "
            f"{spec.adaptation.burst_window_s} s exceeds what runs carries; replicas {', '.join(short)}"
        ),
        proposal_id=plan.plan_id,
        load_rps=load,
        models=models_of(ctx, plan),
        pipeline=pipeline_info(ctx, plan),
        load_basis={"measured": measured.rate_rps, "queued": dict(measured.queued)},
    )
