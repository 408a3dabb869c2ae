"""Variants from an MLflow registered model: the spec's `registered_model`, which versions are candidates
and why the others are not, and the pipeline kept between decisions (MLflow down -> the kept one, said)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ipa_airflow.candidates import RegisteredVersion, accuracy_of, registry_variants, selected
from ipa_airflow.pipeline_cache import cache_file, live_pipeline, load_cached, save
from ipa_airflow.pipelines import Pipeline, load_pipeline
from ipa_airflow.profiles import ProfileSet
from ipa_airflow.spec import (
    AccuracySource,
    PipelineSpec,
    RegisteredModel,
    SpecError,
    VersionSelector,
    load_spec,
)
from tests.conftest import REPO
from tests.integration.conftest import free_port

SHAPE = {"hardware": "epyc", "resources": {"cpu": 1}}
SOURCE = {
    "name": "Video Classifier",
    "select": {"newest": 2},
    "accuracy": {"tag": "accuracy"},
    "shapes": [SHAPE],
}


def _spec(stage: dict) -> dict:
    return {
        "name": "reg",
        "sla_s": 1.0,
        "profiles": [str(REPO / "profiles" / "epyc_cpu_torchvision.json")],
        "stages": [stage],
    }


def _v(version: str, tags=None, aliases=(), metrics=None, run_id="r") -> RegisteredVersion:
    return RegisteredVersion("Video Classifier", version, tuple(aliases), tags or {}, run_id, metrics or {})


def test_a_stage_takes_its_variants_from_a_registered_model_or_a_list():
    spec = PipelineSpec.from_dict(_spec({"name": "classify", "registered_model": SOURCE}))
    source = spec.stages[0].registered_model
    assert spec.from_registry and source.variant_name("3") == "video-classifier-v3"
    with pytest.raises(SpecError) as err:
        PipelineSpec.from_dict(_spec({"name": "classify"}))
    assert err.value.problems[0][0].startswith("stages[0]") and "registered_model" in err.value.problems[0][1]


@pytest.mark.parametrize(
    "change, where, says",
    [
        ({"select": {}}, "select", "at least one of"),
        ({"accuracy": {"tag": "a", "metric": "b"}}, "accuracy", "exactly one of"),
        ({"shapes": []}, "shapes", "at least 1"),
        ({"variant_prefix": "Not A Label"}, "variant_prefix", "lower case"),
        ({"select": {"tag": "no-equals-sign"}}, "select.tag", "pattern"),
    ],
)
def test_a_bad_registered_model_names_the_field(change, where, says):
    with pytest.raises(SpecError) as err:
        PipelineSpec.from_dict(_spec({"name": "classify", "registered_model": {**SOURCE, **change}}))
    assert any(where in p and says in m for p, m in err.value.problems), err.value.problems


def test_the_selector_is_a_union_of_newest_tag_and_aliases_newest_first():
    versions = [_v("1", aliases=["champion"]), _v("2", {"ipa.candidate": "true"}), _v("3"), _v("4")]
    pick = VersionSelector(newest=1, tag="ipa.candidate=true", aliases=["champion"])
    assert [v.version for v in selected(pick, versions)[0]] == ["4", "2", "1"]
    assert selected(VersionSelector(aliases=["gone"]), versions) == ([], [])


def test_newest_counts_the_versions_that_can_run_so_a_new_one_does_not_push_the_running_one_out():
    """A version registered a minute ago (not profiled) or failed at the gate does not take the place of
    the newest one that runs: the newest N are counted among those that can run, and the ones passed
    over are returned so the decision can say why."""
    versions = [_v("1"), _v("2"), _v("3"), _v("4")]
    can_run = {"1": True, "2": True, "3": False, "4": False}
    picked, passed_over = selected(VersionSelector(newest=1), versions, lambda v: can_run[v.version])
    assert [v.version for v in picked] == ["2"] and [v.version for v in passed_over] == ["4", "3"]
    picked, passed_over = selected(VersionSelector(newest=2), versions, lambda v: can_run[v.version])
    assert [v.version for v in picked] == ["2", "1"]
    # An alias that names a version that cannot run still picks it (and the decision says why it is out).
    versions[3] = _v("4", aliases=["champion"])
    picked, _ = selected(
        VersionSelector(newest=1, aliases=["champion"]), versions, lambda v: can_run[v.version]
    )
    assert [v.version for v in picked] == ["4", "2"]


def test_a_registry_shape_cannot_name_one_profile_for_every_version():
    shape = {**SHAPE, "profile": "fixed/epyc/fp32/cpu=1"}
    with pytest.raises(SpecError) as err:
        PipelineSpec.from_dict(_spec({"name": "classify", "registered_model": {**SOURCE, "shapes": [shape]}}))
    assert any("shapes[0].profile" in p for p, _ in err.value.problems), err.value.problems


def test_the_registry_variants_a_decision_runs_are_rendered_from_the_decision_not_a_kept_file(tmp_path):
    """The reconcile may run on another worker than the plan: the decision carries the registry variants
    its plan runs, and the spec file plus those is what the Deployments are rendered from."""
    from ipa_airflow.pipelines import with_registry_variants

    path = tmp_path / "reg.yaml"
    path.write_text(json.dumps(_spec({"name": "classify", "registered_model": SOURCE})))
    variant = {
        "name": "video-classifier-v3",
        "accuracy": 75.0,
        "model_uri": "models:/Video Classifier/3",
        "shapes": [SHAPE],
    }
    spec = with_registry_variants(load_spec(path), {"classify": variant})
    [v] = spec.stage("classify").variants
    assert (v.name, v.model_uri, v.accuracy) == ("video-classifier-v3", "models:/Video Classifier/3", 75.0)
    assert with_registry_variants(spec, {"classify": variant}).stage("classify").variants == [v]  # once


@pytest.mark.parametrize(
    "source, version, want, says",
    [
        (AccuracySource(tag="accuracy"), _v("1", {"accuracy": "0.755"}), 75.5, ""),
        (AccuracySource(tag="acc", scale="percent"), _v("1", {"acc": "75.5"}), 75.5, ""),
        (AccuracySource(metric="accuracy_score"), _v("1", metrics={"accuracy_score": 0.8}), 80.0, ""),
        (AccuracySource(tag="accuracy"), _v("1"), None, "no tag 'accuracy'"),
        (AccuracySource(tag="accuracy"), _v("1", {"accuracy": "high"}), None, "not a number"),
        (AccuracySource(tag="accuracy"), _v("1", {"accuracy": "75"}), None, "outside 0..1"),
        (AccuracySource(metric="m"), _v("1", run_id=None), None, "no source run"),
    ],
)
def test_accuracy_comes_from_the_version_or_its_run(source, version, want, says):
    value, why = accuracy_of(source, version)
    assert value == pytest.approx(want) if want is not None else value is None
    assert says in why


def test_versions_without_accuracy_or_with_a_failed_gate_are_not_candidates_and_say_why():
    source = RegisteredModel.model_validate({**SOURCE, "select": {"newest": 3}})
    versions = [
        _v("1", {"accuracy": "0.7"}),
        _v("2", {"accuracy": "0.9", "ipa.gate.reg": "fail", "ipa.gate.reg.reason": "needs 2 s, over 1 s"}),
        _v("3"),
    ]
    variants, seen = registry_variants("reg", "classify", source, versions)
    assert [v.name for v in variants] == ["video-classifier-v1"]
    assert variants[0].model_uri == "models:/Video Classifier/1" and variants[0].accuracy == pytest.approx(70)
    by = {c.variant: c for c in seen}
    assert by["video-classifier-v2"].status == "excluded" and "needs 2 s" in by["video-classifier-v2"].reason
    assert (
        by["video-classifier-v3"].status == "excluded" and "no accuracy" in by["video-classifier-v3"].reason
    )
    # Another pipeline's gate does not exclude it here.
    variants, _ = registry_variants("other", "classify", source, versions)
    assert [v.name for v in variants] == ["video-classifier-v1", "video-classifier-v2"]  # in the order given


def test_a_registry_spec_without_mlflow_says_what_to_give(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text(json.dumps(_spec({"name": "classify", "registered_model": SOURCE})))
    with pytest.raises(SpecError) as err:
        load_pipeline(path)
    [(where, message)] = err.value.problems
    assert where == "stages[0].registered_model" and "--tracking-uri" in message


def _kept(tmp_path: Path, read_at: dt.datetime) -> tuple[Path, Pipeline]:
    """A registry spec (with one listed variant too) and a pipeline kept for it, as a plan would keep it."""
    listed = {"name": "resnet18", "accuracy": 69.8, "shapes": [SHAPE]}
    path = tmp_path / "reg.yaml"
    path.write_text(json.dumps(_spec({"name": "classify", "variants": [listed], "registered_model": SOURCE})))
    spec = load_spec(path)
    profiles = ProfileSet.load(spec.profile_paths(path.parent))
    kept = Pipeline(spec, profiles, path, origin="mlflow", refreshed_at=read_at.isoformat(timespec="seconds"))
    save(kept, tmp_path / "home")
    return path, kept


def test_the_kept_pipeline_round_trips_and_is_dropped_when_the_spec_changes(tmp_path):
    path, kept = _kept(tmp_path, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    again = load_cached(path, tmp_path / "home")
    assert again is not None and again.to_dict() == kept.to_dict()
    path.write_text(path.read_text().replace('"sla_s": 1.0', '"sla_s": 2.0'))
    assert load_cached(path, tmp_path / "home") is None
    cache_file(tmp_path / "home", path).write_text("{not json")
    assert load_cached(path, tmp_path / "home") is None


def test_mlflow_down_decides_on_the_kept_pipeline_and_says_so(tmp_path):
    from ipa_airflow.registry import MlflowProfileRegistry
    from ipa_airflow.registry.mlflow_profiles import MlflowUnreachable

    read_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    path, _ = _kept(tmp_path, read_at)
    down = MlflowProfileRegistry(f"http://127.0.0.1:{free_port()}")  # the real client, nobody listening
    home = tmp_path / "home"
    fresh = live_pipeline(path, registry=down, home=home, now=read_at + dt.timedelta(seconds=5))
    assert fresh.origin == "cache"  # young enough: MLflow is not asked
    later = read_at + dt.timedelta(hours=2)
    used = live_pipeline(path, registry=down, home=home, now=later, max_age_s=600)
    assert used.origin == "cache-fallback" and "MLflow did not answer" in used.note
    assert read_at.isoformat(timespec="seconds") in used.note
    # A profiling event after the kept copy was read also sends the planner to MLflow.
    event = read_at + dt.timedelta(seconds=10)
    used = live_pipeline(
        path, registry=down, home=home, now=read_at + dt.timedelta(seconds=20), profiles_changed_at=event
    )
    assert used.origin == "cache-fallback"
    cache_file(home, path).unlink()
    with pytest.raises(MlflowUnreachable):
        live_pipeline(path, registry=down, home=home, now=later)
