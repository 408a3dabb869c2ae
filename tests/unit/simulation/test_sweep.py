"""The provisioning trade-off sweep: its grid, its choice and one small replay."""

import json

import pytest

from ipa_airflow.cli import main
from ipa_airflow.simulation.sweep import choose, choose_per_pipeline, parse_grid, short
from tests.conftest import PIPELINES


def test_the_grid_is_every_combination_and_a_bad_one_is_named():
    grid = parse_grid("quantile=0.95,0.99; stabilisation=1,4")
    assert grid == [
        {"quantile": 0.95, "stabilisation": 1},
        {"quantile": 0.95, "stabilisation": 4},
        {"quantile": 0.99, "stabilisation": 1},
        {"quantile": 0.99, "stabilisation": 4},
    ]
    assert short("quantile=0.95 stabilisation=1") == "q0.95 s1"
    with pytest.raises(ValueError, match="'quantile' is not NAME=V1,V2"):
        parse_grid("quantile")
    with pytest.raises(ValueError, match="'high' is not a number"):
        parse_grid("quantile=high")


def _ipa(pipeline, setting, violations, carried, worst=None):
    return {
        "pipeline": pipeline,
        "kind": "ipa",
        "setting": setting,
        "overrides": {},
        "violations_mean": violations,
        "violations_max": violations if worst is None else worst,
        "planned_over_load_mean": carried - 0.1,
        "carried_over_load_mean": carried,
        "cost_mean": 1.0,
    }


def test_the_choice_is_the_leanest_setting_under_the_target_on_every_pipeline():
    rows = [
        _ipa("a", "q0.9", 0.002, 1.2),
        _ipa("b", "q0.9", 0.02, 1.2),  # over the target on one pipeline: out, however lean
        _ipa("a", "q0.95", 0.001, 1.5),
        _ipa("b", "q0.95", 0.004, 1.4),
        _ipa("a", "q0.99", 0.0, 2.0),
        _ipa("b", "q0.99", 0.0, 2.0),
    ]
    chosen = choose(rows)
    assert chosen["setting"] == "q0.95" and chosen["carried_over_load_mean"] == 1.45
    assert chosen["violations_mean_worst_pipeline"] == 0.004
    assert choose([_ipa("a", "q0.9", 0.02, 1.0)]) is None


def test_a_sweep_replays_each_setting_beside_the_baselines_and_marks_the_specs_own(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "simulate", "sweep", "--pipelines", str(PIPELINES / "video-cpu.yaml"),
        "--grid", "quantile=0.95,0.99", "--random-windows", "1", "--forecaster", "reactive",
        "--train-days", "0-5", "--window-days", "6-9", "--out", str(out), "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    kinds = [(r["kind"], r["setting"]) for r in report["rows"]]
    assert ("ipa", "quantile=0.95") in kinds and ("ipa", "quantile=0.99") in kinds
    assert {s for k, s in kinds if k == "baseline"} == {"fa2-low", "fa2-high", "hpa"}
    assert ("spec", "quantile=0.99") in kinds  # video-cpu's own setting
    assert all(6 * 86400 <= s and s + 1200 <= 10 * 86400 for s in report["windows"])
    assert (out / "sweep.png").stat().st_size > 10_000 and "| video-cpu | quantile=0.95 |" in (
        out / "sweep.md"
    ).read_text()
    # Windows inside the training days would score the forecaster on what it learnt.
    assert main([*argv[:-5], "--train-days", "0-9", "--window-days", "6-9", "--out", str(out)]) == 2
    assert "must come after the days the forecaster trains on" in capsys.readouterr().err


def test_a_setting_missing_on_a_pipeline_is_never_chosen_and_a_bad_grid_fails_before_any_replay(monkeypatch):
    rows = [_ipa("a", "q2", 0.0, 1.0), _ipa("a", "q1", 0.0, 1.5), _ipa("b", "q1", 0.0, 1.5)]
    assert choose(rows)["setting"] == "q1"  # q2 never ran on b
    with pytest.raises(ValueError, match="names quantile twice"):
        parse_grid("quantile=0.9;quantile=0.99")
    assert parse_grid("quantile=0.99,0.990") == [{"quantile": 0.99}]

    from ipa_airflow.simulation import experiments, sweep

    monkeypatch.setattr(experiments, "fit_forecaster", pytest.fail)
    monkeypatch.setattr(experiments, "run_case", pytest.fail)
    with pytest.raises(ValueError, match="--grid quantile=0.97: adaptation.quantile: forecasts carry"):
        sweep.sweep(
            [str(PIPELINES / "video-cpu.yaml")],
            None,
            parse_grid("quantile=0.97"),
            train_days=(0, 5),
            window_days=(6, 9),
            windows=1,
            out=None,
        )


def test_per_pipeline_the_leanest_setting_with_no_window_over_the_target():
    rows = [
        _ipa("a", "q0.8", 0.004, 1.3, worst=0.03),  # under on average, not in every window: out
        _ipa("a", "q0.99", 0.0, 1.9),
        _ipa("b", "q0.8", 0.0, 1.4),
        _ipa("b", "q0.99", 0.0, 1.9),
        _ipa("c", "q0.99", 0.02, 1.9, worst=0.05),  # no setting holds: c is left out, not guessed
    ]
    per = choose_per_pipeline(rows)
    assert {k: v["setting"] for k, v in per.items()} == {"a": "q0.99", "b": "q0.8"}
