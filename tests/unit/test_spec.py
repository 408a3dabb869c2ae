import copy

import pytest
import yaml

from ipa_airflow.spec import PipelineSpec, SpecError, load_spec
from tests.conftest import PIPELINES

GOOD = {
    "name": "video",
    "sla_s": 0.5,
    "stages": [
        {
            "name": "detect",
            "variants": [
                {
                    "name": "small",
                    "accuracy": 30.0,
                    "shapes": [{"hardware": "h100", "resources": {"gpu": 1}}],
                },
                {
                    "name": "large",
                    "accuracy": 40.0,
                    "shapes": [{"hardware": "h100", "resources": {"gpu": 1}}],
                },
            ],
        },
        {
            "name": "classify",
            "variants": [
                {
                    "name": "r18",
                    "accuracy": 69.8,
                    "shapes": [
                        {"hardware": "xeon", "resources": {"cpu": 1}},
                        {"hardware": "xeon", "resources": {"cpu": 2}},
                    ],
                },
            ],
        },
    ],
}


def _errors(data):
    with pytest.raises(SpecError) as exc:
        PipelineSpec.from_dict(data, source="t.yaml")
    return exc.value.problems


def test_good_spec_derives_indices():
    spec = PipelineSpec.from_dict(GOOD)
    assert spec.stage_names == ["detect", "classify"]
    assert spec.batch_sizes == [1, 2, 4, 8, 16, 32, 64]
    assert spec.accuracy_scores(spec.stages[0]) == {"small": 0.30, "large": 0.40}
    v = spec.stages[1].variants[0]
    assert v.profile_id(v.shapes[1]) == "r18/xeon/fp32/cpu=2"


def test_rank_normalisation():
    data = copy.deepcopy(GOOD)
    data["objective"] = {"rank_normalize": True}
    spec = PipelineSpec.from_dict(data)
    assert spec.accuracy_scores(spec.stages[0]) == {"small": 0.0, "large": 1.0}
    assert spec.accuracy_scores(spec.stages[1]) == {"r18": 1.0}


def test_missing_sla_names_the_field():
    data = copy.deepcopy(GOOD)
    del data["sla_s"]
    assert ("sla_s", "required field is missing") in _errors(data)


def test_duplicate_variant_names():
    data = copy.deepcopy(GOOD)
    data["stages"][0]["variants"][1]["name"] = "small"
    [(path, msg)] = _errors(data)
    assert path == "stages[0]" and "duplicate variant name 'small'" in msg


def test_negative_accuracy_names_the_path():
    data = copy.deepcopy(GOOD)
    data["stages"][1]["variants"][0]["accuracy"] = -3
    [(path, msg)] = _errors(data)
    assert path == "stages[1].variants[0].accuracy"
    assert "greater than or equal to 0" in msg


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4"])
def test_batch_size_must_be_positive_integer(bad):
    data = copy.deepcopy(GOOD)
    data["limits"] = {"batch_sizes": [1, bad]}
    problems = _errors(data)
    assert all(p == "limits.batch_sizes[1]" for p, _ in problems), problems


def test_unknown_key_is_refused():
    data = copy.deepcopy(GOOD)
    data["stages"][0]["variants"][0]["acuracy"] = 3
    problems = _errors(data)
    assert ("stages[0].variants[0].acuracy", problems[0][1]) in problems
    assert "unknown key" in problems[0][1]


def test_shape_needs_exactly_one_resource_kind():
    data = copy.deepcopy(GOOD)
    data["stages"][0]["variants"][0]["shapes"][0]["resources"] = {"gpu": 1, "cpu": 2}
    [(path, msg)] = _errors(data)
    assert path == "stages[0].variants[0].shapes[0].resources"
    assert "exactly one" in msg


def test_rim_replicas_above_cap_is_refused():
    data = copy.deepcopy(GOOD)
    data["limits"] = {"max_replicas": 2}
    data["baselines"] = {"rim_replicas": 5}
    [(_, msg)] = _errors(data)
    assert "rim_replicas" in msg


def test_adaptation_settings_name_their_path():
    data = copy.deepcopy(GOOD)
    data["adaptation"] = {"quantile": 0.97, "stabilisation": 0}
    problems = dict(_errors(data))
    assert "0.99" in problems["adaptation.quantile"]
    assert "adaptation.stabilisation" in problems
    assert PipelineSpec.from_dict(GOOD).adaptation.quantile == 0.99


def test_unknown_baseline_variant():
    data = copy.deepcopy(GOOD)
    data["baselines"] = {"fa2_high": {"detect": "huge"}}
    [(_, msg)] = _errors(data)
    assert "unknown variant 'huge'" in msg


@pytest.mark.parametrize(
    ("shares", "says"),
    [
        ({"detect": 0.7}, "give a share for every stage ['classify', 'detect']"),
        ({"detect": 0.7, "classify": 0.5}, "add up to 1.2"),
        ({"detect": 0.7, "classify": 0}, "greater than 0"),
    ],
)
def test_per_stage_shares_cover_every_stage_and_fit_the_budget(shares, says):
    data = copy.deepcopy(GOOD)
    data["baselines"] = {"per_stage_shares": shares}
    assert any(says in msg for _, msg in _errors(data)), _errors(data)
    data["baselines"] = {"per_stage_shares": {"detect": 0.7, "classify": 0.3}}
    assert PipelineSpec.from_dict(data).baselines.per_stage_shares["detect"] == 0.7


def test_load_spec_reports_yaml_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(top)


def test_round_trip(tmp_path):
    spec = PipelineSpec.from_dict(GOOD)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    assert load_spec(path) == spec


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path):
    assert load_spec(path).stages
