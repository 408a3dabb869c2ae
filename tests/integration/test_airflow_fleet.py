"""The adaptation DAG with a fleet spec configured (IPA_FLEET_SPEC): parsed by a real DagBag, one task that
decides the fleet together, run with dag.test() on SQLite against the simulated cluster and an embedded
MLflow store."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
FLEET = REPO / "profiles" / "fleets" / "example.yaml"


def _parse(monkeypatch, **env):
    from airflow.dag_processing.dagbag import DagBag

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags["ipa_adaptation"]


def test_a_configured_fleet_is_one_task_and_a_run_plans_it_within_the_quota(
    airflow_db, tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    from ipa_airflow.cluster.fleet_reconcile import running_usage
    from ipa_airflow.cluster.simulated import SimulatedBackend
    from ipa_airflow.fleet import load_fleet

    home, tracking = tmp_path / "ipa", f"sqlite:///{tmp_path / 'mlflow.db'}"
    looped = _parse(monkeypatch, IPA_FLEET_SPEC=str(FLEET), IPA_ADAPTATION_LOOP_S="600")
    assert [t.task_id for t in looped.tasks] == ["fleet"] and looped.tasks[0].duration_s == 600
    monkeypatch.delenv("IPA_ADAPTATION_LOOP_S")
    dag = _parse(monkeypatch, IPA_HOME=str(home), MLFLOW_TRACKING_URI=tracking)
    [task] = dag.tasks
    assert task.task_id == "fleet" and task.duration_s == 0 and task.fleet_path == str(FLEET)

    run = dag.test(run_conf={"trace_second": 40_000})
    assert run.state == "success"
    fleet = load_fleet(FLEET)
    cluster = SimulatedBackend(state_file=home / "cluster" / "simulated.json")
    used = [running_usage(m.pipeline.spec, cluster, ("cpu",))["cpu"] for m in fleet.members]
    assert all(u > 0 for u in used) and sum(used) <= fleet.quota["cpu"]
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("ipa-decisions")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`ipa.kind` = 'decision'")
    assert sorted(r.data.tags["ipa.pipeline"] for r in runs) == sorted(fleet.pipeline_names)


def test_without_a_fleet_the_dag_keeps_a_task_group_per_spec(airflow_db, monkeypatch):
    monkeypatch.delenv("IPA_FLEET_SPEC", raising=False)
    dag = _parse(monkeypatch)
    assert "fleet" not in {t.task_id for t in dag.tasks}
    assert {"video_cpu.plan", "video_gpu.reconcile"} <= {t.task_id for t in dag.tasks}
