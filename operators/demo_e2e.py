"""The end-to-end demo on embedded defaults (`ipa demo --end-to-end`, `make demo`): profile into a local
MLflow, run the adaptation DAG through Airflow against the simulated cluster, register a new model
version and profile it, compare policies. It runs DAGs, so it lives in the Airflow layer; the `ipa`
command imports it only for --end-to-end.

Everything lives under IPA_HOME (default .ipa/): the MLflow store, Airflow's SQLite database, the simulated
cluster and the report. No service is left running. Airflow is imported only after its home is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

DEMO_MODEL = "demo-classifier"
WINDOW_START = 962_460  # the bursty window of days 10-13 (ipa simulate patterns)
RUNS = 6
STEP_S = 200


def _env(home: Path) -> None:
    os.environ["IPA_HOME"] = str(home)
    os.environ["AIRFLOW_HOME"] = str(home / "airflow")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
    os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # the demo prints its own progress
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.setdefault("IPA_PROFILE_THREADS", "1")
    os.environ.setdefault("IPA_PROFILE_BATCHES", "1,2,4")


def _register(version_model, console) -> str:
    import mlflow
    import numpy as np

    from ipa_airflow.profiling.zoo import build

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(os.environ["MLFLOW_TRACKING_URI"])
    from ipa_airflow.settings import load_settings

    exp = "ipa-demo-models"
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(exp) is None:
        client.create_experiment(exp, artifact_location=load_settings().mlflow.artifact_root)
    mlflow.set_experiment(exp)
    with mlflow.start_run(run_name=f"register {version_model}"):
        info = mlflow.pytorch.log_model(
            build(version_model),
            name="model",
            registered_model_name=DEMO_MODEL,
            input_example=np.zeros((2, 3, 224, 224), np.float32),
        )
    console.print(f"  registered {DEMO_MODEL} version {info.registered_model_version} ({version_model})")
    return str(info.registered_model_version)


def run(home: Path, console) -> dict:
    t0 = time.perf_counter()
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    _env(home)
    # Airflow's in-process test client imports a deprecated httpx path; not ours to fix, and noise here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    console.rule("1. profile zoo variants on CPU into MLflow")
    from ipa_airflow.profiling.sweep import SweepRequest, profile_registered
    from ipa_airflow.profiling.timing import TimingSettings
    from ipa_airflow.registry import registry_for
    from ipa_airflow.settings import load_settings

    settings = load_settings()
    registry = registry_for(settings.mlflow.tracking_uri)
    fast = TimingSettings(min_iters=10, min_seconds=0.5, max_seconds=5)
    version = _register("resnet18", console)
    ref, name, _ = registry.resolve_model_ref(f"models:/{DEMO_MODEL}/{version}")
    result = profile_registered(ref, name, SweepRequest("demo-cpu", (1, 2, 4), device="cpu"), settings=fast)
    run_id = registry.log_profile(result.profile, result.key)
    registry.tag_model_version(name, version, result.profile, result.key, run_id)
    console.print(f"  profiled {ref}: b1 p99 {result.profile.points[0].p99_ms:.1f} ms (run {run_id[:8]})")

    console.rule("2. the ipa_adaptation DAG through Airflow, stepping through a bursty window")
    if not (home / "airflow" / "airflow.db").exists():
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    import logging

    logging.getLogger("airflow").setLevel(logging.WARNING)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag("ipa_adaptation")
    decisions = []
    for i in range(RUNS):
        second = WINDOW_START + i * STEP_S
        dr = dag.test(run_conf={"trace_second": second})
        decisions.append((second, str(dr.state)))
        console.print(f"  run {i + 1}/{RUNS} at trace second {second}: {dr.state}")

    console.rule("3. a new model version triggers re-profiling")
    new_version = _register("mobilenet_v3_large", console)
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    from .plugin import emit_model_version_event

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    event = emit_model_version_event(DEMO_MODEL, new_version, "demo")  # what the webhook receiver does
    console.print(f"  asset event {event} on ipa://mlflow/model-versions; running ipa_profile_model_version")
    pr = bag.get_dag("ipa_profile_model_version").test(run_conf={"name": DEMO_MODEL, "version": new_version})
    console.print(f"  profiling DAG: {pr.state}")

    console.rule("4. policies compared on the same window (simulated, 20 minutes)")
    from ipa_airflow.forecasting.sources import read_trace
    from ipa_airflow.settings import default_specs_dir, default_trace
    from ipa_airflow.simulation import experiments as ev

    trace = read_trace(default_trace(), damping=8)
    fitted = ev.fit_forecaster(trace, model="exp-smoothing")
    report_dir = home / "report"
    report = ev.evaluate(
        [str(default_specs_dir() / "video-cpu.yaml")], trace, report_dir, patterns=["bursty"], fitted=fitted
    )
    return {
        "report": report,
        "report_dir": report_dir,
        "decisions": decisions,
        "wall_s": time.perf_counter() - t0,
        "profiling_state": str(pr.state),
        # Every DAG run succeeded: the demo's exit status.
        "ok": str(pr.state).endswith("success") and all(s.endswith("success") for _, s in decisions),
    }
