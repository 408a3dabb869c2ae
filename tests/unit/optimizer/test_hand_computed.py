"""Tiny programs whose optimum is worked out by hand, below, from the profile numbers each test gives.

The three solvers (MILP, chain search, brute force) all read the options `ModelData.build` prices, so the
cross-checks in test_exactness.py cannot see a pricing mistake: a wrong replica count, a missing
batch-filling time, the wrong latency percentile or cost unit would be wrong in all three alike. Here
the expected plan comes from the program's definition, not from the code:

    latency of an option  = batch latency at the spec's percentile + (batch - 1) / load
    replicas              = ceil(load / (throughput of one replica * max_utilisation)), at least 1
    cost                  = replicas * units per replica * cost_per_unit of the kind
    objective             = alpha * accuracy - beta * total cost - gamma * sum of batch sizes
    feasible              = total latency <= sla_s * (1 - latency_headroom), replicas <= max_replicas,
                            total cost <= max_cost

Accuracy is the variant's percentage / 100; `sum` adds the stages', `product` multiplies them.
Every instance is built so the optimum is unique, with a clear margin and no constraint met exactly.
"""

from __future__ import annotations

import pytest

from ipa_airflow.optimizer import plan
from ipa_airflow.profiles import BatchPoint, Profile, ProfileSet
from ipa_airflow.spec import PipelineSpec

SOLVERS = ["milp", "chain", "brute"]


def _profiles(table: dict[str, dict[int, tuple[float, float, float]]], hardware: str, resources: str):
    """{model: {batch: (p95 ms, p99 ms, throughput req/s)}}; p50 and mean are set apart from both."""
    return {
        f"{model}/{hardware}/fp32/{resources[model]}": Profile(
            model,
            hardware,
            "fp32",
            resources[model],
            tuple(
                BatchPoint(b, p95 / 2, p95, p99, p95 / 2, rps) for b, (p95, p99, rps) in sorted(rows.items())
            ),
        )
        for model, rows in table.items()
    }


def _spec(stages, **fields) -> PipelineSpec:
    return PipelineSpec.from_dict({"name": "hand", "stages": stages, **fields})


def _variant(name: str, accuracy: float, kind: str, units: int, hardware: str) -> dict:
    return {
        "name": name,
        "accuracy": accuracy,
        "shapes": [{"hardware": hardware, "resources": {kind: units}}],
    }


def _check(result, expected_stages, cost, objective):
    assert result.feasible, result.message
    got = [(s.stage, s.variant, s.batch, s.replicas, s.cost) for s in result.stages]
    assert got == [(st, v, b, n, pytest.approx(c)) for st, v, b, n, c in expected_stages]
    assert result.cost == pytest.approx(cost)
    assert result.objective == pytest.approx(objective, abs=1e-12)


# ---- 1. One stage: the batch-filling time decides ---
# load 10 req/s, batches 1 and 2, alpha 1, beta 0.01, gamma 0.001, accuracy sum, a core costs 1.
#   small (70 %, 1 core):  b1 p99 50 ms, 20 req/s    b2 p99 80 ms, 25 req/s
#   big   (80 %, 2 cores): b1 p99 200 ms, 4 req/s    b2 p99 300 ms, 6 req/s
# Batch 2 waits (2 - 1) / 10 = 0.1 s to fill. Options (latency s, replicas, cost, objective):
#   small b1: 0.05,             ceil(10/20) = 1, 1 * 1 = 1,  0.70 - 0.01 - 0.001 = 0.689
#   small b2: 0.08 + 0.1 = 0.18, ceil(10/25) = 1, 1,         0.70 - 0.01 - 0.002 = 0.688
#   big b1:   0.20,             ceil(10/4) = 3,  3 * 2 = 6,  0.80 - 0.06 - 0.001 = 0.739
#   big b2:   0.30 + 0.1 = 0.40, ceil(10/6) = 2,  2 * 2 = 4,  0.80 - 0.04 - 0.002 = 0.758
# SLA 0.5 s: every option fits; big b2 is best. SLA 0.35 s: big b2 (0.40) no longer fits (it would without
# the filling time): big b1. SLA 0.15 s: only small b1 (0.05) fits. max_cost 3 at SLA 0.5 s: both big
# options cost more: small b1.
ONE_STAGE = _profiles(
    {"small": {1: (40, 50, 20), 2: (70, 80, 25)}, "big": {1: (150, 200, 4), 2: (250, 300, 6)}},
    "epyc",
    {"small": "cpu=1", "big": "cpu=2"},
)


def _one_stage(sla_s: float, **limits) -> PipelineSpec:
    return _spec(
        [
            {
                "name": "classify",
                "variants": [_variant("small", 70, "cpu", 1, "epyc"), _variant("big", 80, "cpu", 2, "epyc")],
            }
        ],
        sla_s=sla_s,
        objective={"alpha": 1.0, "beta": 0.01, "gamma": 0.001, "accuracy": "sum"},
        limits={"batch_sizes": [1, 2], "max_batch": 2, **limits},
        cost_per_unit={"cpu": 1.0},
    )


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    ("sla_s", "variant", "batch", "replicas", "cost", "objective"),
    [
        (0.5, "big", 2, 2, 4.0, 0.758),
        (0.35, "big", 1, 3, 6.0, 0.739),
        (0.15, "small", 1, 1, 1.0, 0.689),
    ],
)
def test_one_stage_where_the_batch_filling_time_decides(
    solver, sla_s, variant, batch, replicas, cost, objective
):
    p = plan(_one_stage(sla_s), ProfileSet(ONE_STAGE), 10.0, solver=solver)
    _check(p, [("classify", variant, batch, replicas, cost)], cost, objective)


@pytest.mark.parametrize("solver", ["milp", "brute"])  # the chain search does not model max_cost
def test_one_stage_under_a_cost_cap(solver):
    p = plan(_one_stage(0.5, max_cost=3.0), ProfileSet(ONE_STAGE), 10.0, solver=solver)
    _check(p, [("classify", "small", 1, 1, 1.0)], 1.0, 0.689)


# ---- 2. One stage on GPUs: the percentile, max_utilisation, the GPU price and max_replicas ---
# load 24 req/s, batches 1 and 2, SLA 0.2 s at p95, max_utilisation 0.75, a GPU costs 2.5, alpha 1,
# beta 0.01, gamma 0.001, accuracy sum. One GPU per replica.
#   va (60 %): b1 p95 20 ms (p99 40), 40 req/s     b2 p95 30 ms (p99 60), 60 req/s
#   vb (75 %): b1 p95 90 ms (p99 210), 10 req/s    b2 p95 120 ms (p99 260), 15 req/s
# Batch 2 waits 1/24 s = 0.041667 s. A replica is planned for 0.75 of its throughput:
#   va b1: 0.020 s,                 ceil(24/30) = 1,     cost 2.5,  0.60 - 0.025 - 0.001 = 0.574
#   va b2: 0.030 + 0.041667 s,      ceil(24/45) = 1,     cost 2.5,  0.60 - 0.025 - 0.002 = 0.573
#   vb b1: 0.090 s,                 ceil(24/7.5) = 4,    cost 10,   0.75 - 0.100 - 0.001 = 0.649
#   vb b2: 0.120 + 0.041667 = 0.161667 s, ceil(24/11.25) = 3, cost 7.5, 0.75 - 0.075 - 0.002 = 0.673
# At max_replicas 100 vb b2 is best (at p99 it would take 0.30 s, over the SLA; at full utilisation it
# would need 2 replicas). At max_replicas 2 neither vb option can carry the load: va b1.
GPU = _profiles(
    {"va": {1: (20, 40, 40), 2: (30, 60, 60)}, "vb": {1: (90, 210, 10), 2: (120, 260, 15)}},
    "h100",
    {"va": "gpu=1", "vb": "gpu=1"},
)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    ("max_replicas", "variant", "batch", "replicas", "cost", "objective"),
    [(100, "vb", 2, 3, 7.5, 0.673), (2, "va", 1, 1, 2.5, 0.574)],
)
def test_one_gpu_stage_priced_at_its_percentile_utilisation_and_unit_cost(
    solver, max_replicas, variant, batch, replicas, cost, objective
):
    spec = _spec(
        [
            {
                "name": "detect",
                "variants": [_variant("va", 60, "gpu", 1, "h100"), _variant("vb", 75, "gpu", 1, "h100")],
            }
        ],
        sla_s=0.2,
        latency_percentile="p95",
        objective={"alpha": 1.0, "beta": 0.01, "gamma": 0.001, "accuracy": "sum"},
        limits={"batch_sizes": [1, 2], "max_batch": 2, "max_utilisation": 0.75, "max_replicas": max_replicas},
        cost_per_unit={"gpu": 2.5},
    )
    p = plan(spec, ProfileSet(GPU), 24.0, solver=solver)
    _check(p, [("detect", variant, batch, replicas, cost)], cost, objective)


# ---- 3. Two stages sharing one latency budget, accuracy as a product ---
# load 4 req/s, batches 1 and 2, SLA 1.0 s at p99, alpha 1, beta 0.01, gamma 0, accuracy product, a core
# costs 1. Batch 2 waits 1/4 = 0.25 s.
#   detect   d-lo (50 %, 1 core):  b1 100 ms, 10 req/s -> 0.10 s, 1 replica, cost 1
#                                  b2 150 ms, 16 req/s -> 0.40 s, 1 replica, cost 1
#            d-hi (60 %, 2 cores): b1 300 ms, 2.5 req/s -> 0.30 s, ceil(1.6) = 2 replicas, cost 4
#                                  b2 320 ms, 5 req/s   -> 0.57 s, 1 replica, cost 2
#   classify c-lo (70 %, 1 core):  b1 100 ms, 10 req/s -> 0.10 s, 1 replica, cost 1
#                                  b2 150 ms, 16 req/s -> 0.40 s, 1 replica, cost 1
#            c-hi (90 %, 1 core):  b1 400 ms, 2.2 req/s -> 0.40 s, ceil(1.82) = 2 replicas, cost 2
#                                  b2 420 ms, 4.5 req/s -> 0.67 s, 1 replica, cost 1
# The best pairs (latency s, cost, 0.6 * 0.9 = 0.54 or as said, less 0.01 * cost):
#   d-hi b2 + c-hi b2: 1.24 s (never fits)
#   d-hi b2 + c-hi b1: 0.97 s, cost 4, 0.54 - 0.04 = 0.50
#   d-hi b1 + c-hi b2: 0.97 s, cost 5, 0.54 - 0.05 = 0.49
#   d-hi b1 + c-hi b1: 0.70 s, cost 6, 0.54 - 0.06 = 0.48
#   d-lo b1 + c-hi b2: 0.77 s, cost 2, 0.50 * 0.90 - 0.02 = 0.43   (every pair with a -lo scores less)
# With no headroom (budget 1.0 s) d-hi b2 + c-hi b1 is best. With latency_headroom 0.2 the budget is 0.8 s:
# only d-hi b1 + c-hi b1 keeps both heavy variants.
CHAIN = _profiles(
    {
        "d-lo": {1: (90, 100, 10), 2: (140, 150, 16)},
        "d-hi": {1: (280, 300, 2.5), 2: (300, 320, 5)},
        "c-lo": {1: (90, 100, 10), 2: (140, 150, 16)},
        "c-hi": {1: (380, 400, 2.2), 2: (400, 420, 4.5)},
    },
    "epyc",
    {"d-lo": "cpu=1", "d-hi": "cpu=2", "c-lo": "cpu=1", "c-hi": "cpu=1"},
)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    ("headroom", "expected", "cost", "objective"),
    [
        (0.0, [("detect", "d-hi", 2, 1, 2.0), ("classify", "c-hi", 1, 2, 2.0)], 4.0, 0.50),
        (0.2, [("detect", "d-hi", 1, 2, 4.0), ("classify", "c-hi", 1, 2, 2.0)], 6.0, 0.48),
    ],
)
def test_two_stages_share_the_latency_budget(solver, headroom, expected, cost, objective):
    spec = _spec(
        [
            {
                "name": "detect",
                "variants": [_variant("d-lo", 50, "cpu", 1, "epyc"), _variant("d-hi", 60, "cpu", 2, "epyc")],
            },
            {
                "name": "classify",
                "variants": [_variant("c-lo", 70, "cpu", 1, "epyc"), _variant("c-hi", 90, "cpu", 1, "epyc")],
            },
        ],
        sla_s=1.0,
        objective={"alpha": 1.0, "beta": 0.01, "gamma": 0.0, "accuracy": "product"},
        limits={"batch_sizes": [1, 2], "max_batch": 2, "latency_headroom": headroom},
        cost_per_unit={"cpu": 1.0},
    )
    p = plan(spec, ProfileSet(CHAIN), 4.0, solver=solver)
    _check(p, expected, cost, objective)
