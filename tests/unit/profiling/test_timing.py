"""The timing loop with an injected clock: no sleeps, exact expectations."""

import itertools

import pytest

from ipa_airflow.profiling.timing import TimingSettings, measure


class FakeModel:
    """Each call 'takes' the next duration (seconds) on a fake clock."""

    def __init__(self, durations):
        self.durations = iter(durations)
        self.now = 0.0
        self.calls = 0

    def clock(self):
        return self.now

    def run(self):
        self.calls += 1
        self.now += next(self.durations)


def test_warm_up_waits_for_stable_timings_then_times_enough_calls():
    # Three slow cold calls, then a steady 10 ms.
    model = FakeModel(itertools.chain([0.5, 0.3, 0.2], itertools.repeat(0.010)))
    settings = TimingSettings(min_warmup=3, settle_cv=0.05, min_iters=20, min_seconds=0.5, max_iters=500)
    t = measure(model.run, 4, settings, clock=model.clock)
    assert t.warmup_calls == 6  # 3 cold + 3 steady calls before the last three agree
    assert len(t.samples_ms) == 50  # min_seconds (0.5 s) of 10 ms calls
    assert t.p50_ms == pytest.approx(10.0) and t.p99_ms == pytest.approx(10.0)
    assert t.cv == pytest.approx(0.0, abs=1e-9)
    assert t.throughput_rps == pytest.approx(400.0)
    assert not t.remeasured


def test_percentiles_of_a_known_distribution():
    durations = [0.001 * (i % 100 + 1) for i in range(1000)]  # 1..100 ms, repeating
    model = FakeModel(itertools.chain(itertools.repeat(0.001, 3), durations))
    settings = TimingSettings(min_warmup=3, min_iters=100, max_iters=100, min_seconds=0.0, noisy_cv=10)
    t = measure(model.run, 1, settings, clock=model.clock)
    assert t.p50_ms == pytest.approx(50.5)
    assert t.p99_ms == pytest.approx(99.01)
    assert t.mean_ms == pytest.approx(50.5)


def test_noisy_cells_are_measured_again_and_the_steadier_run_kept():
    noisy = [0.010, 0.030] * 10
    steady = [0.010] * 20
    model = FakeModel(itertools.chain([0.01] * 3, noisy, steady))
    settings = TimingSettings(min_warmup=3, min_iters=20, max_iters=20, min_seconds=0.0, noisy_cv=0.25)
    t = measure(model.run, 1, settings, clock=model.clock)
    assert t.remeasured
    assert t.cv == pytest.approx(0.0, abs=1e-9)
    assert model.calls == 3 + 20 + 20


def test_slow_models_stop_at_max_seconds():
    model = FakeModel(itertools.repeat(4.0))
    settings = TimingSettings(min_warmup=3, min_iters=20, max_seconds=30.0)
    t = measure(model.run, 8, settings, clock=model.clock)
    assert len(t.samples_ms) == 8  # 8 x 4 s passes 30 s; at least 5 calls are always kept
