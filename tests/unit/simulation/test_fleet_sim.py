"""Several pipelines replayed at once: decided together (joint) or alone and cut to fit (independent).
Tiny synthetic traces, a reactive forecaster: seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ipa_airflow.control.fleet import plan_usage
from ipa_airflow.fleet import Fleet, load_fleet
from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.optimizer import plan as solve
from ipa_airflow.simulation import fleet_sim as fs
from tests.conftest import PIPELINES

# Low, a burst, low again: each pipeline replays its own part of it.
TRACE = np.concatenate([np.full(300, 5.0), np.full(150, 25.0), np.full(300, 5.0)])
STARTS = {"video-cpu": 250, "paper-sum-qa": 280}


def _fleet(folder: Path, cpu: float) -> Fleet:
    path = folder / f"fleet-{cpu:g}.yaml"
    path.write_text(
        f"name: t\npipelines:\n  - spec: {PIPELINES / 'video-cpu.yaml'}\n"
        f"  - spec: {PIPELINES / 'paper/sum-qa.yaml'}\nquota: {{cpu: {cpu}}}\n"
    )
    return load_fleet(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fleet-sim")


@pytest.fixture(scope="module")
def fitted():
    return forecaster("reactive").fit(TRACE[:200], seed=0, start_s=0)


@pytest.fixture(scope="module")
def runs(folder, fitted):
    fleet = _fleet(folder, 20)
    return {mode: fs.run_fleet(fleet, TRACE, STARTS, 150, mode, fitted=fitted) for mode in fs.MODES}


def test_the_cut_scales_every_stage_by_its_pools_factor_and_keeps_one_replica(folder):
    fleet = _fleet(folder, 20)
    p = solve(fleet.member("video-cpu").pipeline.spec, fleet.member("video-cpu").pipeline.profiles, 30.0)
    asked = plan_usage(p, ("cpu",))["cpu"]
    assert fs.cut_factors({"cpu": asked}, {"cpu": asked}) == {}
    factors = fs.cut_factors({"cpu": 2 * asked}, {"cpu": asked})
    assert factors == {"cpu": pytest.approx(0.5)}
    config = fs.cut_config(p, factors)
    for key, s in zip(config, p.stages, strict=True):
        assert key[:6] == s.config_key[:6] and key[6] == max(1, s.replicas // 2)
    assert fs.cut_config(p, {"gpu": 0.1}) == tuple(s.config_key for s in p.stages)  # no cpu pool over


def test_joint_plans_never_ask_more_than_the_quota_and_independent_ones_do(runs):
    joint, alone = runs["joint"].summary(), runs["independent"].summary()
    assert joint["rounds"] == alone["rounds"] == 15  # a decision every 10 s of 150
    assert joint["rounds_over_quota"] == 0 and joint["pools"]["cpu"]["asked_max"] <= 20
    assert alone["rounds_over_quota"] > 0 and alone["pools"]["cpu"]["asked_max"] > 20
    assert joint["rounds_quota_binds"] > 0
    # The cut is what the independent pipelines got: within the quota where one replica per stage allows.
    for rd in runs["independent"].rounds:
        assert rd.planned["cpu"] <= rd.asked["cpu"]
    # Both modes replay the same requests.
    assert joint["sent"] == alone["sent"] > 0
    assert set(joint["pipelines"]) == {"video-cpu", "paper-sum-qa"}
    assert joint["max_round_spread_s"] < 10


def test_every_pipeline_is_decided_every_round_in_step(runs):
    for run in runs.values():
        assert [rd.second for rd in run.rounds] == [10.0 * k for k in range(15)]
        assert all(set(rd.decided) == set(STARTS) for rd in run.rounds)
        assert len(run.use["cpu"]) == 150 and run.use["cpu"].max() > 0


def test_a_run_is_deterministic(folder, fitted, runs):
    again = fs.run_fleet(_fleet(folder, 20), TRACE, STARTS, 150, "joint", fitted=fitted)
    a, b = again.summary(), runs["joint"].summary()
    for key in ("sent", "violations", "mean_accuracy", "cost", "rounds_quota_binds", "objective_mean"):
        assert a[key] == b[key]
    assert np.array_equal(again.use["cpu"], runs["joint"].use["cpu"])


def test_the_report_aggregates_and_prints_every_figure_the_issue_asks_for(runs):
    per = [{m: r.summary() for m, r in runs.items()}] * 2
    overall = {m: fs.aggregate([p[m] for p in per]) for m in fs.MODES}
    assert overall["joint"]["sent"] == 2 * runs["joint"].summary()["sent"]
    over = runs["independent"].summary()["rounds_over_quota"]
    assert overall["independent"]["rounds_over_quota"] == 2 * over
    report = {
        "fleet": "t",
        "quota": {"cpu": 20.0},
        "pipelines": list(STARTS),
        "windows": 2,
        "duration_s": 150,
        "overall": overall,
    }
    text = fs.markdown(report)
    for said in ("SLA violations", "accuracy", "decision rounds over the quota", "video-cpu", "paper-sum-qa"):
        assert said in text


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["simulate", "fleet"], "needs a fleet spec: ipa simulate fleet"),
        (["simulate", "fleet", "{pipeline}"], "invalid fleet spec"),
        (["simulate", "fleet", "{fleet}", "--windows", "0"], "--windows must be at least 1"),
        (["simulate", "fleet", "{fleet}", "--policy", "hpa"], "a fleet is planned under one of"),
        (["simulate", "{pipeline}", "{fleet}"], "is only for 'fleet'"),
        # Options the fleet replay does not read are refused, never silently ignored.
        # A trace without the windows asked for fails before the (minute-long) fit, saying what to do.
        (["simulate", "fleet", "{fleet}", "--duration", "600"], "hold no 600-s window"),
        (["simulate", "fleet", "{fleet}", "--quantile", "0.95"], "--quantile: not read by 'simulate fleet'"),
        (["simulate", "fleet", "{fleet}", "--stabilisation", "3", "--pattern", "bursty"], "--pattern, --s"),
    ],
)
def test_simulate_fleet_refuses_bad_input_before_fitting_the_forecaster(
    argv, says, folder, tmp_path, capsys, monkeypatch
):
    from ipa_airflow.cli import main

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted the forecaster before checking the input")

    monkeypatch.setattr("ipa_airflow.simulation.experiments.fit_forecaster", no_fit)
    trace = tmp_path / "t.txt"
    trace.write_text("5\n" * 100)
    paths = {"pipeline": str(PIPELINES / "video-cpu.yaml"), "fleet": str(_fleet(folder, 20).source)}
    assert main([*(a.format(**paths) for a in argv), "--trace", str(trace)]) == 2
    assert says in capsys.readouterr().err
