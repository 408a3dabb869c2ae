"""Real services for integration tests, started once per session on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{url} exited with {proc.returncode} before answering:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # polling a starting server, not a timing assumption
    raise RuntimeError(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` with a SQLite backend and a local artifact store."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = root / "server.log"
    cmd = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Webhooks to our receiver on loopback over plain http are what the tests deliver.
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": "",
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            },
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", proc, 120, log)
        yield uri
    finally:
        stop(proc)


class TraceExporter:
    """Serves /metrics with a counter `ipa_requests_total` that replays a per-second trace in real time
    (the counter advances by trace[i] during second i, cycling), as a pipeline's ingress would."""

    def __init__(self, trace, clock=time.monotonic):
        import itertools
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.trace = [float(x) for x in trace]
        self.cum = [0.0, *itertools.accumulate(self.trace)]
        self.clock = clock
        self.t0 = clock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/garbage"):  # a server that answers, but not as Prometheus
                    body, code = b"<html>maintenance</html>", 200
                elif self.path == "/metrics":
                    body, code = exporter.render().encode(), 200
                else:
                    body, code = b"not found", 404
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count_at(self, elapsed: float) -> float:
        n = len(self.trace)
        cycles, rest = divmod(elapsed, n)
        whole = int(rest)
        return cycles * self.cum[-1] + self.cum[whole] + (rest - whole) * self.trace[whole]

    def render(self) -> str:
        value = self.count_at(self.clock() - self.t0)
        return f'# TYPE ipa_requests_total counter\nipa_requests_total{{pipeline="video"}} {value}\n'

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory):
    """The real Prometheus server (Debian package), scraping a trace-replaying exporter every second."""
    import shutil

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make test installs Debian's package when run as root)")
    exporter = TraceExporter([4, 8, 12, 8] * 5)
    root = tmp_path_factory.mktemp("prometheus")
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: ipa\n    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n"
    )
    try:
        with running_prometheus(binary, root, config) as url:
            yield url, exporter
    finally:
        exporter.close()


@contextlib.contextmanager
def running_prometheus(binary: str, root: Path, config: str):
    """Prometheus with `config` and its database in root/data, on a free port: yields its URL."""
    (root / "prometheus.yml").write_text(config)
    port = free_port()
    log = root / "prometheus.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", proc, 60, log)
        yield url
    finally:
        stop(proc)


# The load in the Prometheus history below: requests in each second, by the hour of the day, with the
# scrape down for OUTAGE seconds of the first day.
HISTORY_DAYS = 2
OUTAGE = (40_000, 40_600)


def history_counts(t):
    return 20 + (t // 3600) % 5 + 3 * (t % 7 == 0)


@pytest.fixture(scope="session")
def prometheus_history(tmp_path_factory):
    """The real Prometheus server holding the last HISTORY_DAYS whole UTC days of a requests counter
    sampled every second, written into its database with `promtool tsdb create-blocks-from openmetrics`
    (Prometheus' own backfill): days of history a test cannot wait for a scraper to collect."""
    import shutil

    from ipa_airflow.forecasting.sources import last_whole_days

    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if binary is None or promtool is None:
        pytest.skip("prometheus is not installed (make test installs Debian's package when run as root)")
    start, end = last_whole_days(time.time(), HISTORY_DAYS)
    root = tmp_path_factory.mktemp("prometheus-history")
    samples = root / "requests.om"
    with open(samples, "w") as fh:
        fh.write("# TYPE ipa_requests counter\n")
        total = 0
        for t in range(start, end):
            if not OUTAGE[0] <= t - start < OUTAGE[1]:
                total += history_counts(t)
                fh.write(f'ipa_requests_total{{pipeline="video"}} {total} {t}\n')
        fh.write("# EOF\n")
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(samples), str(root / "data")],
        check=True,
        capture_output=True,
    )
    with running_prometheus(binary, root, "global: {scrape_interval: 1s}\nscrape_configs: []\n") as url:
        yield url, start, end


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite under the tests' AIRFLOW_HOME), migrated once."""
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "airflow"), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return os.environ["AIRFLOW_HOME"]


@contextlib.contextmanager
def serving(app, *, log_level: str = "warning"):
    """An ASGI app (a FastAPI receiver or view) under uvicorn in a thread on a free port; its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the server thread to bind
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
