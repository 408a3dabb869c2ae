"""The SLO gate on a real MLflow server: model versions of a real pyfunc model, profiles filed as the
profiling DAG files them, verdicts written as version tags, and aliases moved only to a version that
passed."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from ipa_airflow.cli import main
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.profiles import BatchPoint, Profile
from ipa_airflow.registry import MlflowProfileRegistry, ProfileKey
from ipa_airflow.registry.gating import PromotionRefused, gate_model_version, promote
from ipa_airflow.spec import SpecError

pytestmark = pytest.mark.slow

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PEAK = 50.0
SPEC = """
name: {pipeline}
sla_s: 0.5
objective: {{accuracy: product}}
limits: {{batch_sizes: [1, 2, 4], max_replicas: 8}}
stages:
  - name: classify
    registered_model:
      name: {model}
      select: {{aliases: [champion]}}
      accuracy: {{tag: accuracy}}
      shapes: [{{hardware: ci-cpu, resources: {{cpu: 1}}}}]
"""
OTHER_SPEC = """
name: other
sla_s: 0.5
stages:
  - name: classify
    registered_model:
      name: someone-elses-model
      select: {newest: 1}
      accuracy: {tag: accuracy}
      shapes: [{hardware: ci-cpu, resources: {cpu: 1}}]
"""


@pytest.fixture(scope="module")
def logged_model(mlflow_server):
    """One small pyfunc model; every test registers versions of it under its own name."""
    import mlflow

    class Scaler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.tanh(np.asarray(model_input, dtype=np.float32) @ np.ones((16, 4), np.float32))

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Scaler(), input_example=np.zeros((2, 16), np.float32)
        )
    return info.model_uri


@pytest.fixture
def model(mlflow_server, logged_model, tmp_path):
    """A fresh registered model, a spec (in its own folder) whose stage takes its versions, and helpers
    to add versions and file their profiles."""
    import mlflow

    name = f"gate-{uuid.uuid4().hex[:8]}"
    registry = MlflowProfileRegistry(mlflow_server)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "gated.yaml").write_text(SPEC.format(pipeline="gated", model=name))
    (specs / "other.yaml").write_text(OTHER_SPEC)  # names another model: not gated

    class Model:
        def __init__(self):
            self.name, self.registry, self.specs, self.uri = name, registry, specs, mlflow_server

        def version(self, *, accuracy: str | None = "0.8", p99_ms: float | None = None) -> str:
            """A new version; with p99_ms, a profile on the spec's shape filed for it."""
            mv = mlflow.register_model(logged_model, name)
            if accuracy is not None:
                registry.client.set_model_version_tag(name, mv.version, "accuracy", accuracy)
            if p99_ms is not None:
                self.profile(str(mv.version), p99_ms)
            return str(mv.version)

        def profile(self, version: str, p99_ms: float) -> None:
            """What the profiling DAG files: a profile run keyed to the version and the spec's shape. Each
            replica serves 100 req/s whatever its latency: a slow version fails on the SLA, not the load."""
            points = tuple(
                BatchPoint(b, 0.8 * p99_ms * b, 0.9 * p99_ms * b, p99_ms * b, 0.8 * p99_ms * b, 100.0)
                for b in (1, 2, 4)
            )
            profile = Profile(f"{name}-v{version}", "ci-cpu", "fp32", "cpu=1", points)
            key = ProfileKey(f"models:/{name}/{version}", "ci-cpu", "fp32", "cpu=1", "torch==2.0.0")
            registry.log_profile(profile, key)

        def tags(self, version: str) -> dict[str, str]:
            return dict(registry.client.get_model_version(name, version).tags)

        def gate(self, version: str, **kw):
            return gate_model_version(
                registry, name, version, [specs], peak_rps_for=lambda spec: PEAK, now=NOW, **kw
            )

    return Model()


def test_a_fast_version_passes_and_the_verdict_lands_on_its_tags(model):
    v1 = model.version(p99_ms=10)
    run = model.gate(v1)
    assert run.passed and not run.skipped
    [result] = run.results  # the other spec names another model
    assert result.pipeline == "gated" and result.variant == f"{model.name}-v{v1}"
    assert result.passed and result.model_uri == f"models:/{model.name}/{v1}"
    tags = model.tags(v1)
    assert tags["ipa.gate.gated"] == "pass"
    assert tags["ipa.gate.gated.reason"] == "meets the SLA at 50 req/s"
    assert tags["ipa.gate.gated.peak_rps"] == "50"
    assert tags["ipa.gate.gated.plan"].startswith(f"classify={model.name}-v{v1} b")
    assert tags["ipa.gate.gated.checked_at"] == "2026-03-01T12:00:00+00:00"
    assert "ipa.gate.other" not in tags


def test_a_too_slow_version_fails_saying_why_and_is_never_planned(model):
    v1, v2 = model.version(p99_ms=10), model.version(p99_ms=800)
    assert not model.gate(v2).passed
    tags = model.tags(v2)
    assert tags["ipa.gate.gated"] == "fail"
    assert tags["ipa.gate.gated.binding"] == "latency_sla"
    assert (
        "the fastest configuration takes 800.0 ms, over the SLA of 500.0 ms" in tags["ipa.gate.gated.reason"]
    )
    # Made champion by hand: the live plan leaves it out all the same, saying why.
    model.registry.client.set_registered_model_alias(model.name, "champion", v2)
    with pytest.raises(SpecError, match="failed the SLO gate: infeasible"):
        load_pipeline(model.specs / "gated.yaml", registry=model.registry)
    promote(model.registry, model.name, v1, "champion", force=True)  # v1 never gated: forced
    pipeline = load_pipeline(model.specs / "gated.yaml", registry=model.registry)
    assert [v.name for v in pipeline.spec.stage("classify").variants] == [f"{model.name}-v{v1}"]


def test_re_gating_after_re_profiling_turns_a_fail_into_a_pass(model):
    v1 = model.version(p99_ms=800)
    assert not model.gate(v1).passed
    model.profile(v1, 10)  # re-profiled (a faster node, a fixed model): the newest profile counts
    assert model.gate(v1).passed
    tags = model.tags(v1)
    assert tags["ipa.gate.gated"] == "pass" and tags["ipa.gate.gated.binding"] == "-"


def test_a_version_without_accuracy_or_profile_is_pending_not_failed(model):
    """No plan can be made yet: the verdict is 'pending' with the reason, so the version is not shut out
    for good (a 'fail' excludes it) before its accuracy or profile arrives; an alias does not move to it."""
    no_accuracy = model.version(accuracy=None, p99_ms=10)
    [result] = model.gate(no_accuracy).results
    assert not result.passed and result.reason.startswith("no accuracy: no tag 'accuracy'")
    assert model.tags(no_accuracy)["ipa.gate.gated"] == "pending"
    unprofiled = model.version()
    [result] = model.gate(unprofiled).results
    assert not result.passed and result.reason.startswith("not profiled on ci-cpu cpu=1 fp32")
    assert model.tags(unprofiled)["ipa.gate.gated"] == "pending"
    assert model.tags(unprofiled)["ipa.gate.gated.plan"] == "-"
    with pytest.raises(PromotionRefused, match="pending"):
        promote(model.registry, model.name, unprofiled, "champion")
    model.profile(unprofiled, 10)  # profiled now: the same version passes
    assert model.gate(unprofiled).passed


def test_promote_refuses_the_failing_version_and_moves_to_the_passing_one(model):
    good, slow, never = model.version(p99_ms=10), model.version(p99_ms=800), model.version(p99_ms=10)
    model.gate(good), model.gate(slow)
    with pytest.raises(PromotionRefused) as refused:
        promote(model.registry, model.name, slow, "champion")
    assert "failed the SLO gate for gated (gated: infeasible at 50.0 req/s" in str(refused.value)
    assert "--force" in str(refused.value)
    with pytest.raises(MlflowException, match="alias champion not found"):  # not set
        model.registry.client.get_model_version_by_alias(model.name, "champion")
    with pytest.raises(PromotionRefused, match="has not been through the SLO gate"):
        promote(model.registry, model.name, never, "champion")
    done = promote(model.registry, model.name, good, "champion")
    assert "passed the SLO gate" in done
    assert model.registry.client.get_model_version_by_alias(model.name, "champion").version == good
    forced = promote(model.registry, model.name, slow, "champion", force=True)
    assert "forced" in forced
    assert model.registry.client.get_model_version_by_alias(model.name, "champion").version == slow


def test_a_spec_that_does_not_load_is_skipped_not_raised(model):
    v1 = model.version(p99_ms=10)
    (model.specs / "broken.yaml").write_text("name: broken\nsla_s: -1\nstages: []\n")
    run = model.gate(v1)
    assert [r.pipeline for r in run.results] == ["gated"]
    [skipped] = run.skipped
    assert skipped.spec.endswith("broken.yaml") and "sla_s" in skipped.reason


# ---- the command ------------------------------------------------------------------------------------------
def test_cli_gate_and_promote_exit_codes(model, capsys):
    good, slow = model.version(p99_ms=10), model.version(p99_ms=800)
    common = ["--tracking-uri", model.uri, "--json"]
    gate = ["models", "gate", model.name]
    assert main([*gate, good, "--specs", str(model.specs / "gated.yaml"), "--peak-rps", "50", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["results"][0]["passed"] and out["peak_rps"] == 50
    assert main([*gate, slow, "--specs", str(model.specs), "--peak-rps", "50", *common]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["passed"] and out["results"][0]["binding"] == ["latency_sla"]

    promote_ = ["models", "promote", model.name]
    assert main([*promote_, slow, "--alias", "champion", *common]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["moved"] is False
    assert captured.err.startswith("error: ") and "failed the SLO gate" in captured.err
    assert main([*promote_, good, "--alias", "champion", "--tracking-uri", model.uri]) == 0
    assert f"now points at version {good}" in capsys.readouterr().out


def test_cli_text_output_names_verdict_plan_and_binding(model, capsys):
    slow = model.version(p99_ms=800)
    code = main(
        ["models", "gate", model.name, slow, "--specs", str(model.specs), "--peak-rps", "50"]
        + ["--tracking-uri", model.uri]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert f"gated (classify={model.name}-v{slow}): FAIL: infeasible at 50.0 req/s" in out
    assert "plan: best effort: classify=" in out and "binding: latency_sla" in out


def test_cli_bad_input_is_a_clear_error(model, capsys):
    v1 = model.version(p99_ms=10)
    capsys.readouterr()  # what registering printed
    gate = ["models", "gate", model.name]
    # A version MLflow does not have, a spec path that does not exist: exit 2, one line, no traceback.
    assert (
        main([*gate, "999", "--specs", str(model.specs), "--peak-rps", "5", "--tracking-uri", model.uri]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: MLflow at ") and "version 999" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert (
        main([*gate, v1, "--specs", "/nonexistent/specs", "--peak-rps", "5", "--tracking-uri", model.uri])
        == 2
    )
    assert "/nonexistent/specs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: not a version number
        main([*gate, "latest", "--peak-rps", "5"])
    assert exc.value.code == 2
    assert "a whole number" in capsys.readouterr().err
    # No spec names the model: nothing gated, said so.
    other = model.specs / "other.yaml"
    assert main([*gate, v1, "--specs", str(other), "--peak-rps", "5", "--tracking-uri", model.uri]) == 1
    assert "nothing was gated" in capsys.readouterr().err
