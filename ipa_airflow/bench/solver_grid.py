"""The solver benchmark: the grid of the IPA paper's scalability figure (1..9 stages x 1..9 variants).

Each grid point is a chain of identical stages (as in the paper) whose variants are distinct measured
H100 classification models (harder than the paper's copies of one heavy variant), batch sizes 1..64,
at most 100 replicas, solved at five loads. The time of a solve is the model build plus the solve, as
the paper measured it. Where the instance is small enough, brute force checks the optimum.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..optimizer import brute_force, plan_from_data
from ..optimizer.model_data import ModelData
from ..optimizer.policies import policy_for
from ..profiles import ProfileError, ProfileSet, published_accuracy
from ..spec import PipelineSpec

# Ordered from light to heavy; the first v form a stage of v variants.
BENCH_MODELS = (
    "resnet18",
    "mobilenet_v3_small",
    "resnet34",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "resnet50",
    "vit_b_16",
    "resnet101",
    "resnet152",
)
LOADS_RPS = (50.0, 200.0, 800.0, 2000.0, 5000.0)
STAGE_SLA_S = 0.02  # per stage: the SLA of an S-stage chain is S times this
BRUTE_FORCE_LIMIT = 1_000_000
# IPA's published times (model build + solve, Gurobi), seconds: [variants-1][stages-1]. See docs/IPA.md.
IPA_PUBLISHED_S = {
    1: (0.01, 0.03, 0.02, 0.03, 0.03, 0.04, 0.08, 0.06, 0.08),
    3: (0.02, 0.07, 0.07, 0.08, 0.10, 0.14, 0.14, 0.15, 0.17),
    5: (0.08, 0.14, 0.20, 0.24, 0.30, 0.37, 0.45, 0.54, 0.68),
    7: (0.14, 0.28, 0.39, 0.51, 0.63, 0.77, 0.89, 1.04, 1.19),
    9: (0.25, 0.51, 0.77, 0.99, 1.25, 1.51, 1.73, 1.98, 2.22),
}


@dataclass
class GridPoint:
    stages: int
    variants: int
    times_s: list[float] = field(default_factory=list)
    brute_force_checked: int = 0
    mismatches: int = 0

    def to_dict(self) -> dict:
        d = {
            "stages": self.stages,
            "variants": self.variants,
            "median_s": round(statistics.median(self.times_s), 5),
            "max_s": round(max(self.times_s), 5),
            "brute_force_checked": self.brute_force_checked,
            "mismatches": self.mismatches,
        }
        published = IPA_PUBLISHED_S.get(self.variants)
        if published:
            d["ipa_published_s"] = published[self.stages - 1]
        return d


def _published(profiles: ProfileSet, model: str) -> float:
    acc = published_accuracy(profiles.get(f"{model}/h100/fp16/gpu=1"))
    if acc is None:
        raise ProfileError(f"the H100 profile of {model} carries no published accuracy to plan with")
    return acc


def bench_spec(
    stages: int, variants: int, profiles: ProfileSet, accuracy: str, heterogeneous: bool = False
) -> PipelineSpec:
    """S identical stages of V variants; `heterogeneous` runs every other stage in fp32 instead of fp16,
    so the stages' latencies differ and no symmetry between them can help a solver."""
    return chain_spec(
        f"bench-{stages}x{variants}",
        BENCH_MODELS[:variants],
        stages,
        profiles,
        accuracy=accuracy,
        dtypes=lambda s: ("fp32" if heterogeneous and s % 2 else "fp16",),
    )


def chain_spec(
    name: str,
    models: Sequence[str],
    stages: int,
    profiles: ProfileSet,
    *,
    accuracy: str = "product",
    batches: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    dtypes: Callable[[int], Sequence[str]] = lambda s: ("fp16",),
) -> PipelineSpec:
    """A chain of `stages` identical stages offering `models` on one H100 each, in the dtypes
    `dtypes(stage)` gives (one shape per dtype): the solver and fleet benchmarks' pipelines."""
    accs = {m: _published(profiles, m) for m in models}
    # Normalise the product so a perfect pipeline scores 1 whatever the length, keeping accuracy and cost
    # comparable at every grid point (otherwise cost swamps accuracy in long chains).
    alpha = 1.0 / math.prod([max(accs.values()) / 100.0] * stages) if accuracy == "product" else 1.0
    return PipelineSpec.from_dict(
        {
            "name": name,
            "sla_s": STAGE_SLA_S * stages,
            "objective": {"alpha": alpha, "beta": 0.005, "gamma": 0.0001, "accuracy": accuracy},
            "limits": {"batch_sizes": list(batches), "max_replicas": 100},
            "cost_per_unit": {"gpu": 1.0},
            "stages": [
                {
                    "name": f"stage{s}",
                    "variants": [
                        {
                            "name": m.replace("_", "-"),
                            "model": m,
                            "accuracy": accs[m],
                            "shapes": [
                                {"hardware": "h100", "dtype": dtype, "resources": {"gpu": 1}}
                                for dtype in dtypes(s)
                            ],
                        }
                        for m in models
                    ],
                }
                for s in range(stages)
            ],
        },
        source="bench",
    )


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def run(
    profiles_path: Path,
    *,
    accuracy: str = "sum",
    solver: str = "auto",
    max_stages: int = 9,
    max_variants: int = 9,
    loads: tuple[float, ...] = LOADS_RPS,
    repeats: int = 1,
    brute_force_limit: int = BRUTE_FORCE_LIMIT,
    heterogeneous: bool = False,
    on_point: Callable[[GridPoint], None] | None = None,
) -> dict:
    profiles = ProfileSet.load([profiles_path])
    grid = []
    for variants in range(1, max_variants + 1):
        for stages in range(1, max_stages + 1):
            spec = bench_spec(stages, variants, profiles, accuracy, heterogeneous)
            point = GridPoint(stages, variants)
            policy = policy_for("ipa", spec)
            for load in loads:
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    data = ModelData.build(spec, profiles, load, policy)
                    result = plan_from_data(data, solver=solver)
                    point.times_s.append(time.perf_counter() - t0)
                if brute_force.combinations(data) <= brute_force_limit:
                    reference = brute_force.solve(data, limit=brute_force_limit)
                    point.brute_force_checked += 1
                    ours = result.objective if result.feasible else None
                    if reference.feasible != result.feasible or not _same(ours, reference.objective):
                        point.mismatches += 1
            grid.append(point)
            if on_point:
                on_point(point)
    rows = [p.to_dict() for p in grid]
    slower_than_ipa = [r for r in rows if "ipa_published_s" in r and r["median_s"] > r["ipa_published_s"]]
    return {
        "accuracy": accuracy,
        "solver": solver,
        "heterogeneous": heterogeneous,
        "loads_rps": list(loads),
        "grid": rows,
        "max_median_s": max(r["median_s"] for r in rows),
        "max_max_s": max(r["max_s"] for r in rows),
        "point_9x9": next((r for r in rows if r["stages"] == 9 and r["variants"] == 9), None),
        "brute_force_checked": sum(p.brute_force_checked for p in grid),
        "mismatches": sum(p.mismatches for p in grid),
        "slower_than_ipa_published": [(r["stages"], r["variants"]) for r in slower_than_ipa],
    }
