"""The Airflow layer for real: DagBag parsing, DAG runs with dag.test() on SQLite against a real MLflow
server and the simulated cluster, and a real MLflow webhook delivered to the real receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from tests.conftest import REPO
from tests.integration.conftest import serving

pytestmark = pytest.mark.slow
SECRET = "test-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    t0 = time.perf_counter()
    bag = DagBag(str(REPO / "dags"))
    bag.parse_s = time.perf_counter() - t0
    return bag


@pytest.fixture
def ipa_env(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("IPA_HOME", str(tmp_path / "ipa"))
    return tmp_path


# Parsing happens every few seconds in a scheduler: no model, trace or MLflow work at import. What a fresh
# process has loaded after parsing the folder says so; a bound on the parse time would fail on a loaded
# machine and pass a DAG that imports torch on a fast one.
HEAVY_AT_IMPORT = {"torch", "torchvision", "mlflow", "statsmodels", "matplotlib"}
_PARSE_IN_A_FRESH_PROCESS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
loaded = sorted({m.split(".")[0] for m in sys.modules})
print("PARSED " + json.dumps({"errors": len(bag.import_errors), "dags": sorted(bag.dags), "loaded": loaded}))
"""


def test_every_dag_imports_without_model_or_mlflow_work(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) >= {
        "ipa_adaptation",
        "ipa_profile_model_version",
        "ipa_poll_model_versions",
        "ipa_train_forecaster",
    }
    print(f"DagBag parse time: {dagbag.parse_s:.2f} s for {len(dagbag.dags)} DAGs")  # for the log only
    out = subprocess.run(
        [sys.executable, "-c", _PARSE_IN_A_FRESH_PROCESS, str(REPO / "dags")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("PARSED ")]
    parsed = json.loads(line.removeprefix("PARSED "))
    assert parsed["errors"] == 0 and parsed["dags"] == sorted(dagbag.dags)
    assert HEAVY_AT_IMPORT.isdisjoint(parsed["loaded"]), HEAVY_AT_IMPORT & set(parsed["loaded"])


def test_provider_is_registered(airflow_db):
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "airflow"), "providers", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ipa-airflow" in out.stdout


def test_the_connection_form_names_and_labels_our_fields():
    """What Airflow's connection form shows for our types: a readable name, our fields relabelled with
    placeholders, the unused ones hidden (read by Airflow's own ProvidersManager from the provider info)."""
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    hooks, behaviours = pm.hooks, pm.field_behaviours
    assert hooks["ipa_mlflow"].hook_name == "IPA: MLflow tracking server"
    assert hooks["ipa_prometheus"].hook_name.startswith("IPA: Prometheus")
    mlflow = behaviours["ipa_mlflow"]
    assert set(mlflow["hidden_fields"]) == {"login", "password", "extra"}
    assert mlflow["relabeling"]["host"] == "Tracking server"
    assert mlflow["placeholders"]["port"] == "5000"


def _xcom(run, task_id):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        )
        return ti.state, ti.xcom_pull(task_ids=task_id)


def test_adaptation_runs_record_decisions_and_skip_unchanged_plans(dagbag, ipa_env, mlflow_server):
    from mlflow import MlflowClient

    dag = dagbag.get_dag("ipa_adaptation")
    t0 = time.perf_counter()
    first = dag.test(run_conf={"trace_second": 40_000})
    wall = time.perf_counter() - t0
    assert first.state == "success"
    state, rec = _xcom(first, "video_gpu.reconcile")
    assert state == "success" and rec["ok"] and [s["action"] for s in rec["stages"]] == ["create", "create"]
    second = dag.test(run_conf={"trace_second": 40_000})
    state, _ = _xcom(second, "video_gpu.reconcile")
    assert second.state == "success" and state == "skipped"  # same load, same plan: nothing to apply
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("ipa-decisions")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`ipa.pipeline` = 'video-gpu' and tags.`ipa.kind` = 'decision'",
    )
    assert len(runs) == 2
    changed = sorted(r.data.tags["ipa.changed"] for r in runs)
    assert changed == ["false", "true"]
    latest = runs[0]
    assert {"load_planned", "accuracy", "cost", "term_accuracy", "term_cost"} <= set(latest.data.metrics)
    assert "binding" in latest.data.tags["ipa.why"]
    artifacts = {a.path for a in client.list_artifacts(latest.info.run_id)}
    assert "decision.json" in artifacts
    # The run's description is the why in full (the tag is cut in the UI), with the stages' table, and
    # the planned load says where it came from.
    note = latest.data.tags["mlflow.note.content"]
    assert note.startswith(latest.data.tags["ipa.why"][:200]) and "| stage | variant | model |" in note
    assert "of the forecast:" in latest.data.tags["ipa.why"]
    # One timeline run per pipeline: a point per decision, its step the decision's time.
    [timeline] = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`ipa.kind` = 'timeline' and tags.`ipa.pipeline` = 'video-gpu'",
    )
    history = client.get_metric_history(timeline.info.run_id, "load_planned")
    assert len(history) == 2 and all(h.step > 1_700_000_000 for h in history)
    assert {"load_forecast_point", "load_observed_peak", "capacity_rps", "cost"} <= set(timeline.data.metrics)
    print(f"one adaptation DAG run (2 pipelines): {wall:.1f} s wall")


def test_loop_mode_gives_each_spec_one_task_that_decides_on_the_specs_cadence(
    airflow_db, ipa_env, mlflow_server
):
    from mlflow import MlflowClient

    parse = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag('dags')\n"
        "dag = bag.dags['ipa_adaptation']\n"
        "print(bag.import_errors, sorted(t.task_id for t in dag.tasks), type(dag.timetable).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", parse],
        cwd=REPO,
        env={**os.environ, "IPA_ADAPTATION_LOOP_S": "600"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "{} ['video_3stage_gpu', 'video_cpu', 'video_gpu'] ContinuousTimetable" in out.stdout

    from ipa_airflow_provider.operators import IpaAdaptationLoopOperator

    op = IpaAdaptationLoopOperator(
        task_id="video_gpu",
        spec_path=str(REPO / "profiles" / "pipelines" / "video-gpu.yaml"),
        duration_s=1,  # one decision: the cadence itself is tested on a fake clock in the unit tests
        trace=str(REPO / "data" / "traces" / "twitter_trace_rps_days00-13.txt.gz"),
        trace_second=40_000,
    )
    summary = op.execute({})
    assert summary == {"decisions": 1, "changes": 1, "bursts": 0, "skipped": [], "failed_reconciles": 0}
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("ipa-decisions")
    [run] = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`ipa.pipeline` = 'video-gpu' and tags.`ipa.kind` = 'decision'",
        max_results=1,
    )
    assert run.data.tags["ipa.changed"] == "true"


@pytest.fixture(scope="module")
def receiver(airflow_db, dagbag):
    """The plugin's FastAPI app served by uvicorn, with the DAGs (and so their assets) in the database."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, bundle_name="dags-folder", bundle_version=None)
    os.environ["IPA_WEBHOOK_SECRET"] = SECRET
    from ipa_airflow_provider.plugin import app

    with serving(app, log_level="info") as url:
        yield url


def _asset_events():
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from ipa_airflow_provider.plugin import MODEL_VERSIONS_URI

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == MODEL_VERSIONS_URI)
            .all()
        )
        return [dict(r.extra or {}) for r in rows]


# Order matters here: this test runs before any other model version is created in this module. When a
# model version was created (and the server cached "no webhooks for model_version.created") shortly
# before the webhook was registered, this MLflow server did not deliver the next event in our runs.
def test_mlflow_webhook_starts_profiling(receiver, mlflow_server, ipa_env):
    import mlflow
    import torch
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    hook = client.create_webhook(
        name=f"ipa-{uuid.uuid4().hex[:6]}",
        url=f"{receiver}/mlflow",
        events=["model_version.created"],
        secret=SECRET,
    )
    probe = client.test_webhook(hook.webhook_id)  # MLflow's own signed test delivery to the receiver
    assert probe.success, (probe.response_status, probe.response_body, probe.error_message)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            torch.nn.Linear(8, 2),
            name="model",
            input_example=np.zeros((2, 8), np.float32),
            registered_model_name="hooked-model",
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = [e for e in _asset_events() if e.get("name") == "hooked-model"]
        if events:
            break
        time.sleep(0.5)  # MLflow delivers webhooks asynchronously
    assert events, _asset_events()
    assert events[0]["version"] == "1" and events[0]["source"] == "mlflow-webhook"

    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        queued = {q.target_dag_id for q in session.query(AssetDagRunQueue).all()}
    assert "ipa_profile_model_version" in queued  # the scheduler turns this into the profiling DAG run


def test_forged_and_stale_webhooks_are_refused(receiver):
    import urllib.error
    import urllib.request

    from ipa_airflow.webhooks import sign

    body = json.dumps(
        {"entity": "model_version", "action": "created", "data": {"name": "x", "version": "9"}}
    ).encode()

    def post(headers):
        req = urllib.request.Request(
            f"{receiver}/mlflow",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    now = str(int(time.time()))
    good = {"X-MLflow-Delivery-Id": "d1", "X-MLflow-Timestamp": now}
    assert post({**good, "X-MLflow-Signature": sign("wrong-secret", "d1", now, body)}) == 401
    old = str(int(time.time()) - 3600)
    assert (
        post(
            {
                "X-MLflow-Delivery-Id": "d1",
                "X-MLflow-Timestamp": old,
                "X-MLflow-Signature": sign(SECRET, "d1", old, body),
            }
        )
        == 401
    )
    assert post(good) == 401  # unsigned
    assert not [e for e in _asset_events() if e.get("name") == "x"]
    signed = {**good, "X-MLflow-Signature": sign(SECRET, "d1", now, body)}
    assert post(signed) == 200
    assert post(signed) == 409  # the same delivery again: a replay, no second profiling run
    assert len([e for e in _asset_events() if e.get("name") == "x"]) == 1
    assert post({**signed, "X-MLflow-Signature": "v1,\u00e9".encode("latin-1")}) == 400  # not a 500
    assert post({**signed, "Content-Length": str(64 << 20)}) == 413  # refused before reading 64 MiB


def test_a_replay_sent_to_another_worker_is_refused_through_the_database(receiver):
    """Each API-server worker has its own in-memory guard; the asset events in the metadata database,
    which every worker shares, carry the delivery id and refuse the second copy."""
    from ipa_airflow_provider.plugin import emit_model_version_event

    from ipa_airflow.webhooks import DeliveryReplayed

    delivery = f"worker-{uuid.uuid4().hex[:8]}"
    emit_model_version_event("y", "1", "mlflow-webhook", delivery_id=delivery)
    with pytest.raises(DeliveryReplayed, match="a replay"):
        emit_model_version_event("y", "1", "mlflow-webhook", delivery_id=delivery)
    [event] = [e for e in _asset_events() if e.get("delivery_id") == delivery]
    assert event == {"name": "y", "version": "1", "source": "mlflow-webhook", "delivery_id": delivery}


def test_profiling_dag_profiles_a_registered_version(dagbag, ipa_env, mlflow_server, monkeypatch):
    import mlflow
    import torch

    monkeypatch.setenv("IPA_PROFILE_THREADS", "1")
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4)).eval()
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=np.zeros((2, 32), np.float32),
            registered_model_name="dag-classifier",
        )
    run = dagbag.get_dag("ipa_profile_model_version").test(
        run_conf={"name": "dag-classifier", "version": "1"}
    )
    assert run.state == "success"
    tags = mlflow.MlflowClient(mlflow_server).get_model_version("dag-classifier", "1").tags
    assert any(k.startswith("ipa.profile.airflow-cpu.cpu1.fp32") for k in tags)


SPEC_ASKING = """
name: asks
sla_s: 0.5
stages:
  - name: classify
    registered_model:
      name: spec-classifier
      select: {newest: 1}
      accuracy: {tag: ipa.accuracy}
      shapes:
        - {hardware: ci-worker, resources: {cpu: 1}}
        - {hardware: ci-worker, resources: {cpu: 2}}
"""


def test_profiling_dag_profiles_the_shapes_the_specs_ask_for(airflow_db, ipa_env, mlflow_server, monkeypatch):
    """A spec takes its variants from a registered model on this worker's hardware with 1 and 2 cores:
    the DAG profiles the new version on exactly those shapes, filed under the spec's hardware name (what
    the planner looks up); no pod is needed, and the gate updates ipa://mlflow/profiles. A broken spec
    beside it is skipped, not fatal."""
    import mlflow
    import torch
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    specs = ipa_env / "specs"
    specs.mkdir()
    (specs / "asks.yaml").write_text(SPEC_ASKING)
    (specs / "broken.yaml").write_text("name: broken\n")  # no sla_s, no stages
    # The DAG reads its settings when parsed: parse it again under these.
    monkeypatch.setenv("IPA_SPECS_DIR", str(specs))
    monkeypatch.setenv("IPA_PROFILE_HARDWARE", "ci-worker")
    monkeypatch.setenv("IPA_PROFILE_BATCHES", "1")
    dag = DagBag(str(REPO / "dags" / "ipa_profile_model_version.py")).get_dag("ipa_profile_model_version")
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=np.zeros((2, 16), np.float32),
            registered_model_name="spec-classifier",
        )
    run = dag.test(run_conf={"name": "spec-classifier", "version": "1"})
    assert run.state == "success"
    state, found = _xcom(run, "targets")
    assert state == "success"
    assert [(t["hardware"], t["cpu"], t["where"]) for t in found] == [
        ("ci-worker", 1.0, "worker"),
        ("ci-worker", 2.0, "worker"),
    ]
    tags = mlflow.MlflowClient(mlflow_server).get_model_version("spec-classifier", "1").tags
    assert {k.rsplit(".", 1)[0] for k in tags if k.endswith(".run_id") and k.startswith("ipa.profile")} == {
        "ipa.profile.ci-worker.cpu1.fp32",
        "ipa.profile.ci-worker.cpu2.fp32",
    }
    with create_session() as session:
        tis = {
            (ti.task_id, ti.map_index): ti
            for ti in session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id)
        }
    assert sorted(ti.rendered_map_index for (task, _), ti in tis.items() if task == "profile") == [
        "spec-classifier v1 on ci-worker cpu=1 fp32",
        "spec-classifier v1 on ci-worker cpu=2 fp32",
    ]
    assert tis[("profile_pod", -1)].state == "skipped"  # nothing to profile in a pod
    assert tis[("gate", -1)].state == "success"
    [gated] = tis[("gate", -1)].xcom_pull(task_ids="gate")
    assert (gated["name"], gated["version"]) == ("spec-classifier", "1")
    # The version has no 'ipa.accuracy' tag: the gate says so on it (pending, not failed: it is judged
    # again once it has one), and it is no candidate meanwhile.
    [result] = gated["results"]
    assert result["pipeline"] == "asks" and not result["passed"] and "no accuracy" in result["reason"]
    tags = mlflow.MlflowClient(mlflow_server).get_model_version("spec-classifier", "1").tags
    assert tags["ipa.gate.asks"] == "pending"
    assert [s["spec"].endswith("broken.yaml") for s in gated["skipped"]] == [True]


def test_weekly_retraining_reads_the_last_days_from_prometheus(airflow_db, prometheus_history, mlflow_server):
    from mlflow import MlflowClient

    from ipa_airflow.forecasting.sources import last_whole_days

    url, start, end = prometheus_history
    if last_whole_days(time.time(), 2) != (start, end):
        pytest.skip("the UTC day changed since the history was written; the DAG would read other days")
    host, port = url.removeprefix("http://").split(":")
    env = {
        **os.environ,
        "IPA_LOAD_SOURCE": "prometheus",
        "IPA_PROMETHEUS_QUERY": "sum(irate(ipa_requests_total[5s]))",
        "IPA_HISTORY_DAYS": "2",
        "IPA_TRAIN_DAYS": "0",
        "IPA_TEST_DAYS": "1",
        "IPA_FORECASTER_NAME": "ipa-weekly-from-prometheus",
        "IPA_FORECASTER_MODEL": "lstm-quantile-onsets",
        "MLFLOW_TRACKING_URI": mlflow_server,
        "AIRFLOW_CONN_IPA_PROMETHEUS_DEFAULT": json.dumps(
            {"conn_type": "ipa_prometheus", "host": host, "port": int(port)}
        ),
    }
    client = MlflowClient(mlflow_server)
    assert not client.search_model_versions("name = 'ipa-weekly-from-prometheus'")
    run = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "run = DagBag('dags').dags['ipa_train_forecaster'].test()\n"
        "print('STATE', run.state)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", run], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert "STATE success" in out.stdout, (out.stdout + out.stderr)[-3000:]
    [newest] = client.search_model_versions("name = 'ipa-weekly-from-prometheus'")
    # trained on one day of this load: 86,400 s in 10-s decisions, less the calibration tenth
    trained = client.get_run(newest.run_id)
    assert 7000 <= int(trained.data.params["samples"]) <= 8640
    assert trained.info.run_name == "train lstm-quantile-onsets"
