"""One decision, three drivers: the Airflow tasks, the loop operator and the simulator decide through
the same code.

- context: what a decision sees (now, the forecast, what runs, the loaded pipeline, the policy's state)
- decide: the planner as a pure `decide(ctx) -> (Decision, state)`, with the capacity hold and min_gain
  as small wrappers around the program
- burst: the fast path between decisions, which adds replicas of what runs when a measured overload
  comes
- fleet: several pipelines under one quota decided together, `decide_fleet(contexts, fleet)`
- decision: the Decision value (`changed` is defined there only)
- record: the DecisionRecord (forecast, decision, reconcile result) that goes to MLflow
- step: what drivers share around it: observe the cluster into a context, reconcile a changed plan
"""

from .burst import Measured, burst
from .context import Context, RunningConfig
from .decide import decide, keep_or_switch, planning_load
from .decision import Decision
from .fleet import decide_fleet
from .record import DecisionRecord, explain
from .step import Policy, apply, context, next_tick

__all__ = [
    "Context",
    "Decision",
    "Measured",
    "DecisionRecord",
    "Policy",
    "RunningConfig",
    "apply",
    "burst",
    "context",
    "decide",
    "decide_fleet",
    "explain",
    "keep_or_switch",
    "next_tick",
    "planning_load",
]
