"""Desired state and diff are pure functions: checked without any cluster."""

from dataclasses import replace

import pytest

from ipa_airflow.cluster.desired import desired_state
from ipa_airflow.cluster.diff import SCALE_DOWN, SCALE_UP, SWITCH, UNCHANGED, diff
from ipa_airflow.optimizer import plan
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.spec import PipelineSpec
from tests.conftest import PIPELINES


@pytest.fixture(scope="module")
def cpu():
    return load_pipeline(PIPELINES / "video-cpu.yaml")


def test_cpu_shapes_become_requests_and_limits(cpu):
    p = plan(cpu.spec, cpu.profiles, 20)
    manifests = desired_state(p, cpu.spec)
    for m, s in zip(manifests, p.stages, strict=True):
        c = m["spec"]["template"]["spec"]["containers"][0]
        cores = s.resources.split("=")[1]
        assert c["resources"]["requests"]["cpu"] == cores == c["resources"]["limits"]["cpu"]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == str(s.batch)
        assert m["metadata"]["annotations"]["ipa.io/plan-id"] == p.plan_id


def test_template_values_survive_and_ours_win(cpu):
    template = {
        "metadata": {"labels": {"team": "vision"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.local/mlserver:custom",
                            "env": [
                                {"name": "LOG_LEVEL", "value": "debug"},
                                {"name": "MLSERVER_MODEL_MAX_BATCH_SIZE", "value": "99"},
                            ],
                        }
                    ]
                }
            }
        },
    }
    spec = PipelineSpec.from_dict({**cpu.spec.to_dict(), "deployment": {"template": template}})
    p = plan(spec, cpu.profiles, 20)
    m = desired_state(p, spec)[0]
    c = m["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert c["image"] == "registry.local/mlserver:custom" and env["LOG_LEVEL"] == "debug"
    assert env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == str(p.stages[0].batch)
    assert m["metadata"]["labels"]["team"] == "vision"


def test_diff_classifies_changes(cpu):
    p = plan(cpu.spec, cpu.profiles, 20)
    observed = {m["metadata"]["name"]: m for m in desired_state(p, cpu.spec)}
    assert [c.action for c in diff(desired_state(p, cpu.spec), observed)] == [UNCHANGED, UNCHANGED]
    d, c = p.stages
    other = next(v.name for v in cpu.spec.stage("detect").variants if v.name != d.variant)
    p2 = replace(p, stages=(replace(d, variant=other), replace(c, replicas=c.replicas + 2)))
    changes = diff(desired_state(p2, cpu.spec), observed)
    assert [c.action for c in changes] == [SWITCH, SCALE_UP]
    bigger = {m["metadata"]["name"]: m for m in desired_state(p2, cpu.spec)}
    back = diff(desired_state(p, cpu.spec), bigger)
    assert [c.action for c in back] == [SWITCH, SCALE_DOWN]
    assert back[1].changes == {"replicas": (c.replicas + 2, c.replicas)}


def test_a_plan_for_another_pipeline_is_refused(cpu):
    gpu = load_pipeline(PIPELINES / "video-gpu.yaml")
    with pytest.raises(ValueError, match="plan is for pipeline"):
        desired_state(plan(gpu.spec, gpu.profiles, 10), cpu.spec)
