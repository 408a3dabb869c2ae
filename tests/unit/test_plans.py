"""Plan files are read back (ipa reconcile/manifests --plan) and may be edited by hand: every field is
checked when loaded, and a plan that asks for something the spec does not offer is refused before
anything is rendered."""

import json
from dataclasses import fields, replace

import pytest

from ipa_airflow.cluster.desired import desired_state
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.plans import Plan, StagePlan, _PlanIn, _StagePlanIn, check_plan_fits_spec, load_plan
from tests.conftest import PIPELINES


@pytest.fixture(scope="module")
def cpu():
    return load_pipeline(PIPELINES / "video-cpu.yaml")


@pytest.fixture(scope="module")
def good(cpu):
    return plan(cpu.spec, cpu.profiles, 20)


def _write(tmp_path, good, mutate=None, text=None):
    data = good.to_dict()
    if mutate:
        mutate(data)
    path = tmp_path / "plan.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


def test_the_schema_lists_every_field_of_the_plan():
    assert {f.name for f in fields(Plan)} == set(_PlanIn.model_fields) - {"plan_id"}
    assert {f.name for f in fields(StagePlan)} == set(_StagePlanIn.model_fields)


def test_a_written_plan_loads_back_equal(tmp_path, good, cpu):
    path = tmp_path / "plan.json"
    path.write_text(good.to_json())
    again = load_plan(path, cpu.spec)
    assert again == good and again.plan_id == good.plan_id


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (
            lambda d: d["stages"][0].update(batch=-4),
            "stages[0].batch: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d["stages"][0].update(replicas=0),
            "stages[0].replicas: Input should be greater than or equal to 1",
        ),
        (lambda d: d["stages"][1].update(replicas=2.5), "stages[1].replicas: expected a whole number"),
        (
            lambda d: d["stages"][1].update(replicas="3"),
            "stages[1].replicas: expected a number, got the text",
        ),
        (lambda d: d["stages"][0].update(resources="cpu=abc"), "stages[0].resources: 'cpu=abc' is not valid"),
        (lambda d: d["stages"][0].update(latency_s=-1), "stages[0].latency_s"),
        (lambda d: d["stages"][0].pop("variant"), "stages[0].variant: required field is missing"),
        (lambda d: d["stages"][0].update(varient="x"), "stages[0].varient: unknown key"),
        (lambda d: d.pop("stages"), "stages: required field is missing"),
        (lambda d: d.update(stages=[]), "stages: List should have at least 1 item"),
        (lambda d: d.update(feasible="yes"), "feasible"),
        (lambda d: d.update(load_rps=True), "load_rps: expected a number, got the boolean true"),
        (lambda d: d["terms"].update(cost=None), "terms.cost"),
        (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
        (lambda d: d.update(schema_version=True), "schema_version True is not supported"),
    ],
)
def test_bad_fields_are_refused_naming_file_and_field(tmp_path, good, mutate, says):
    path = _write(tmp_path, good, mutate)
    with pytest.raises(ValueError) as exc:
        load_plan(path)
    assert f"plan file {path}" in str(exc.value) and says in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[]", "expected a JSON object"),
        ("{", "not valid JSON (line 1, column 2)"),
        ('{"pipeline": "a", "pipeline": "b"}', "duplicate key 'pipeline'"),
        ('{"load_rps": NaN}', "NaN is not a number JSON allows"),
        ('{"load_rps": Infinity}', "Infinity is not a number JSON allows"),
    ],
)
def test_files_that_are_not_plans_are_refused(tmp_path, good, text, says):
    path = _write(tmp_path, good, text=text)
    with pytest.raises(ValueError, match=f"plan file {path}") as exc:
        load_plan(path)
    assert says in str(exc.value)


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"plan file .*nosuch.json: cannot read the file: No such file"):
        load_plan(tmp_path / "nosuch.json")
    with pytest.raises(ValueError, match="cannot read the file: Is a directory"):
        load_plan(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_plan(tmp_path / "bin.json")


def _stage(p, i, **changes):
    stages = list(p.stages)
    stages[i] = replace(stages[i], **changes)
    return replace(p, stages=tuple(stages))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: _stage(p, 0, variant="nope"), "stages[0] (detect).variant: 'nope' is not one of"),
        (lambda p: _stage(p, 0, resources="cpu=3"), "shape 'epyc cpu=3 fp32'"),
        (lambda p: _stage(p, 0, hardware="h100"), "shape 'h100 "),
        (lambda p: _stage(p, 0, dtype="fp16"), "fp16' (hardware, resources, dtype) is not one of"),
        (
            lambda p: _stage(p, 1, batch=3),
            "stages[1] (classify).batch: 3 is not one of the spec's batch sizes",
        ),
        (
            lambda p: _stage(p, 1, replicas=33),
            "stages[1] (classify).replicas: 33 is over limits.max_replicas",
        ),
        (lambda p: _stage(p, 1, queue_s=1e6), "queue_s: 1e+06 s of batch filling is over the SLA"),
        (lambda p: replace(p, stages=p.stages[::-1]), "are not the spec's ['detect', 'classify']"),
        (lambda p: replace(p, stages=p.stages + p.stages[:1]), "are not the spec's"),
        (lambda p: replace(p, stages=p.stages[:1]), "are not the spec's"),
        (lambda p: replace(p, pipeline="video-gpu"), "plan is for pipeline 'video-gpu'"),
    ],
)
def test_a_plan_that_does_not_fit_the_spec_is_refused_before_rendering(cpu, good, change, says):
    bad = change(good)
    with pytest.raises(ValueError) as exc:
        check_plan_fits_spec(bad, cpu.spec)
    assert says in str(exc.value), str(exc.value)
    with pytest.raises(ValueError, match="plan"):
        desired_state(bad, cpu.spec)  # what reconcile and `ipa manifests` render through


def test_the_cost_cap_is_checked_on_the_replicas_not_on_the_plans_own_figure(cpu, good):
    limits = cpu.spec.limits.model_copy(update={"max_cost": good.cost})
    spec = cpu.spec.model_copy(update={"limits": limits})
    check_plan_fits_spec(good, spec)
    more = _stage(good, 0, replicas=good.stages[0].replicas + 1)  # cost figure left as it was
    assert more.cost == good.cost
    with pytest.raises(ValueError, match="over limits.max_cost"):
        check_plan_fits_spec(more, spec)


def test_load_plan_with_a_spec_names_the_file(tmp_path, cpu, good):
    path = _write(tmp_path, good, lambda d: d["stages"][1].update(batch=3))
    assert load_plan(path).stages[1].batch == 3  # well-formed on its own
    with pytest.raises(ValueError, match=rf"plan file {path}: plan does not fit the spec"):
        load_plan(path, cpu.spec)


def test_a_plan_with_an_infinite_figure_is_never_written(good):
    bad = _stage(good, 0, queue_s=float("inf"))
    with pytest.raises(ValueError, match=r"stages\[0\]\.queue_s=inf"):
        bad.to_json()
