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

SPEC = str(PIPELINES / "video-cpu.yaml")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_the_loop_decides_every_interval_follows_a_jump_and_skips_unreadable_ticks():
    rng = np.random.default_rng(0)
    series = np.concatenate([rng.poisson(6, 4000), rng.poisson(25, 400)]).astype(float)
    clock = Clock()
    replay = TraceReplay(series, origin=-3900.0)  # the loop starts 100 s before the load jumps
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
    assert summary.decisions == 20 and summary.skipped == []  # a fresh last forecast covers the outage
    assert "fallback: last good forecast" in records[5].forecast.note
    assert records[0].changed and records[0].why.endswith("nothing known to run")
    jump = next(r for r in records[10:] if r.changed)
    assert "cannot carry the load" in jump.why and jump.planned_load_rps > 20
    spec = load_spec(SPEC)
    assert config_id(spec.name, observe(spec, cluster)) == records[-1].plan.plan_id
    assert summary.changes == sum(r.changed for r in records) < summary.decisions


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
