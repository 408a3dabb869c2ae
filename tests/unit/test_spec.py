import copy
import re

import pytest
import yaml

from ipa_airflow.spec import PipelineSpec, SpecError, deployment_name, load_spec
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
    assert path == "stages[0].variants[1].name" and "duplicate variant name 'small'" in msg


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


@pytest.mark.parametrize("path", sorted(PIPELINES.rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path):
    assert load_spec(path).stages


# ---- names: every stage's Deployment '<pipeline>-<stage>' is a valid, unique DNS-1123 label ----------
@pytest.mark.parametrize(
    ("where", "bad"),
    [("name", "video_cpu"), ("name", "video.cpu"), ("name", "Video"), ("namespace", "my_ns")],
)
def test_pipeline_and_namespace_names_are_dns_labels(where, bad):
    data = copy.deepcopy(GOOD)
    data[where] = bad
    [(path, msg)] = _errors(data)
    assert path == where and "DNS-1123" in msg and repr(bad) in msg


@pytest.mark.parametrize("bad", ["de_tect", "de.tect", "Detect", "-detect", "detect-"])
def test_stage_names_are_dns_labels(bad):
    data = copy.deepcopy(GOOD)
    data["stages"][1]["name"] = bad
    [(path, msg)] = _errors(data)
    assert path == "stages[1].name" and "DNS-1123" in msg


def test_the_full_deployment_name_must_fit_63_characters():
    data = copy.deepcopy(GOOD)
    # 'video-' + 57 characters = 63: the longest that fits
    data["stages"][0]["name"] = "d" * 57
    assert PipelineSpec.from_dict(data).stages[0].name == "d" * 57
    data["stages"][0]["name"] = "d" * 58
    [(path, msg)] = _errors(data)
    assert path == "stages[0].name" and "64 characters" in msg and "63" in msg


def test_a_62_character_pipeline_name_is_refused_for_every_stage():
    data = copy.deepcopy(GOOD)
    data["name"] = "p" * 62
    problems = _errors(data)
    assert [p for p, _ in problems] == ["stages[0].name", "stages[1].name"]


def test_stages_with_a_long_shared_prefix_get_their_own_deployments():
    """Two stages that a 63-character cut would have merged into one Deployment."""
    data = copy.deepcopy(GOOD)
    data["stages"][0]["name"] = "s" * 56 + "a"
    data["stages"][1]["name"] = "s" * 56 + "b"
    spec = PipelineSpec.from_dict(data)
    names = {deployment_name(spec.name, s) for s in spec.stage_names}
    assert len(names) == 2
    data["stages"][1]["name"] = "s" * 56 + "bb"  # one character more: refused, never cut
    [(path, _)] = _errors(data)
    assert path == "stages[1].name"


def test_deployment_name_never_truncates():
    assert deployment_name("video", "detect") == "video-detect"
    with pytest.raises(ValueError, match="64 characters"):
        deployment_name("p" * 62, "s")
    with pytest.raises(ValueError, match="DNS-1123"):
        deployment_name("video", "de_tect")


def test_duplicate_stage_names_name_the_second():
    data = copy.deepcopy(GOOD)
    data["stages"][1]["name"] = "detect"
    [(path, msg)] = _errors(data)
    assert path == "stages[1].name" and "duplicate stage name 'detect'" in msg and "stages[0]" in msg


# ---- numbers: finite, in range, of their type (a boolean is not a number, "4" is not 4) --------------
INF, NAN = float("inf"), float("nan")


def _set(data, path, value):
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("sla_s", INF, "finite"),
        ("sla_s", NAN, "finite"),
        ("sla_s", True, "boolean"),
        ("sla_s", "0.5", "text"),
        ("objective.alpha", INF, "finite"),
        ("objective.beta", NAN, "finite"),
        ("objective.gamma", 1e9, "less than or equal"),
        ("objective.rank_normalize", 1, "boolean"),
        ("limits.max_cost", INF, "finite"),
        ("limits.max_utilisation", NAN, "finite"),
        ("limits.latency_headroom", True, "boolean"),
        ("limits.max_replicas", 2.0, "whole number"),
        ("limits.max_batch", True, "boolean"),
        ("cost_per_unit.cpu", INF, "finite"),
        ("cost_per_unit.gpu", -1, "greater than or equal"),
        ("adaptation.interval_s", INF, "finite"),
        ("adaptation.stabilisation", True, "boolean"),
        ("adaptation.min_gain", NAN, "finite"),
        ("adaptation.quantile", True, "boolean"),
        ("deployment.port", 70000, "less than or equal"),
        ("deployment.rollout_deadline_s", INF, "finite"),
        ("stages.0.variants.0.accuracy", True, "boolean"),
        ("stages.0.variants.0.startup_s", INF, "finite"),
        ("stages.0.variants.0.shapes.0.resources.gpu", 1.0, "whole number"),
        ("stages.1.variants.0.shapes.0.resources.cpu", INF, "finite"),
        ("stages.1.variants.0.shapes.0.resources.cpu", 0.0001, "greater than or equal"),
        ("stages.1.variants.0.shapes.0.resources.memory_gb", NAN, "finite"),
        ("baselines.per_stage_shares", {"detect": NAN, "classify": 0.5}, "finite"),
        ("schema_version", True, "boolean"),
    ],
)
def test_every_number_is_finite_in_range_and_typed(path, value, says):
    data = copy.deepcopy(GOOD)
    _set(data, path, value)
    problems = _errors(data)
    want = re.sub(r"\.(\d+)", r"[\1]", path)  # stages.0.name -> stages[0].name
    assert any(p.startswith(want) and says in m for p, m in problems), problems


def test_every_spec_model_is_strict_and_refuses_inf_nan():
    """The class, not the instances: a field added later inherits the rule."""
    from pydantic import BaseModel

    import ipa_airflow.spec as spec_module
    import ipa_airflow.spec_settings as settings_module
    import ipa_airflow.spec_variants as variants_module

    models = [
        m
        for module in (spec_module, settings_module, variants_module)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__
    ]
    assert len(models) >= 10
    for m in models:
        assert m.model_config.get("strict") is True, m
        assert m.model_config.get("allow_inf_nan") is False, m
        assert m.model_config.get("extra") == "forbid", m


def test_rim_replicas_for_unknown_stages_are_refused():
    data = copy.deepcopy(GOOD)
    data["baselines"] = {"rim_replicas": {"detect": 1, "classify": 1, "clasify": 2}}
    [(path, msg)] = _errors(data)
    assert path == "baselines.rim_replicas" and "clasify" in msg


# ---- YAML: a key given twice is refused, with its line -------------------------------------------------
def test_duplicate_yaml_keys_are_refused_with_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    text = yaml.safe_dump(GOOD, sort_keys=False)
    path.write_text(text.replace("sla_s: 0.5\n", "sla_s: 0.5\nsla_s: 5\n"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    line = text.splitlines().index("sla_s: 0.5") + 2
    assert str(path) in str(exc.value)
    assert f"duplicate key 'sla_s' (first given on line {line - 1})" in str(exc.value)
    assert f"line {line}," in str(exc.value)


def test_duplicate_nested_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "s.yaml"
    data = copy.deepcopy(GOOD)
    data["objective"] = {"alpha": 1.0}
    path.write_text(yaml.safe_dump(data).replace("  alpha: 1.0\n", "  alpha: 1.0\n  alpha: 9.0\n"))
    with pytest.raises(SpecError, match="duplicate key 'alpha'"):
        load_spec(path)


def test_yaml_merge_keys_and_exponent_floats_still_work(tmp_path):
    """A key merged in with `<<:` may be overridden (that is what merging is for), and `5e-1` is a
    number (YAML 1.2; YAML 1.1 would read the text '5e-1', which the strict spec would refuse)."""
    data = copy.deepcopy(GOOD)
    del data["sla_s"]
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(data) + "sla_s: 5e-1\nobjective:\n  <<: {alpha: 2.0, beta: 0.5}\n  alpha: 3.0\n"
    )
    spec = load_spec(path)
    assert spec.sla_s == 0.5 and spec.objective.alpha == 3.0 and spec.objective.beta == 0.5


def test_a_template_file_with_a_duplicate_key_is_refused(tmp_path):
    from ipa_airflow.cluster.desired import load_template

    (tmp_path / "t.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nkind: Pod\n")
    data = copy.deepcopy(GOOD)
    data["deployment"] = {"template_file": "t.yaml"}
    with pytest.raises(SpecError, match=r"line 3, column 1\): duplicate key 'kind'"):
        load_template(PipelineSpec.from_dict(data), tmp_path)


def test_validate_notes_a_plan_that_must_outlast_the_forecast_horizon():
    from ipa_airflow.pipelines import FORECAST_HORIZON_S, horizon_notes

    spec = load_spec(PIPELINES / "video-cpu.yaml")
    assert horizon_notes(spec) == []  # 10 s interval + 10 s start-up: the 20 s the forecasts cover
    slow = spec.model_copy(update={"adaptation": spec.adaptation.model_copy(update={"interval_s": 30.0})})
    (note,) = horizon_notes(slow)
    assert "40 s" in note and f"{FORECAST_HORIZON_S} s" in note and "burst_window_s" in note
