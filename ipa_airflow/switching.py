"""When to change the running plan: a pure decision between what runs and what the program proposes.

Every switch restarts pods and, until the new ones are ready, pays for both generations, so:
- the plan runs on until it can no longer carry the load it must plan for (capacity at the spec's
  `max_utilisation`, or the SLA once batches are filled at that load); then the proposal replaces it;
- any other change (cheaper, more accurate) must raise the objective by `adaptation.min_gain`; at a
  near-tie the controller would otherwise flip between two plans every time the forecast wobbles.
- capacity is given back only to a plan that carries every one of the last `adaptation.stabilisation`
  loads (`holds_capacity`): HPA's scale-down window. It guards against flapping only: a recent load
  never raises the plan above what runs carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .plans import Plan
from .spec import PipelineSpec


@dataclass(frozen=True)
class Switch:
    plan: Plan  # what should run next
    reason: str
    running: Plan | None = None  # what runs (None: nothing known)

    @property
    def changed(self) -> bool:
        """Whether `plan` replaces what runs: `control.Decision.changed`, before any id is computed."""
        return self.plan is not self.running


def carried_load(plan: Plan, spec: PipelineSpec) -> float:
    """The load `plan` carries: its narrowest stage's capacity at the spec's `max_utilisation`."""
    return min(s.capacity_rps for s in plan.stages) * spec.limits.max_utilisation


def holds_capacity(running: Plan, proposal: Plan, recent: Sequence[float], spec: PipelineSpec) -> str | None:
    """Why `running` keeps its capacity instead of giving it back to `proposal` (None: it may).

    `recent` holds the loads of the last `adaptation.stabilisation` decisions; capacity is given back only
    to a plan that would have carried every one of them, so one lower forecast does not undo a scale-up
    the next one forces again."""
    offered = carried_load(proposal, spec)
    if offered >= carried_load(running, spec):
        return None  # not a give-back
    above = [x for x in recent if x > offered]
    if not above:
        return None
    return (
        f"the proposal carries {offered:.1f} req/s, below {len(above)} of the last {len(recent)} loads "
        f"(highest {max(above):.1f}): capacity is held"
    )


def _fill_s(batch: int, load: float) -> float:
    return (batch - 1) / load if batch > 1 and load > 0 else 0.0


def shortfall(
    plan: Plan, load: float, spec: PipelineSpec, budget_shares: Mapping[str, float] | None = None
) -> str | None:
    """Why `plan` cannot carry `load` within the SLA, or None when it can. `budget_shares` (stage -> share
    of the latency budget, the per-stage policy) holds each stage to its own share as well."""
    rho = spec.limits.max_utilisation
    for s in plan.stages:
        if s.capacity_rps * rho < load:
            return (
                f"stage '{s.stage}' carries {s.capacity_rps * rho:.1f} req/s at {rho:.0%} utilisation, "
                f"below {load:.1f}"
            )
    for s in plan.stages:
        share = (budget_shares or {}).get(s.stage)
        stage_s = s.latency_s + _fill_s(s.batch, load)
        if share is not None and stage_s > share * spec.latency_budget_s:
            return (
                f"stage '{s.stage}' takes {stage_s * 1000:.0f} ms at {load:.1f} req/s, over its share of "
                f"{share * spec.latency_budget_s * 1000:.0f} ms"
            )
    latency = sum(s.latency_s + _fill_s(s.batch, load) for s in plan.stages)
    if latency > spec.latency_budget_s:
        return (
            f"it takes {latency * 1000:.0f} ms at {load:.1f} req/s, over the latency budget of "
            f"{spec.latency_budget_s * 1000:.0f} ms"
        )
    return None


def choose(
    running: Plan | None,
    proposal: Plan,
    load: float,
    spec: PipelineSpec,
    budget_shares: Mapping[str, float] | None = None,
    recent: Sequence[float] = (),
) -> Switch:
    """Keep `running` or switch to `proposal`, both planned for `load` (under the policy whose per-stage
    `budget_shares` they honour, if any). `recent`: the loads the capacity hold compares
    (`control.decide.recent_loads`), which decide whether capacity may be given back
    (`holds_capacity`); none given, it may."""
    if running is None:
        return Switch(proposal, "nothing known to run")
    if running.plan_id == proposal.plan_id:
        return Switch(running, "the program proposes what runs", running)
    short = shortfall(running, load, spec, budget_shares)
    if short is not None:
        return Switch(proposal, f"the running plan cannot carry the load: {short}", running)
    held = holds_capacity(running, proposal, recent, spec)
    if held is not None:
        return Switch(running, held, running)
    gain = proposal.objective - running.objective
    if gain >= spec.adaptation.min_gain:
        return Switch(proposal, f"the proposal raises the objective by {gain:.4f}", running)
    return Switch(
        running,
        f"the running plan carries {load:.1f} req/s; the proposal would gain {gain:.4f} "
        f"(< min_gain {spec.adaptation.min_gain:g})",
        running,
    )
