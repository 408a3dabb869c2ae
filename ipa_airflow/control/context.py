"""What one decision sees: the time, the forecast, what runs, the loaded pipeline and the policy's state.

A context is built by a driver (an Airflow task, the loop operator, the simulator) from its own sources
of load, time and cluster; the decision itself reads nothing else (no clock, no cluster, no files), so
it can be stepped tick by tick in a test with contexts written by hand, as Ray Serve's autoscaling
policies are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..forecasting.base import Forecast
from ..pipelines import Pipeline
from ..plans import config_id
from ..spec import PipelineSpec

# One `StagePlan.config_key` per stage, in stage order: (stage, variant, hardware, resources, dtype,
# batch, replicas), as `cluster.desired.observe` decodes it from the Deployments.
RunningConfig = tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Context:
    now: dt.datetime
    forecast: Forecast
    running: RunningConfig | None  # None: nothing of ours runs (or a stage lacks our annotations)
    pipeline: Pipeline
    policy: str = "ipa"  # the planner's policy (optimizer.policies), or the name of another policy
    quantile: float | None = None  # None: the spec's adaptation.quantile
    state: Any = None  # what the policy handed back last time (None for the planner: it keeps none)
    # The arrival rate measured over the last `adaptation.burst_window_s` (None where the driver does not
    # measure it): the plan is never sized below it, a forecast that has not caught up with a burst yet.
    measured_rps: float | None = None
    # The highest such rate over the capacity hold (`stabilisation` intervals): a burst the fast path met
    # holds its replicas as a recent forecast would, so the next decision does not undo them.
    measured_peak_rps: float | None = None

    @property
    def spec(self) -> PipelineSpec:
        return self.pipeline.spec

    @property
    def previous_plan_id(self) -> str | None:
        """The id a Plan running this configuration has (None when nothing runs)."""
        return None if self.running is None else config_id(self.spec.name, self.running)
