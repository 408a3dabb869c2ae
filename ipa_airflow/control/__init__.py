"""One decision, three drivers: the Airflow tasks, the loop operator and the simulator decide through
the same code.

- context: what a decision sees (now, the forecast, what runs, the loaded pipeline, the policy's state)
- decide: the planner as a pure `decide(ctx) -> (Decision, state)`, with stabilisation and min_gain
  as small wrappers around the program
- decision: the Decision value (`changed` is defined there only)
- record: the DecisionRecord (forecast, decision, reconcile result) that goes to MLflow
- step: what drivers share around it: observe the cluster into a context, reconcile a changed plan
"""

from .context import Context, RunningConfig
from .decide import decide, keep_or_switch, stabilised_load
from .decision import Decision
from .record import DecisionRecord, explain
from .step import Policy, apply, context, next_tick

__all__ = [
    "Context",
    "Decision",
    "DecisionRecord",
    "Policy",
    "RunningConfig",
    "apply",
    "context",
    "decide",
    "explain",
    "keep_or_switch",
    "next_tick",
    "stabilised_load",
]
