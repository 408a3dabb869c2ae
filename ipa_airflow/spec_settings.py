"""The pipeline-wide settings sections of a spec: the objective, the limits, the baselines' settings,
how forecasts become plan changes, and how a stage runs on Kubernetes. `spec.py` holds the pipeline, its
stages and variants, and re-exports these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

AccuracyMethod = Literal["sum", "average", "product"]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Weight = Annotated[float, Field(ge=0, le=1e6)]  # objective weights: larger ones only break solvers
Text = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    """Every spec model: strict (a boolean is not a number, "4" is not 4), no unknown keys, frozen, and no
    .inf/.nan, so each number a spec holds is finite and of the type its field says."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Objective(_Strict):
    """alpha * accuracy - beta * cost - gamma * sum of batch sizes (IPA's objective)."""

    alpha: Weight = 1.0
    beta: Weight = 0.01
    gamma: Weight = 0.0
    accuracy: AccuracyMethod = "product"
    rank_normalize: bool = False


class Limits(_Strict):
    batch_sizes: list[Annotated[StrictInt, Field(gt=0, le=4096)]] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16, 32, 64]
    )
    max_batch: Annotated[StrictInt, Field(gt=0, le=4096)] = 64
    max_replicas: Annotated[StrictInt, Field(gt=0, le=10000)] = 100
    max_cost: Annotated[float, Field(gt=0)] | None = None
    # Replicas are planned so that load / capacity stays at or under this: queues grow without bound as
    # utilisation nears 1, which the paper's n * h >= load ignores. 1.0 is the paper's program.
    max_utilisation: Annotated[float, Field(gt=0, le=1)] = 1.0
    # Share of the SLA kept free when planning: the program counts batch latency and batch-filling time
    # but not the wait for a busy replica, which pushes plans planned to the SLA's edge over it. 0.0 is
    # the paper's program.
    latency_headroom: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @field_validator("batch_sizes")
    @classmethod
    def _sorted_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one batch size")
        if len(set(v)) != len(v):
            raise ValueError("batch sizes must be unique")
        return sorted(v)


class Baselines(_Strict):
    """Settings of the baselines the program is compared with (all optional)."""

    fa2_low: dict[str, Text] = Field(
        default_factory=dict, description="stage -> pinned variant (default lightest)"
    )
    fa2_high: dict[str, Text] = Field(
        default_factory=dict, description="stage -> pinned variant (default heaviest)"
    )
    rim_replicas: PositiveInt | dict[str, PositiveInt] = 2
    per_stage_shares: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        description="stage -> its share of the latency budget under per-stage (default: equal shares)",
    )


PLAN_QUANTILES = (0.8, 0.9, 0.95, 0.99)  # the upper quantiles every forecast carries


class Adaptation(_Strict):
    """How forecasts become plan changes. The Airflow DAG and the simulator read the same settings."""

    # Which upper quantile of the next interval's peak the plan provisions for.
    quantile: float = 0.99
    # The spacing of the forecasts the controller compares (the simulator's decision cadence).
    interval_s: Annotated[float, Field(gt=0, le=86400)] = 10.0
    # Give capacity back only to a plan that carries every one of the last N loads: a guard against
    # flapping, not a second quantile (the plan is sized for the load now; an older, higher load only keeps
    # capacity, never plans above what runs carries). Each decision recomputes the N-1 earlier forecasts,
    # hence the bound.
    stabilisation: Annotated[StrictInt, Field(gt=0, le=1000)] = 4
    # The fast path: between decisions, a rate measured over this many seconds (or a backlog) above what
    # the running plan carries adds replicas of the running variants at once. 0 turns it off.
    burst_window_s: Annotated[StrictInt, Field(ge=0, le=600)] = 5
    # A change the load does not force must raise the objective by at least this much (every switch
    # restarts pods).
    min_gain: NonNegative = 0.005

    @property
    def spacing_s(self) -> int:
        """interval_s in whole seconds (at least 1): the step between the forecasts compared."""
        return max(1, round(self.interval_s))

    @field_validator("quantile")
    @classmethod
    def _known_quantile(cls, v: float) -> float:
        if v not in PLAN_QUANTILES:
            raise ValueError(f"forecasts carry the quantiles {list(PLAN_QUANTILES)}; choose one of them")
        return v


class DeploymentSettings(_Strict):
    """How a stage runs on Kubernetes. `template` is a Deployment manifest the plan is rendered into
    (inline or from `template_file`, relative to the spec); without one, MLServer's MLflow runtime."""

    template: dict[str, Any] | None = None
    template_file: Text | None = None
    image: Text = "seldonio/mlserver:1.6.1-mlflow"
    port: Annotated[StrictInt, Field(gt=0, le=65535)] = 8080
    rollout_deadline_s: Annotated[float, Field(gt=0, le=86400)] = 600.0
    force_conflicts: bool = False  # take over fields another field manager owns (e.g. an HPA's replicas)

    @model_validator(mode="after")
    def _one_template(self) -> DeploymentSettings:
        if self.template is not None and self.template_file is not None:
            raise ValueError("give either 'template' or 'template_file', not both")
        return self
