"""The demo's MLflow store and Airflow database served for a look in a browser (`ipa ui
demo-screenshots`): `mlflow server` and `airflow api-server` as child processes on free loopback ports,
the view reading that MLflow through the `ipa_mlflow_default` connection, both stopped on exit."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

START_S = 180.0  # an api-server's first start migrates nothing but imports a lot: minutes on a busy machine


class DemoNotRun(ValueError):
    """The demo's stores are not there; the message says to run it first."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}); its log: {log}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)  # a server starting up: poll again
    raise RuntimeError(f"{what} did not answer at {url} within {START_S:.0f} s; its log: {log}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def serving_demo(home: Path) -> Iterator[tuple[str, str]]:
    """(MLflow URL, Airflow URL) while both serve the demo under `home`."""
    db, airflow_home = home / "mlflow.db", home / "airflow"
    if not db.exists() or not (airflow_home / "airflow.db").exists():
        raise DemoNotRun(f"no demo under {home} (mlflow.db and airflow/airflow.db): run `make demo` first")
    bin_dir = Path(sys.executable).parent
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    m_port, a_port = _free_port(), _free_port()
    mlflow_url, airflow_url = f"http://127.0.0.1:{m_port}", f"http://127.0.0.1:{a_port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_url}
    m_log, a_log = logs / "mlflow-server.log", logs / "airflow-api-server.log"
    with open(m_log, "w") as mf, open(a_log, "w") as af:
        mlflow = subprocess.Popen(
            [str(bin_dir / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
             "--host", "127.0.0.1", "--port", str(m_port), "--workers", "1"],
            stdout=mf, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        airflow = None
        try:
            _wait(f"{mlflow_url}/health", mlflow, "mlflow server", m_log)
            airflow_env = {
                **env,
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[2] / "dags"),
                "AIRFLOW_CONN_IPA_MLFLOW_DEFAULT": json.dumps(
                    {"conn_type": "ipa_mlflow", "host": "http://127.0.0.1", "port": m_port}
                ),
            }
            airflow = subprocess.Popen(
                [str(bin_dir / "airflow"), "api-server", "--port", str(a_port)],
                stdout=af, stderr=subprocess.STDOUT, env=airflow_env,
            )  # fmt: skip
            _wait(f"{airflow_url}/api/v2/version", airflow, "airflow api-server", a_log)
            yield mlflow_url, airflow_url
        finally:
            if airflow is not None:
                _stop(airflow)
            _stop(mlflow)


def newest_decision_url(mlflow_url: str) -> str:
    """The page of the newest decision run (not a timeline run) in the MLflow UI."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name("ipa-decisions")
    if exp is None:
        raise DemoNotRun(f"MLflow at {mlflow_url} has no ipa-decisions experiment: run `make demo` first")
    runs = client.search_runs([exp.experiment_id], "tags.`ipa.kind` = 'decision'", max_results=1)
    if not runs:
        raise DemoNotRun(f"MLflow at {mlflow_url} holds no decision run: run `make demo` first")
    return f"{mlflow_url}/#/experiments/{exp.experiment_id}/runs/{runs[0].info.run_id}"
