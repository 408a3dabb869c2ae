"""The fleet's loop: every pipeline's forecast into one decision under the quota, reconciled in order, one
record per pipeline, on a fake clock against the simulated cluster."""

import numpy as np
import pytest
import yaml

from ipa_airflow.cluster.desired import observe
from ipa_airflow.cluster.fleet_reconcile import running_usage
from ipa_airflow.cluster.simulated import SimulatedBackend
from ipa_airflow.fleet import load_fleet
from ipa_airflow.fleet_loop import run_fleet_loop
from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.forecasting.sources import LoadSourceError, TraceReplay
from ipa_airflow.plans import config_id
from tests.conftest import PIPELINES
from tests.conftest import FakeClock as Clock

# Alone, video-cpu at 5 req/s takes 7 cores (2 for a little less accuracy); paper-audio-sent takes 11 at
# 5 req/s and 19 at 10 (8 for much less). Together 18 cores, then 26: over a quota of 21, which holds 2 + 19.
QUOTA = 21


@pytest.fixture
def fleet_file(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "two",
                "pipelines": [  # the growing one first: the reconcile's order must come from the usage
                    {"spec": str(PIPELINES / "paper" / "audio-sent.yaml")},
                    {"spec": str(PIPELINES / "video-cpu.yaml")},
                ],
                "quota": {"cpu": QUOTA},
            }
        )
    )
    return str(path)


def test_the_fleet_is_decided_together_every_interval_and_never_runs_over_its_quota(fleet_file):
    clock = Clock()
    cluster = SimulatedBackend(clock=clock, startup_s=5.0)
    steady = TraceReplay(np.full(4000, 5.0), origin=-3700.0)
    # paper-audio-sent's load doubles 60 s into the loop: the quota binds from then on.
    jump = TraceReplay(np.concatenate([np.full(3760, 5.0), np.full(400, 10.0)]), origin=-3700.0)
    sources = {"video-cpu": steady, "paper-audio-sent": jump}
    fleet = load_fleet(fleet_file)
    specs = {m.name: m.pipeline.spec for m in fleet.members}
    records, usage_at_records = [], []

    def record(rec):
        records.append(rec)
        usage_at_records.append(sum(running_usage(s, cluster, ("cpu",))["cpu"] for s in specs.values()))

    summary = run_fleet_loop(
        fleet_file,
        read_rates_for=lambda name: lambda window_s: sources[name].rates(end=clock(), window_s=window_s),
        fitted=forecaster("reactive").fit(np.full(3600, 5.0)),
        backend=cluster,
        duration_s=120,
        record=record,
        clock=clock,
        sleep=clock.sleep,
    )
    decisions = [r for r in records if not r.extra.get("fast_path")]
    assert summary.ticks == 12 and summary.decisions == len(decisions) == 24 and summary.skipped == []
    assert [r.pipeline for r in decisions[:2]] == ["paper-audio-sent", "video-cpu"]  # one per pipeline
    assert summary.failed_reconciles == 0
    assert max(usage_at_records) <= QUOTA  # between every step, bursts included
    first, late = decisions[0].extra["fleet"], decisions[-1].extra["fleet"]
    assert first["name"] == "two" and first["apply"]["kind"] == "takes"  # nothing ran before
    # When the load doubles, video-cpu gives 5 of its 7 cores back before paper-audio-sent takes 8 more
    # (7 + 19 = 26 in the other order).
    [(grows, shrinks)] = [
        (a.extra["fleet"]["apply"], v.extra["fleet"]["apply"])
        for a, v in zip(decisions[2::2], decisions[3::2], strict=True)
        if v.extra["fleet"]["apply"]["kind"] == "frees"
    ]
    assert grows["kind"] == "takes" and shrinks["step"] < grows["step"]
    assert shrinks["after"] == {"cpu": 2.0} and grows["after"] == {"cpu": 19.0}
    # Before the jump the quota has room: no pipeline pays for it. After it, one does, and says so.
    assert first["quota_cost"] == pytest.approx(0.0, abs=1e-9) and not first["quota_binds"]
    costs = {r.pipeline: r.extra["fleet"]["quota_cost"] for r in decisions[-2:]}
    assert any(c is not None and c > 1e-6 for c in costs.values()), costs
    assert late["objective_alone"] is not None
    for name, spec in specs.items():  # the cluster runs the last decision of each pipeline
        last = [r for r in records if r.pipeline == name][-1]
        assert config_id(name, observe(spec, cluster)) == last.plan.plan_id
    assert summary.changes == sum(r.changed for r in decisions) >= 3


def test_a_pipeline_without_load_skips_the_fleet_tick_and_says_so(fleet_file):
    clock = Clock()

    def read_rates_for(name):
        def read(window_s):
            if name == "paper-audio-sent":
                raise LoadSourceError("cannot reach Prometheus")
            return np.full(window_s, 5.0)

        return read

    records = []
    summary = run_fleet_loop(
        fleet_file,
        read_rates_for=read_rates_for,
        fitted=forecaster("reactive").fit(np.full(3600, 5.0)),
        backend=SimulatedBackend(clock=clock),
        duration_s=30,
        record=records.append,
        clock=clock,
        sleep=clock.sleep,
    )
    assert records == [] and summary.ticks == 0 and len(summary.skipped) == 3
    assert "cannot reach Prometheus" in summary.skipped[0]


def test_a_forecaster_missing_for_a_pipeline_is_said_before_the_loop(fleet_file):
    with pytest.raises(ValueError, match="no forecaster for pipeline 'paper-audio-sent'"):
        run_fleet_loop(
            fleet_file,
            read_rates_for=lambda name: lambda w: np.full(w, 5.0),
            fitted={"video-cpu": forecaster("reactive").fit(np.full(3600, 5.0))},
            backend=SimulatedBackend(),
            duration_s=0,
            record=lambda r: None,
        )


def test_ipa_fleet_spec_is_a_file_or_refused_naming_the_variable(tmp_path):
    from ipa_airflow.settings import SettingsError, load_settings

    fleet = PIPELINES.parent / "fleets" / "example.yaml"
    assert load_settings({"IPA_FLEET_SPEC": str(fleet)}).fleet_spec == fleet.resolve()
    assert load_settings({"IPA_FLEET_SPEC": ""}).fleet_spec is None
    with pytest.raises(SettingsError, match="IPA_FLEET_SPEC=.*is not a file"):
        load_settings({"IPA_FLEET_SPEC": str(tmp_path / "none.yaml")})
