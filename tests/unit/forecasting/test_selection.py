"""Choosing a forecaster by its quantile loss across rolling origins."""

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.backtesting.selection import Split, rolling_origins, select, summarise
from ipa_airflow.forecasting.sources import SECONDS_PER_DAY, write_trace


def test_each_origin_trains_on_every_day_before_it_and_tests_the_next_span():
    assert rolling_origins([6, 4], 2) == [Split((0, 3), (4, 5)), Split((0, 5), (6, 7))]
    with pytest.raises(ValueError, match="origin day 0 leaves no day to train on"):
        rolling_origins([0])


def _row(model, test, loss, under=0.01, over=0.3):
    return {
        "model": model,
        "train_days": [0, test - 1],
        "test_days": [test, test],
        "quantile_loss": loss,
        "under_prediction_rate": under,
        "mean_over_provisioning": over,
    }


def test_the_summary_ranks_by_mean_loss_and_counts_ranks_per_split():
    rows = [_row("a", 1, 0.010), _row("b", 1, 0.020), _row("a", 2, 0.030), _row("b", 2, 0.015)]
    first, second = summarise(rows, ["a", "b"])
    # a: mean 0.020, best on split 1; b: mean 0.0175, best on split 2: b has the lower mean loss.
    assert (
        first["model"] == "b"
        and first["quantile_loss_mean"] == 0.0175
        and first["quantile_loss_worst"] == 0.02
    )
    assert first["mean_rank"] == 1.5 and second["mean_rank"] == 1.5


def test_selection_on_a_trace_scores_held_out_days_and_chooses_the_lowest_loss(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rate = 5 + 3 * np.sin(np.arange(4 * SECONDS_PER_DAY) * 2 * np.pi / 3600)
    series = rng.poisson(rate).astype(float)
    report = select(series, rolling_origins([1, 2], 1), quantile=0.95, models=["reactive", "max"])
    assert {tuple(r["test_days"]) for r in report["rows"]} == {(1, 1), (2, 2)}
    assert all(r["train_days"][1] < r["test_days"][0] for r in report["rows"])
    best = min(report["summary"], key=lambda r: r["quantile_loss_mean"])
    assert report["chosen"] == best["model"] and len(report["rows"]) == 4
    trace = write_trace(tmp_path / "t.txt.gz", series)
    args = [
        "forecast",
        "select",
        "--trace",
        str(trace),
        "--damping",
        "1",
        "--models",
        "reactive",
        "--baseline",
        "max",
    ]
    # The report days must be days no split scored.
    assert main([*args, "--origins", "1,2", "--test-span", "1", "--report-days", "2-3"]) == 2
    assert "overlap the splits' test days" in capsys.readouterr().err
    assert main([*args, "--origins", "1", "--test-span", "1", "--report-days", "3-3", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["chosen"] == "reactive" and out["report"][0]["test_days"] == [3, 3]
    assert out["report"][0]["train_days"] == [0, 2] and out["report"][1]["model"] == "max"
