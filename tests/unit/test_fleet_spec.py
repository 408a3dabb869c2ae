"""The fleet spec is validated like a pipeline spec (errors naming the file and the field), and
`ipa plan FLEET --loads` plans the shipped example fleet; `ipa plan SPEC --load` is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipa_airflow.cli import main
from ipa_airflow.fleet import FleetError, is_fleet_file, load_fleet, plan_fleet
from tests.conftest import PIPELINES, PROFILES

EXAMPLE = PROFILES / "fleets" / "example.yaml"
NAMES = ["video-cpu", "paper-audio-qa", "paper-audio-sent", "paper-nlp", "paper-sum-qa", "paper-video"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_the_example_fleet_loads_and_its_quota_binds_at_peaks():
    fleet = load_fleet(EXAMPLE)
    assert fleet.pipeline_names == NAMES
    assert is_fleet_file(EXAMPLE) and not is_fleet_file(PIPELINES / "video-cpu.yaml")
    peak = plan_fleet(fleet, {n: 20.0 for n in NAMES})
    assert peak.fits and peak.missed == ()
    assert peak.pools[0].used <= fleet.quota["cpu"]
    # Planned alone, the pipelines would take more cores than the quota: it binds.
    assert any(o.quota_cost and o.quota_cost > 0 for o in peak.pipelines)


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("name: f\npipelines: []\nquota: {cpu: 4}\n", "pipelines", "at least 1"),
        (
            "name: f\npipelines: [{spec: x.yaml, weight: 0}]\nquota: {cpu: 4}\n",
            "pipelines[0].weight",
            "greater",
        ),
        ("name: f\npipelines: [{spec: x.yaml}]\nquota: {cpu: 4}\nextra: 1\n", "extra", "unknown key"),
        ("name: f\npipelines: [{spec: missing.yaml}]\nquota: {cpu: 4}\n", "pipelines[0].spec", "no file"),
        (
            "name: f\npipelines: [{spec: a.yaml}, {spec: a.yaml}]\nquota: {cpu: 4}\n",
            "pipelines[1].spec",
            "too",
        ),
        ("name: f\npipelines: [{spec: x.yaml}]\nquota: {cpu: -1}\n", "quota.cpu", "greater"),
    ],
)
def test_a_bad_fleet_names_the_file_and_the_field(tmp_path, text, where, words):
    path = _write(tmp_path, text)
    with pytest.raises(FleetError) as exc:
        load_fleet(path)
    assert str(path) in str(exc.value)
    assert any(p == where and words in m for p, m in exc.value.problems), exc.value.problems


def test_a_kind_without_a_quota_is_an_error_and_a_repeated_pipeline_too(tmp_path):
    spec = PIPELINES / "video-cpu.yaml"
    path = _write(tmp_path, f"name: f\npipelines: [{{spec: {spec}}}]\nquota: {{gpu: 4}}\n")
    with pytest.raises(FleetError) as exc:
        load_fleet(path)
    assert "add a quota for 'cpu' or 'epyc'" in str(exc.value)
    copy = tmp_path / "copy.yaml"
    copy.write_text(spec.read_text().replace("../epyc", str(PROFILES / "epyc")))
    path = _write(tmp_path, f"name: f\npipelines: [{{spec: {spec}}}, {{spec: {copy}}}]\nquota: {{epyc: 8}}\n")
    with pytest.raises(FleetError) as exc:
        load_fleet(path)
    assert exc.value.problems[0][0] == "pipelines[1].spec" and "unique" in exc.value.problems[0][1]


def test_a_hardware_quota_covers_its_shapes(tmp_path):
    path = _write(
        tmp_path,
        f"name: f\npipelines: [{{spec: {PIPELINES / 'video-cpu.yaml'}, weight: 2}}]\nquota: {{epyc: 3}}\n",
    )
    fleet = load_fleet(path)
    result = plan_fleet(fleet, {"video-cpu": 10.0})
    assert result.pools[0].pool == "epyc" and result.pools[0].used <= 3
    assert result.pipelines[0].weight == 2


def test_ipa_plan_on_a_fleet(capsys):
    loads = ",".join(f"{n}=20" for n in NAMES)
    assert main(["plan", str(EXAMPLE), "--loads", loads, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["pipeline"] for p in out["pipelines"]] == NAMES
    assert out["fits"] and out["pools"][0]["used"] <= out["pools"][0]["quota"]
    assert main(["plan", str(EXAMPLE), "--loads", loads]) == 0
    assert "quota: cpu" in capsys.readouterr().out


def test_ipa_plan_on_a_fleet_without_a_pipelines_load_names_it(capsys):
    assert main(["plan", str(EXAMPLE), "--loads", "video-cpu=3"]) == 2
    err = capsys.readouterr().err
    assert "no load for pipelines paper-audio-qa" in err and "paper-video" in err
    with pytest.raises(SystemExit):
        main(["plan", str(EXAMPLE), "--load", "3"])


def test_ipa_plan_on_a_pipeline_is_unchanged(capsys):
    assert main(["plan", str(PIPELINES / "video-cpu.yaml"), "--load", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipeline"] == "video-cpu"
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(PIPELINES / "video-cpu.yaml")])
    assert exc.value.code == 2
    assert "the following arguments are required: --load" in capsys.readouterr().err


def test_ipa_plan_with_loads_reports_what_is_wrong_with_the_file(tmp_path, capsys):
    # --loads means a fleet: a missing, unreadable or non-fleet file is reported as such, never as a
    # pipeline spec lacking --load.
    for path, words in [
        (tmp_path / "missing.yaml", "cannot read the file"),
        (tmp_path, "cannot read the file"),
        (_write(tmp_path, "name: f\npipelines: [{spec: \n"), "not valid YAML"),
    ]:
        assert main(["plan", str(path), "--loads", "a=1"]) == 2
        err = capsys.readouterr().err
        assert words in err and str(path) in err and "--load\n" not in err, err
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(PIPELINES / "video-cpu.yaml"), "--loads", "a=1"])
    assert exc.value.code == 2 and "--loads is for fleet specs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(EXAMPLE), "--loads", ",".join(f"{n}=1" for n in NAMES), "--solver", "brute"])
    assert exc.value.code == 2 and "--solver brute is for pipeline specs" in capsys.readouterr().err


def test_ipa_validate_checks_a_fleet_as_a_fleet(tmp_path, capsys):
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "fleet 'example-cpu-fleet'" in capsys.readouterr().out
    bad = _write(tmp_path, f"name: f\npipelines: [{{spec: {PIPELINES / 'video-cpu.yaml'}, weight: 0}}]\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "invalid fleet spec" in err and "pipelines[0].weight" in err and "quota" in err


def test_a_quota_key_no_pipeline_runs_on_is_an_error_not_a_limit_on_nothing(tmp_path):
    # 'epic' for 'epyc': the key would limit nothing, and the cores it meant to cap would go uncapped.
    spec = PIPELINES / "video-cpu.yaml"
    path = _write(tmp_path, f"name: f\npipelines: [{{spec: {spec}}}]\nquota: {{cpu: 10, epic: 4}}\n")
    with pytest.raises(FleetError) as exc:
        load_fleet(path)
    assert exc.value.problems == [
        (
            "quota.epic",
            "no pipeline of the fleet runs on 'epic' (their shapes' kinds and hardware: cpu, epyc): "
            "fix its spelling or remove it",
        )
    ]
