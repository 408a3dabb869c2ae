"""The evaluation report's comparisons, on rows whose answers are known."""

import numpy as np
import pytest

from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.simulation.experiments import with_overrides
from ipa_airflow.simulation.report import markdown, targets
from tests.conftest import PIPELINES


def _row(policy, violations, accuracy, cost, pattern="bursty"):
    return {
        "pipeline": "p",
        "pattern": pattern,
        "policy": policy,
        "sla_violation_rate": violations,
        "mean_accuracy": accuracy,
        "mean_cost": cost,
    }


def test_ipa_against_per_stage_tells_a_tie_from_a_win_and_a_loss():
    rows = [
        _row("ipa", 0.001, 0.32, 2.0, "bursty"),
        _row("per-stage", 0.002, 0.32, 3.0, "bursty"),
        _row("ipa", 0.0, 0.30, 2.0, "steady-low"),
        _row("per-stage", 0.0, 0.30, 2.0, "steady-low"),
        _row("ipa", 0.02, 0.32, 2.0, "steady-high"),
        _row("per-stage", 0.01, 0.32, 3.0, "steady-high"),
    ]
    by = {t["pattern"]: t for t in targets(rows)}
    assert by["bursty"]["beats_per_stage"] and not by["bursty"]["same_as_per_stage"]
    assert by["bursty"]["cost_share_of_per_stage"] == 0.667
    assert by["steady-low"]["same_as_per_stage"] and not by["steady-low"]["beats_per_stage"]
    # Cheaper but with more violations is not a win.
    assert not by["steady-high"]["beats_per_stage"] and not by["steady-high"]["same_as_per_stage"]
    assert "beats_hpa" not in by["bursty"]


def test_the_window_table_leaves_the_fa2_high_share_empty_without_fa2_high():
    window = {
        "pipeline": "p",
        "policy": "ipa",
        "windows": 2,
        "violations_mean": 0.001,
        "violations_max": 0.002,
        "windows_over_1pct": 0,
        "accuracy_mean": 0.3,
        "cost_mean": 2.0,
        "planned_over_load_mean": 1.9,
        "carried_over_load_mean": 2.1,
    }
    report = {"rows": [], "targets": [], "seed": 0, "forecaster": "f", "random_windows": [window]}
    line = next(x for x in markdown(report).splitlines() if x.startswith("| p | ipa"))
    assert "nan" not in line and "| - |" in line
    report["random_windows"] = [{**window, "cost_share_of_fa2_high_mean": 0.74}]
    assert "| 74% |" in markdown(report)


def test_overrides_reach_the_adaptation_and_limits_sections_and_nothing_else():
    spec = load_pipeline(PIPELINES / "video-gpu.yaml").spec
    out = with_overrides(spec, {"quantile": 0.95, "latency_headroom": 0.25})
    assert out.adaptation.quantile == 0.95 and out.limits.latency_headroom == 0.25
    assert out.latency_budget_s == pytest.approx(0.75 * spec.sla_s)
    assert out.limits.max_utilisation == spec.limits.max_utilisation  # the rest of the section stays
    assert spec.limits.latency_headroom == 0.1  # the loaded spec is not changed
    with pytest.raises(ValueError, match="cannot override sla_s"):
        with_overrides(spec, {"sla_s": 1.0})
    with pytest.raises(ValueError, match="latency_headroom"):
        with_overrides(spec, {"latency_headroom": 1.5})


def test_the_hpa_target_asks_for_no_more_violations_at_no_more_cost():
    rows = [
        _row("ipa", 0.0, 0.30, 4.0, "bursty"),
        _row("hpa", 0.0, 0.35, 3.0, "bursty"),  # ipa costs more: not met, though ipa has no more violations
        _row("ipa", 0.001, 0.30, 2.0, "steady-low"),
        _row("hpa", 0.002, 0.35, 2.0, "steady-low"),  # same cost, fewer violations: met
    ]
    by = {t["pattern"]: t for t in targets(rows)}
    assert not by["bursty"]["hpa_violations_no_worse_at_no_more_cost"]
    assert by["steady-low"]["hpa_violations_no_worse_at_no_more_cost"]


def test_the_paper_comparison_sets_ours_beside_the_papers_ranges(tmp_path):
    from ipa_airflow.simulation.report import PAPER, paper_comparison, plot_pipeline

    rows = [
        {**_row(p, v, a, c, pat), "seconds_p99_within_sla": s, "p99_latency_s": 1.0}
        for pat, (ipa_acc, ipa_cost, s) in {
            "bursty": (0.33, 3.0, 0.99),
            "steady-high": (0.30, 2.0, 0.95),
        }.items()
        for p, v, a, c in (
            ("ipa", 0.0, ipa_acc, ipa_cost),
            ("fa2-low", 0.0, 0.30, 2.0),
            ("fa2-high", 0.0, 0.40, 8.0),
        )
    ]
    found = {c["pattern"]: c for c in paper_comparison(rows)}
    assert found["bursty"]["pas_gain_over_fa2_low"] == pytest.approx(0.1)
    assert found["bursty"]["cost_share_of_fa2_high"] == 0.375 and found["bursty"]["cost_over_fa2_low"] == 0.5
    assert found["steady-high"]["pas_gain_over_fa2_low"] == 0.0
    text = markdown(
        {"rows": [], "targets": [], "seed": 0, "forecaster": "f", "paper_comparison": list(found.values())}
    )
    ours = next(x for x in text.splitlines() if x.startswith("| **ours"))
    assert "+0% .. +10%" in ours and "25% .. 38%" in ours and "95% .. 95% (steady-high)" in ours
    assert f"{PAPER['cost_share_of_fa2_high'][1]:.0%}" in next(
        x for x in text.splitlines() if x.startswith("| **the paper")
    )
    assert plot_pipeline(rows, "p", tmp_path / "p.png").stat().st_size > 10_000


def test_the_oracle_peak_over_load_is_the_next_20_s_peak_over_the_mean():
    from ipa_airflow.simulation.results import peak_over_load

    load = np.array([1.0] * 10 + [3.0] + [1.0] * 29)  # mean 1.05; peaks of [0,20), [10,30), [20,40): 3, 3, 1
    assert peak_over_load(load) == round((7 / 3) / 1.05, 4)
    assert peak_over_load(np.ones(5)) is None  # shorter than the horizon
