"""The SLO gate on the shipped CPU pipeline: a candidate classifier version, profiled from the shipped
EPYC profiles (as they are, or made slower), judged at a peak load."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from ipa_airflow.gate import (
    TAG_VALUE_MAX,
    GateResult,
    fit_tag_value,
    gate_version,
    promotion_refusal,
    verdicts,
    with_stage_alone,
)
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.profiles import Profile, ProfileSet
from ipa_airflow.spec import Variant
from tests.conftest import PIPELINES

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CANDIDATE = Variant(
    name="video-classifier-v3",
    accuracy=76.0,
    model_uri="models:/video-classifier/3",
    shapes=[
        {"hardware": "epyc", "resources": {"cpu": 1}},
        {"hardware": "epyc", "resources": {"cpu": 2}},
    ],
)


@pytest.fixture(scope="module")
def video():
    return load_pipeline(PIPELINES / "video-cpu.yaml")


def measured_as(video, model: str, *, latency: float = 1.0, throughput: float = 1.0) -> ProfileSet:
    """The candidate's profiles: the shipped ones of `model` on both shapes, latencies times `latency`,
    throughputs times `throughput`."""

    def scaled(p: Profile) -> Profile:
        points = tuple(
            replace(
                pt,
                p50_ms=pt.p50_ms * latency,
                p95_ms=pt.p95_ms * latency,
                p99_ms=pt.p99_ms * latency,
                mean_ms=pt.mean_ms * latency,
                throughput_rps=pt.throughput_rps * throughput,
            )
            for pt in p.points
        )
        return replace(p, model=CANDIDATE.profile_model, points=points)

    return ProfileSet(
        {
            CANDIDATE.profile_id(sh): scaled(video.profiles.get(f"{model}/epyc/fp32/{sh.resources.key}"))
            for sh in CANDIDATE.shapes
        }
    )


def test_a_fast_version_passes_and_the_plan_runs_it_alone(video):
    result = gate_version(video, "classify", CANDIDATE, measured_as(video, "mobilenet_v3_large"), 20, now=NOW)
    assert result.passed
    assert result.reason == "meets the SLA at 20 req/s"
    assert result.model_uri == "models:/video-classifier/3" and result.variant == "video-classifier-v3"
    assert result.checked_at == "2026-03-01T12:00:00+00:00"
    # The classify stage runs the candidate; the detect stage one of its own variants.
    assert ", classify=video-classifier-v3 b" in result.plan_summary
    assert result.plan_summary.startswith("detect=frcnn-mnv3")
    assert result.plan_summary.endswith(" of 1500 ms")
    assert "cost " in result.plan_summary and "accuracy 0." in result.plan_summary


def test_a_version_too_slow_for_the_sla_fails_on_the_latency(video):
    # resnet50 twenty times slower: 1.8 s a batch of one at best, over the 1.5 s SLA alone.
    slow = measured_as(video, "resnet50", latency=20, throughput=0.05)
    result = gate_version(video, "classify", CANDIDATE, slow, 5, now=NOW)
    assert not result.passed
    assert result.binding == ("latency_sla",)
    assert result.reason.startswith("infeasible at 5.0 req/s: the fastest configuration takes")
    assert "over the SLA of 1500.0 ms" in result.reason
    assert "best-effort" not in result.reason  # what the planner returned instead is no gate's business
    assert result.plan_summary.startswith("best effort: ")


def test_a_version_that_cannot_keep_up_fails_on_its_throughput(video):
    # Fast batches but a hundredth of the throughput: 32 replicas serve about 41 req/s of the 100.
    slow = measured_as(video, "mobilenet_v3_large", throughput=0.01)
    result = gate_version(video, "classify", CANDIDATE, slow, 100, now=NOW)
    assert not result.passed
    assert result.binding == ("throughput[classify]",)
    assert "stage 'classify' reaches at most" in result.reason and "below the load of 100.0" in result.reason


def test_the_same_version_passes_at_a_lower_peak(video):
    slow = measured_as(video, "mobilenet_v3_large", throughput=0.01)
    assert gate_version(video, "classify", CANDIDATE, slow, 20, now=NOW).passed


def test_a_version_profiled_on_no_shape_fails_saying_where(video):
    result = gate_version(video, "classify", CANDIDATE, ProfileSet({}), 20, now=NOW)
    assert not result.passed and result.plan_summary == "" and result.binding == ()
    assert result.reason.startswith("not profiled on epyc cpu=1 fp32, epyc cpu=2 fp32")


def test_a_version_profiled_on_one_shape_is_planned_on_that_one(video):
    one = measured_as(video, "mobilenet_v3_large")
    only_two_cores = ProfileSet({k: v for k, v in one.profiles.items() if k.endswith("cpu=2")})
    result = gate_version(video, "classify", CANDIDATE, only_two_cores, 20, now=NOW)
    assert result.passed


def test_stage_alone_keeps_the_other_stages(video):
    alone = with_stage_alone(video, "classify", CANDIDATE)
    assert [v.name for v in alone.spec.stage("classify").variants] == ["video-classifier-v3"]
    assert alone.spec.stage("detect") == video.spec.stage("detect")
    with pytest.raises(KeyError, match="no stage 'track'"):
        with_stage_alone(video, "track", CANDIDATE)


def test_a_bad_peak_is_refused(video):
    with pytest.raises(ValueError, match="peak load"):
        gate_version(video, "classify", CANDIDATE, ProfileSet({}), float("nan"), now=NOW)


def result(**kw) -> GateResult:
    base = dict(
        pipeline="video-cpu",
        stage="classify",
        model_uri="models:/video-classifier/3",
        variant="video-classifier-v3",
        passed=True,
        peak_rps=123.456,
        reason="meets the SLA at 123.456 req/s",
        plan_summary="detect=a b1 x1, classify=b b2 x2: cost 3, accuracy 0.5, latency 100 of 1500 ms",
        binding=(),
        checked_at="2026-03-01T12:00:00+00:00",
    )
    return GateResult(**{**base, **kw})


def test_tags_hold_the_verdict_and_its_details():
    tags = result(passed=False, reason="too slow", binding=("latency_sla", "throughput[classify]")).to_tags()
    assert tags == {
        "ipa.gate.video-cpu": "fail",
        "ipa.gate.video-cpu.reason": "too slow",
        "ipa.gate.video-cpu.stage": "classify",
        "ipa.gate.video-cpu.peak_rps": "123.456",
        "ipa.gate.video-cpu.plan": result().plan_summary,
        "ipa.gate.video-cpu.binding": "latency_sla, throughput[classify]",
        "ipa.gate.video-cpu.checked_at": "2026-03-01T12:00:00+00:00",
    }
    passed = result().to_tags()
    assert passed["ipa.gate.video-cpu"] == "pass"
    assert passed["ipa.gate.video-cpu.binding"] == "-"  # written, so no earlier binding outlives a re-gate


def test_long_tag_values_are_cut_saying_so():
    tags = result(reason="x" * 20_000).to_tags()
    value = tags["ipa.gate.video-cpu.reason"]
    assert len(value) == TAG_VALUE_MAX
    cut = value.index(" ... (")
    assert value.endswith(f" ... ({20_000 - cut} more characters)")
    assert fit_tag_value("short") == "short"
    assert (
        fit_tag_value("y" * 50, limit=30).endswith("more characters)")
        and len(fit_tag_value("y" * 50, 30)) == 30
    )


def test_to_dict_is_plain():
    d = result(binding=("latency_sla",)).to_dict()
    assert d["binding"] == ["latency_sla"] and d["passed"] is True and d["peak_rps"] == 123.456


# ---- promotion ----------------------------------------------------------------------------------------
def test_verdicts_are_the_top_level_gate_tags_only():
    tags = {
        **result(pipeline="video-cpu").to_tags(),
        **result(pipeline="video-gpu", passed=False, reason="too slow").to_tags(),
        "ipa.profile.epyc.cpu1.fp32.run_id": "abc",
    }
    assert verdicts(tags) == {
        "video-cpu": ("pass", "meets the SLA at 123.456 req/s"),
        "video-gpu": ("fail", "too slow"),
    }


def test_promotion_needs_every_gate_passed():
    ok = result().to_tags()
    assert promotion_refusal(ok, what="'m' v3", alias="champion") is None
    failed = {**ok, **result(pipeline="video-gpu", passed=False, reason="needs 2 s").to_tags()}
    why = promotion_refusal(failed, what="'m' v3", alias="champion")
    assert why is not None
    assert "'m' v3 failed the SLO gate for video-gpu (video-gpu: needs 2 s)" in why
    assert "'champion'" in why and "--force" in why
    assert "video-cpu" not in why


def test_a_version_never_gated_is_not_promoted():
    why = promotion_refusal({"ipa.profile.x": "1"}, what="'m' v3", alias="champion")
    assert why is not None and "has not been through the SLO gate" in why and "--force" in why


# ---- the load to gate at, and the specs to gate for ---------------------------------------------------
def test_recent_peak_is_the_highest_second_of_the_window_the_forecast_sees(tmp_path):
    from ipa_airflow.registry.gating import recent_peak_rps
    from ipa_airflow.settings import load_settings

    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(str(x) for x in [5, 80, 10, 20, 30, 40, 8, 16]) + "\n")
    settings = load_settings({"IPA_TRACE": str(trace), "IPA_HOME": str(tmp_path)})
    # Unix second 13 replays second 13 % 8 = 5 of the trace, as the forecast operator does: the window
    # of 4 seconds ending there is seconds 2..5 (10, 20, 30, 40), divided by the damping.
    at = dt.datetime.fromtimestamp(13, dt.UTC)
    assert recent_peak_rps(settings, now=at, window_s=4, damping=2.0) == 20.0
    # A window reaching back past the trace's start wraps around to its end, with the 80.
    assert recent_peak_rps(settings, now=at, window_s=6, damping=1.0) == 80.0


def test_recent_peak_from_prometheus_needs_its_url(tmp_path):
    from ipa_airflow.registry.gating import recent_peak_rps
    from ipa_airflow.settings import load_settings

    settings = load_settings({"IPA_LOAD_SOURCE": "prometheus", "IPA_HOME": str(tmp_path)})
    with pytest.raises(ValueError, match="give its URL"):
        recent_peak_rps(settings, now=NOW, window_s=60)


def test_spec_files_expand_folders_and_refuse_missing_paths(tmp_path):
    from ipa_airflow.registry.gating import spec_files

    (tmp_path / "b.yaml").write_text("")
    (tmp_path / "a.yml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in spec_files([tmp_path])] == ["b.yaml"]  # what the adaptation DAG reads
    assert spec_files([tmp_path / "a.yml"]) == [tmp_path / "a.yml"]
    with pytest.raises(FileNotFoundError) as exc:
        spec_files([tmp_path / "nope"])
    assert exc.value.filename == str(tmp_path / "nope")
