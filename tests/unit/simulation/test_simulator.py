"""The simulator on small, checkable cases: conservation, determinism, make-before-break, policies."""

import numpy as np
import pytest

from ipa_airflow.forecasting.registry import forecaster
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.simulation.patterns import find_patterns
from ipa_airflow.simulation.policies import HpaPolicy, make_policy
from ipa_airflow.simulation.simulator import Simulator
from tests.conftest import PIPELINES


@pytest.fixture(scope="module")
def cpu():
    return load_pipeline(PIPELINES / "video-cpu.yaml")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    return forecaster("exp-smoothing").fit(rng.poisson(8, 4 * 3600).astype(float))


def _run(cpu, counts, policy_name, fitted, seed=0):
    pol = make_policy(policy_name, cpu.spec, cpu.profiles, fitted)
    history = np.full(3600, float(np.mean(counts[:60])))
    return Simulator(cpu.spec, cpu.profiles, counts, pol, history=history, seed=seed).run()


def test_every_request_is_completed_or_dropped_and_runs_are_deterministic(cpu, fitted):
    counts = np.full(300, 6.0)
    a = _run(cpu, counts, "ipa", fitted)
    b = _run(cpu, counts, "ipa", fitted)
    assert a.sent == 1800  # 6 req/s, whole numbers: no randomness in the count
    assert a.completed + a.dropped == a.sent
    assert a.summary() | {"wall_s": 0, "solver_s": 0, "solver_share": 0} == b.summary() | {
        "wall_s": 0,
        "solver_s": 0,
        "solver_share": 0,
    }
    c = _run(cpu, counts, "ipa", fitted, seed=1)
    assert not np.array_equal(a.latencies, c.latencies)


def test_steady_load_within_capacity_meets_the_sla(cpu, fitted):
    r = _run(cpu, np.full(600, 5.0), "ipa", fitted)
    assert r.violation_rate < 0.01
    assert r.summary()["seconds_p99_within_sla"] > 0.98


def test_overload_without_adaptation_drops_requests(cpu, fitted):
    counts = np.concatenate([np.full(60, 2.0), np.full(240, 60.0)])
    r = _run(cpu, counts, "rim", fitted)  # 4 fixed replicas cannot carry 60 req/s
    assert r.dropped > 0 and r.violation_rate > 0.2


def test_make_before_break_keeps_old_replicas_until_new_ones_are_ready(cpu, fitted):
    pol = make_policy("ipa", cpu.spec, cpu.profiles, fitted)
    sim = Simulator(cpu.spec, cpu.profiles, np.full(100, 5.0), pol, history=np.full(3600, 5.0))
    first = pol.decide(0.0, np.full(3600, 5.0)).plan
    sim.apply(0.0, first, initial=True)
    other = next(v.name for v in cpu.spec.stage("detect").variants if v.name != first.stages[0].variant)
    from dataclasses import replace

    switched = replace(first, stages=(replace(first.stages[0], variant=other), *first.stages[1:]))
    sim.apply(5.0, switched)
    startup = cpu.spec.stage("detect").variants[0].startup_s
    serving = [s for s in sim.servers[0] if s.ready_at <= 6.0 and not s.retiring]
    assert serving and all(s.variant == first.stages[0].variant for s in serving)
    sim._on_up(5.0 + startup, 0)
    live = [s for s in sim.servers[0] if not s.retiring]
    assert live and all(s.variant == other for s in live)


def test_hpa_scales_up_at_once_and_down_only_after_stabilisation(cpu):
    hpa = HpaPolicy(cpu.spec, cpu.profiles, {"detect": "frcnn-mnv3-320", "classify": "resnet50"})
    high = hpa.decide(0.0, np.full(300, 20.0)).plan
    up = dict(hpa.replicas)
    low = hpa.decide(15.0, np.full(300, 2.0)).plan
    assert hpa.replicas == up  # within 300 s: the high recommendation still holds
    later = hpa.decide(400.0, np.full(300, 2.0)).plan
    assert later.stages[0].replicas < high.stages[0].replicas
    assert all(s.batch == 1 for s in low.stages)


def test_patterns_follow_their_rules():
    rng = np.random.default_rng(0)
    t = np.arange(86_400)
    trace = rng.poisson(8 + 6 * np.sin(2 * np.pi * t / 86_400)).astype(float)
    trace[40_000:40_600] += 25  # one burst
    found = find_patterns(trace)
    assert set(found) == {"bursty", "steady-low", "steady-high", "fluctuating"}
    assert found["steady-low"].mean_rps < found["steady-high"].mean_rps
    start = found["bursty"].pieces[0][0]
    assert start <= 40_600 and start + 1200 >= 40_000
    assert len(found["fluctuating"].pieces) == 2


def test_evaluation_on_the_shipped_trace_meets_the_bursty_target_and_summarises_random_windows(tmp_path):
    """The issue's hardest case, as the shipped CPU spec is set up: the bursty window under 1 % violations,
    cheaper than fa2-high and no worse than hpa; plus the random-window summary and the report files."""
    from ipa_airflow.forecasting.sources import read_trace
    from ipa_airflow.settings import default_trace
    from ipa_airflow.simulation.evaluation import evaluate

    trace = read_trace(default_trace(), damping=8)
    report = evaluate(
        [str(PIPELINES / "video-cpu.yaml")],
        trace,
        tmp_path,
        patterns=["bursty"],
        policies=["ipa", "fa2-high", "hpa"],
        model="exp-smoothing",
        random_windows=2,
    )
    [target] = report["targets"]
    assert target["violations_under_1pct"] and target["cost_under_60pct_of_fa2_high"] and target["beats_hpa"]
    assert {r["quantile"] for r in report["rows"]} == {0.99}
    assert target["fa2_high_at_minimum_cost"] is False  # 2 cores is the least; fa2-high needs far more
    summary = {r["policy"]: r for r in report["random_windows"]}
    assert set(summary) == {"ipa", "fa2-high", "hpa"} and summary["ipa"]["windows"] == 2
    assert summary["fa2-high"]["cost_share_of_fa2_high_mean"] == 1.0
    # ipa sizes its plans for an upper quantile of the forecast peak: above the load that came, not wildly.
    assert 1.0 < summary["ipa"]["planned_over_load_mean"] < 4.0
    assert "planned / load" in (tmp_path / "evaluation.md").read_text()
    assert "random 20-minute windows" in (tmp_path / "evaluation.md").read_text()
    assert (tmp_path / "video-cpu_bursty.png").stat().st_size > 10_000


def test_minimum_cost_is_one_replica_of_the_cheapest_shape_per_stage(cpu):
    from ipa_airflow.simulation.evaluation import minimum_cost

    assert minimum_cost(cpu.spec) == 2.0  # two stages, one core each at least
    gpu = load_pipeline(PIPELINES / "video-3stage-gpu.yaml")
    assert minimum_cost(gpu.spec) == 3.0


def test_the_per_stage_baseline_keeps_each_stage_in_its_share_while_the_load_moves(cpu, fitted):
    pol = make_policy("per-stage", cpu.spec, cpu.profiles, fitted)
    share = cpu.spec.latency_budget_s / len(cpu.spec.stages)
    observed = np.full(600, 3.0)
    for now, rate in enumerate([3.0, 12.0, 25.0, 6.0, 2.0], start=1):
        observed = np.concatenate([observed, np.full(30, rate)])
        d = pol.decide(600.0 + 30 * now, observed)
        assert d.plan.policy == "per-stage" and d.plan.feasible
        for s in d.plan.stages:
            fill = (s.batch - 1) / d.planned_load if s.batch > 1 else 0.0
            assert s.latency_s + fill <= share + 1e-9, (now, s)
    r = _run(cpu, np.concatenate([np.full(120, 4.0), np.full(180, 14.0)]), "per-stage", fitted)
    assert r.completed + r.dropped == r.sent and r.summary()["policy"] == "per-stage"
