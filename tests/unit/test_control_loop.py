"""The short-cadence loop: decisions every interval on a fake clock, against the simulated cluster."""

import numpy as np

from ipa_airflow.cluster.desired import observe
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.control_loop import run_loop
from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.forecasting.sources import LoadSourceError, TraceReplay
from ipa_airflow.plans import config_id
from ipa_airflow.spec import load_spec
from tests.conftest import PIPELINES
from tests.conftest import FakeClock as Clock

SPEC = str(PIPELINES / "video-cpu.yaml")


def test_the_loop_decides_every_interval_follows_a_jump_and_skips_unreadable_ticks():
    rng = np.random.default_rng(0)
    series = np.concatenate([rng.poisson(6, 4000), rng.poisson(40, 400)]).astype(float)
    clock = Clock()
    replay = TraceReplay(series, origin=-3897.0)  # the load jumps 103 s into the loop, between decisions
    cluster = SimulatedBackend(clock=clock, startup_s=5.0)
    fitted = forecaster("reactive").fit(series[:3600])
    down = {50.0}  # the load source fails at this second of the loop

    def read_rates(window_s):
        if clock() in down:
            raise LoadSourceError("cannot reach Prometheus")
        return replay.rates(end=clock(), window_s=window_s)

    records = []
    summary = run_loop(
        SPEC,
        read_rates=read_rates,
        fitted=fitted,
        backend=cluster,
        duration_s=200,
        record=records.append,
        clock=clock,
        sleep=clock.sleep,
    )
    decisions = [r for r in records if not r.extra.get("fast_path")]
    assert summary.decisions == len(decisions) == 20 and summary.skipped == []
    assert "fallback: last good forecast" in decisions[5].forecast.note  # it covers the outage
    assert decisions[0].changed and decisions[0].why.endswith("nothing known to run")
    # The jump at 100 s is met between decisions by the fast path (more replicas of what runs, at once),
    # and not again while its pods start; the next decision plans for it.
    bursts = [r for r in records if r.extra.get("fast_path")]
    assert summary.bursts == len(bursts) >= 1 and all(r.changed for r in bursts)
    first = bursts[0]
    assert "fast path" in first.why and first.planned_load_rps > 20
    assert records.index(first) == 11  # after the decisions at 0, 10, ..., 100 s: before the one at 110
    spec = load_spec(SPEC)
    assert config_id(spec.name, observe(spec, cluster)) == records[-1].plan.plan_id
    assert summary.changes == sum(r.changed for r in decisions) < summary.decisions


def test_a_tick_without_load_or_fresh_forecast_is_skipped_and_said_so():
    def read_rates(window_s):
        raise LoadSourceError("cannot reach Prometheus")

    clock = Clock()
    records = []
    summary = run_loop(
        SPEC,
        read_rates=read_rates,
        fitted=forecaster("reactive").fit(np.full(3600, 5.0)),
        backend=SimulatedBackend(clock=clock),
        duration_s=30,
        record=records.append,
        clock=clock,
        sleep=clock.sleep,
    )
    assert records == [] and summary.decisions == 0 and len(summary.skipped) == 3
    assert "cannot reach Prometheus" in summary.skipped[0]


def test_the_fast_path_reads_a_window_and_its_peak_and_refuses_what_is_not_a_rate():
    from ipa_airflow.control_loop import measured_rates
    from ipa_airflow.pipelines import load_pipeline

    pipeline = load_pipeline(SPEC)  # burst_window_s 5, stabilisation 4 x 10 s: 45 s asked for
    asked = []

    def rates(values):
        def read(window_s):
            asked.append(window_s)
            return np.asarray(values, float)

        return read

    now, peak = measured_rates(pipeline, rates([1.0] * 20 + [9.0] * 5 + [2.0] * 20))
    assert asked == [45] and now == 2.0 and peak == 9.0
    assert measured_rates(pipeline, rates([1.0, np.nan, 1.0, 1.0, 1.0])) == (None, None)
    assert measured_rates(pipeline, rates([1.0, 1.0])) == (None, None)  # shorter than the window


def test_a_fast_path_rollout_that_outlasts_the_run_ends_it():
    rng = np.random.default_rng(1)
    series = np.concatenate([rng.poisson(6, 4000), rng.poisson(40, 400)]).astype(float)
    clock = Clock()
    replay = TraceReplay(series, origin=-3993.0)  # the load jumps 7 s into the run, between decisions
    cluster = SimulatedBackend(clock=clock, startup_s=0.0)

    def record(rec):  # the first plan is up at once; from then on pods take 60 s to start
        cluster.startup_s = 60.0

    summary = run_loop(
        SPEC,
        read_rates=lambda w: replay.rates(end=clock(), window_s=w),
        fitted=forecaster("reactive").fit(series[:3600]),
        backend=cluster,
        duration_s=25,
        record=record,
        clock=clock,
        sleep=clock.sleep,
    )
    # The fast path's scale-up waits for its pods past the run's 25 s: the run ends there, no decision
    # after it.
    assert summary.bursts == 1 and summary.decisions == 1 and clock() < 80
