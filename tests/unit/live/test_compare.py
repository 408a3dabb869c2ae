"""The side-by-side of a simulated and a measured run: gaps, agreement flags and the table."""

import numpy as np

from ipa_airflow.live.compare import markdown, side_by_side
from ipa_airflow.simulation.results import SimResult
from ipa_airflow.simulation.simulator import arrival_times, per_second_p99


def _result(latencies, late, dropped, sent=100) -> SimResult:
    lat = np.asarray(latencies, float)
    per = {k: np.ones(10) for k in ("load", "planned", "accuracy", "cost")}
    per["p99_s"] = np.full(10, 0.1)
    return SimResult("ipa", 10, sent, sent - dropped, late, dropped, lat, per, 1, 0.0, 10.0, 0.25)


def test_gaps_and_flags_follow_the_targets():
    sim = _result(np.linspace(0.05, 0.10, 100), late=0, dropped=0)
    close = side_by_side(sim, _result(np.linspace(0.05, 0.11, 100), late=0, dropped=0))
    assert close["p99_within_20pct"] and close["violations_within_1pp"]
    far = side_by_side(sim, _result(np.linspace(0.05, 0.30, 100), late=3, dropped=0))
    assert not far["p99_within_20pct"] and not far["violations_within_1pp"]
    assert far["violation_gap"] == -0.03 and far["p99_gap"] < -0.5
    table = markdown({"policies": [close, far]})
    assert table.count("| ipa |") == 2 and "| no | no |" in table


def test_arrivals_follow_the_counts_and_dropped_requests_count_as_infinitely_late():
    rng = np.random.default_rng(0)
    arrivals = arrival_times(np.array([3.0, 0.0, 2.0]), rng)
    assert list(np.floor(arrivals).astype(int)) == [0, 0, 0, 2, 2]
    p99 = per_second_p99(arrivals, np.array([0.1, 0.1, np.nan, 0.2, 0.2]), 3)
    assert np.isinf(p99[0]) and np.isnan(p99[1]) and abs(p99[2] - 0.2) < 1e-9


def test_a_calibration_file_is_checked_against_the_pipeline(tmp_path):
    import json

    import pytest

    from ipa_airflow.cli.live import _calibration
    from ipa_airflow.spec import load_spec

    spec = load_spec("profiles/live/two-stage-cpu.yaml")
    good = tmp_path / "a.json"
    levels = [0, 0, 1, 2, 3, 4, 5, 6, 40, 100]
    good.write_text(json.dumps({"calibration": {"overhead_ms": {"first": levels, "second": [0] * 10}}}))
    got = _calibration(str(good), spec)
    assert got["first"][-1] == 0.1 and got["second"] == [0.0] * 10
    cases = {
        "missing.json": "cannot read it",
        "notjson.json": "not an `ipa live run --out` report",
        "other.json": "not stages of live-cpu",
        "text.json": "must map stage names to 10 milliseconds each",
    }
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "other.json").write_text(json.dumps({"calibration": {"overhead_ms": {"detect": [3] * 10}}}))
    (tmp_path / "text.json").write_text(json.dumps({"calibration": {"overhead_ms": {"first": 3}}}))
    for name, why in cases.items():
        with pytest.raises(ValueError, match=why):
            _calibration(str(tmp_path / name), spec)
