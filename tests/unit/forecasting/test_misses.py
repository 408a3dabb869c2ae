"""Where a backtest missed, by minute of the hour and hour of the day, in the CLI and its plot."""

import contextlib
import io
import json

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.backtesting.backtest import Walk
from ipa_airflow.forecasting.backtesting.misses import MissProfile
from ipa_airflow.reports.forecast_plot import plot_misses


def walk_missing_minute(minute: int, *, start_s: int, seconds: int) -> Walk:
    """Decisions every 10 s from `start_s`, missed exactly in `minute` of every hour."""
    t = start_s + np.arange(0, seconds, 10)
    actual = np.where((t % 3600) // 60 == minute, 20.0, 5.0)
    return Walk(t, np.full(len(t), 10.0), actual, np.zeros(len(t), dtype=bool), 0.0)


def test_misses_are_placed_by_the_clock_of_the_decisions():
    # Starting mid-day and mid-hour: the minute and hour come from the decision times, not the index.
    w = walk_missing_minute(31, start_s=86_400 + 5 * 3600 + 1234, seconds=2 * 86_400)
    p = MissProfile.of(w)
    assert p.overall == pytest.approx(1 / 60, rel=0.01)
    assert p.by_minute_of_hour[31] == 1.0
    assert np.nansum(p.by_minute_of_hour) == 1.0
    assert np.allclose(p.by_hour_of_day, 1 / 60)
    assert p.worst_minutes(2) == [(31, 1.0), (0, 0.0)]


def test_minutes_without_decisions_are_left_out_not_counted_as_clean():
    p = MissProfile.of(walk_missing_minute(3, start_s=0, seconds=600))  # only minutes 0-9 of one hour
    d = p.to_dict()
    assert d["by_minute_of_hour"][3] == 1.0 and d["by_minute_of_hour"][10] is None
    assert [m for m, _ in p.worst_minutes(20)] == [3, 0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert d["by_hour_of_day"][0] == pytest.approx(0.1) and d["by_hour_of_day"][1] is None


def test_the_plot_is_written(tmp_path):
    w = walk_missing_minute(31, start_s=0, seconds=86_400)
    path = plot_misses(w, MissProfile.of(w), tmp_path / "sub" / "misses.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_backtest_command_shows_where_a_scheduled_burst_is_missed(tmp_path):
    # Load that triples for five minutes from :31:50 of every hour: the reactive forecaster misses
    # each onset, so :31 is the worst minute (its last decisions see the burst coming into the horizon).
    rng = np.random.default_rng(0)
    phase = np.arange(2 * 86_400) % 3600
    rate = np.where((phase >= 1910) & (phase < 2210), 120.0, 40.0)
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(str(int(v)) for v in rng.poisson(rate)))
    png = tmp_path / "misses.png"
    args = ["forecast", "backtest", "--trace", str(trace), "--train-days", "0", "--test-days", "1"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*args, "--model", "reactive", "--quantile", "0.95", "--plot", str(png), "--json"]) == 0
    out = json.loads(buf.getvalue())
    by_minute = out["misses"]["by_minute_of_hour"]
    assert max(range(60), key=lambda m: by_minute[m]) == 31
    assert by_minute[31] > 5 * out["misses"]["overall"]
    assert out["misses"]["overall"] == pytest.approx(out["under_prediction_rate"])
    assert out["plot"] == str(png) and png.stat().st_size > 0

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*args, "--model", "reactive", "--quantile", "0.95"]) == 0
    assert "most under-predicted minutes of the hour: :31" in buf.getvalue()
