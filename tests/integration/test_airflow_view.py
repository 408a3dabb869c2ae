"""The pipelines view for real: decisions made by the planner and logged to a real MLflow server, read
back by the view served by uvicorn, its JSON and HTML checked, and the page rendered by headless Chromium
(a screenshot that is not blank, a DOM that holds the data); the plugin's routes refuse callers without an
Airflow login; the record task's extra link reaches its decision run after a real task run."""

from __future__ import annotations

import datetime as dt
import html
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from tests.conftest import PIPELINES
from tests.integration.conftest import free_port, serving
from tests.reconcile_plans import FakeClock

pytestmark = pytest.mark.slow
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _forecast(load: float, at: dt.datetime):
    from ipa_airflow.forecasting.base import Forecast
    from ipa_airflow.spec import PLAN_QUANTILES

    return Forecast("exp-smoothing", 20, load * 0.8, {f"{q:g}": load for q in PLAN_QUANTILES}, at.isoformat())


def _decisions(name: str):
    """Three steps of the planner on video-cpu (named `name`, which no other test's decisions share): a
    first plan (applied), the same plan kept, then a switch for a burst whose rollout never becomes ready
    (not applied, rolled back)."""
    from ipa_airflow.cluster.reconcile import reconcile
    from ipa_airflow.cluster.simulated import SimulatedBackend
    from ipa_airflow.control import Context, DecisionRecord, decide
    from ipa_airflow.pipelines import Pipeline, load_pipeline

    video = load_pipeline(PIPELINES / "video-cpu.yaml")
    cpu = Pipeline(video.spec.model_copy(update={"name": name}), video.profiles, video.source)
    clock = FakeClock()
    backend = SimulatedBackend(clock=clock, sleep=clock.sleep, startup_s=1.0)
    records, running = [], None
    for i, (load, peak) in enumerate([(8.0, 7.5), (8.0, 9.0), (40.0, 38.0)]):
        at = NOW + dt.timedelta(minutes=i)
        d, _ = decide(Context(at, _forecast(load, at), running, cpu))
        result = None
        if d.changed:
            if i == 2:  # every Deployment of the switch stays unready: the reconcile gives up and rolls back
                backend.hold = {f"{cpu.spec.name}-{s.stage}" for s in d.plan.stages}
            result = reconcile(d.plan, cpu.spec, backend, clock=clock, sleep=clock.sleep, lock_wait_s=0)
            if result.ok:
                running = tuple(s.config_key for s in d.plan.stages)
        extra = {"observed_peak_next_20s": peak}
        records.append(DecisionRecord(at.isoformat(), _forecast(load, at), d, result, extra))
    assert [r.changed for r in records] == [True, False, True]
    assert records[0].reconcile.ok and not records[2].reconcile.ok
    return cpu, records


@pytest.fixture(scope="module")
def logged(mlflow_server):
    """The decisions of a pipeline of its own in the session's MLflow, in the decisions experiment the
    plugin reads, and a profile run for the first stage's zoo model (in an experiment of its own: other
    tests profile the same models), tagged as the profile registry tags its runs."""
    from mlflow import MlflowClient

    from ipa_airflow.decisions import log_decision
    from ipa_airflow.registry.keys import ProfileKey
    from ipa_airflow.reports.pipelines_view import DecisionRun, stage_keys
    from ipa_airflow.settings import DECISIONS_EXPERIMENT

    suffix = uuid.uuid4().hex[:8]
    cpu, records = _decisions(f"view-{suffix}")
    experiment, profiles = DECISIONS_EXPERIMENT, f"view-profiles-{suffix}"
    run_ids = [log_decision(r, tracking_uri=mlflow_server, experiment=experiment) for r in records]
    client = MlflowClient(mlflow_server)
    first = stage_keys(DecisionRun("", "", records[0]))[0]
    key = ProfileKey(first.model_ref, first.hardware, first.dtype, first.resources, "torch==2.14.1")
    profile_run = client.create_run(client.create_experiment(profiles), tags=key.to_tags()).info.run_id
    client.set_terminated(profile_run)
    return {
        "cpu": cpu,
        "records": records,
        "run_ids": run_ids,
        "experiment": experiment,
        "experiment_id": client.get_experiment_by_name(experiment).experiment_id,
        "profiles": profiles,
        "profile_run": profile_run,
        "first_stage": first,
    }


@pytest.fixture(scope="module")
def view(logged, mlflow_server):
    """The view's routes alone (no Airflow login in front), under uvicorn, reading the real MLflow."""
    from fastapi import FastAPI
    from ipa_airflow_provider.view import create_router

    from ipa_airflow.reports.decision_runs import DecisionRuns

    reader = DecisionRuns(
        mlflow_server, experiment=logged["experiment"], profiles_experiment=logged["profiles"]
    )
    app = FastAPI()
    app.include_router(create_router(reader.overview), prefix="/ipa")
    with serving(app) as url:
        yield url


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_view_answers_with_what_runs_and_why(view, logged, mlflow_server):
    status, body = _get(f"{view}/ipa/api/pipelines")
    assert status == 200, body
    data = json.loads(body)
    [p] = [p for p in data["pipelines"] if p["pipeline"] == logged["cpu"].spec.name]
    records, run_ids, exp = logged["records"], logged["run_ids"], logged["experiment_id"]
    assert p["pipeline"] == records[0].pipeline == logged["cpu"].spec.name
    # What runs now: the plan the second decision kept, since the third's switch was never applied.
    now = p["running"]
    assert now["state"] == "kept" and now["run_id"] == run_ids[1]
    assert now["plan_id"] == records[0].plan.plan_id
    assert [(s["stage"], s["variant"], s["batch"], s["replicas"]) for s in now["stages"]] == [
        (s.stage, s.variant, s.batch, s.replicas) for s in records[1].plan.stages
    ]
    assert "1 newer decision(s) not applied" in p["note"]
    # The last decisions, newest first, each with its outcome, why and MLflow run.
    rows = p["decisions"]
    assert [r["run_id"] for r in rows] == run_ids[::-1]
    assert [r["outcome"].split(":")[0] for r in rows] == ["not applied", "kept", "applied"]
    assert [r["why"] for r in rows] == [r.why for r in records[::-1]]
    assert [r["observed_peak_rps"] for r in rows] == [38.0, 9.0, 7.5]
    assert rows[0]["run_url"] == f"{mlflow_server}/#/experiments/{exp}/runs/{run_ids[2]}"
    # The newest forecast beside what it planned for and the load that came.
    f = p["forecast"]
    assert f["planned_rps"] == records[2].planned_load_rps and f["observed_peak_rps"] == 38.0
    assert f["point_rps"] == pytest.approx(32.0)
    # The first stage's numbers link to the profile run of its model on its shape; the others have none.
    first = now["stages"][0]
    assert first["model_ref"] == logged["first_stage"].model_ref
    assert first["profile_run_id"] == logged["profile_run"]
    assert first["profile_url"].endswith(f"/runs/{logged['profile_run']}")
    assert all(s["profile_run_id"] is None for s in now["stages"][1:])
    assert p["timeline_url"] and data["experiment_url"] == f"{mlflow_server}/#/experiments/{exp}"

    status, page = _get(f"{view}/ipa/pipelines")
    assert status == 200
    assert p["pipeline"] in page and html.escape(records[0].why) in page
    assert all(s["variant"] in page for s in now["stages"]) and "<svg" in page


def test_chromium_renders_the_view_with_its_data(view, logged, tmp_path):
    from ipa_airflow.reports.browser import colours, dump_dom, find_browser

    if find_browser() is None:
        pytest.skip("no Chromium here (apt-get install chromium, or `make services` as root)")
    url = f"{view}/ipa/pipelines"
    dom = dump_dom(url)
    pipeline = logged["cpu"].spec.name
    assert f'id="pipeline-{pipeline}"' in dom and "not applied" in dom
    out = tmp_path / "view.png"
    done = subprocess.run(
        [sys.executable, "-m", "ipa_airflow.cli.ui", "screenshot", "--url", url, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    assert colours(out) > 50  # text, tables and the chart; a blank page is one colour


def test_the_view_says_when_mlflow_does_not_answer(monkeypatch):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from ipa_airflow_provider.view import create_router

    from ipa_airflow.reports.decision_runs import DecisionRuns

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = f"http://127.0.0.1:{free_port()}"
    app = FastAPI()
    app.include_router(create_router(DecisionRuns(down).overview))
    client = TestClient(app)
    got = client.get("/api/pipelines")
    assert got.status_code == 503 and f"cannot reach MLflow at {down}" in got.json()["detail"]
    page = client.get("/pipelines")
    assert page.status_code == 503 and "MLflow could not be read" in page.text


def test_the_airflow_api_server_serves_the_view_to_its_users_and_lists_it_in_the_nav(
    airflow_db, logged, mlflow_server, monkeypatch
):
    """Airflow's own API server app, with our plugin mounted by Airflow: the view needs an Airflow login
    (a token, or the UI's cookie its frame sends), and the UI's plugin list carries the nav entry."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # no ipa_mlflow_default connection here
    client = TestClient(create_app())
    for path in ("/ipa/pipelines", "/ipa/api/pipelines", "/ipa/icon.svg"):
        assert client.get(path).status_code == 401, path
    assert client.get("/ipa/api/pipelines", headers={"Authorization": "Bearer forged"}).status_code == 403
    # A token as Airflow's login issues it (the simple auth manager's users have generated passwords).
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="ops", role="admin"))
    auth = {"Authorization": f"Bearer {token}"}
    got = client.get("/ipa/api/pipelines", headers=auth)
    assert got.status_code == 200, got.text
    mine = [p for p in got.json()["pipelines"] if p["pipeline"] == logged["cpu"].spec.name]
    assert mine and mine[0]["running"]["run_id"] == logged["run_ids"][1]
    client.cookies.set("_token", token)
    page = client.get("/ipa/pipelines")
    assert page.status_code == 200 and logged["cpu"].spec.name in page.text
    plugins = client.get("/api/v2/plugins", headers=auth).json()["plugins"]
    [ours] = [p for p in plugins if p["name"] == "ipa_airflow"]
    assert [(v["name"], v["href"], v["url_route"]) for v in ours["external_views"]] == [
        ("IPA pipelines", "ipa/pipelines", "ipa-pipelines")
    ]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/ipa"]


def test_the_record_task_links_to_its_decision_run(airflow_db, mlflow_server, monkeypatch, tmp_path):
    """A task with the link returns a decision's run id; when it ends, Airflow stores the link's URL."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG, BaseOperator
    from airflow.utils.session import create_session
    from ipa_airflow_provider.links import MlflowDecisionRunLink

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)

    class Recorded(BaseOperator):
        operator_extra_links = (MlflowDecisionRunLink(),)

        def execute(self, context):
            return {"run_id": "0123abcd", "why": "kept", "changed": False}

    with DAG(f"ipa_view_link_{uuid.uuid4().hex[:6]}", schedule=None, start_date=NOW) as dag:
        Recorded(task_id="record")
    # dag.test() runs serialized DAGs of a bundle: file this one under the DAGs folder's bundle first.
    bag = DagBag(dag_folder=str(tmp_path), collect_dags=False)
    bag.bag_dag(dag)
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    run = dag.test()
    with create_session() as session:
        link = (
            session.query(XComModel)
            .filter_by(
                dag_id=dag.dag_id, run_id=run.run_id, task_id="record", key=MlflowDecisionRunLink().xcom_key
            )
            .one()
        )
    assert link.value == f"{mlflow_server}/#/runs/0123abcd"


def test_links_go_to_the_mlflow_ui_without_the_tracking_uris_credentials():
    from ipa_airflow.reports.pipelines_view import MlflowLinks, mlflow_ui_base

    assert mlflow_ui_base("https://bot:s3cret@mlflow.example:5000/") == "https://mlflow.example:5000"
    assert mlflow_ui_base("sqlite:///tmp/mlflow.db") is None  # a local store has no UI to link to
    assert mlflow_ui_base("sqlite:///tmp/mlflow.db", "http://mlflow.local/") == "http://mlflow.local"
    links = MlflowLinks("http://m")
    assert links.model("models:/demo classifier/2") == "http://m/#/models/demo%20classifier/versions/2"
    assert links.model("models:/x@champion") is None and links.model("zoo:resnet18") is None
    assert MlflowLinks(None).run("abc") is None


def test_the_screenshot_command_names_a_page_that_does_not_answer(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/plugin/ipa-pipelines"
    out = tmp_path / "view.png"
    done = subprocess.run(
        [sys.executable, "-m", "ipa_airflow.cli.ui", "screenshot", "--url", url, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        done.returncode == 2
        and f"error: cannot reach {url}" in done.stderr
        and "Traceback" not in done.stderr
    )
    assert not out.exists()
