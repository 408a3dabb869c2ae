"""`ipa webhook check` against real MLflow servers, each started with the settings its case needs, and the
real receiver (webhooks.create_app served by uvicorn): MLflow refusing http:// URLs, a second MLflow
process on the same store with another encryption key (as a worker or a restart without the shared key
is), the receiver's wrong secret, path and address, and everything right."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipa_airflow.webhook_check import DECRYPT_FAILED, SECRETS_DIFFER
from ipa_airflow.webhooks import ReplayGuard, create_app
from tests.integration.conftest import VENV_BIN, free_port, serving, stop, wait_http

pytestmark = pytest.mark.slow
SECRET = "check-" + uuid.uuid4().hex


def fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


KEY = fernet_key()
# What a webhook to a receiver on loopback over http needs, and the shared key.
RIGHT = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": KEY,
}


@contextlib.contextmanager
def mlflow_server(root: Path, db: Path, env: dict[str, str]) -> Iterator[str]:
    """`mlflow server` on `db` with exactly the MLFLOW_WEBHOOK_* settings in `env` (none inherited)."""
    port = free_port()
    log = root / f"mlflow-{port}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_WEBHOOK_")}
    # No job runner: webhooks do not need it, and its worker processes outlive a terminated server.
    server_env = {**clean, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
    cmd = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=server_env
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", proc, 180, log)
        yield uri
    finally:
        stop(proc)


class SeenGuard(ReplayGuard):
    """The receiver's replay guard, noting each delivery that passed the signature and clock checks."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def claim(self, delivery_id, *, sent, now):
        self.seen.append(delivery_id)
        super().claim(delivery_id, sent=sent, now=now)


@pytest.fixture(scope="module")
def receiver():
    """(URL of POST /mlflow, the guard, the asset events the receiver emitted)."""

    emitted: list[tuple[str, str, str]] = []

    def emit(name, version, delivery_id):
        emitted.append((name, version, delivery_id))
        return len(emitted)

    guard = SeenGuard()
    app = create_app(emit, secret=lambda: SECRET, guard=guard)
    with serving(app) as url:
        yield f"{url}/mlflow", guard, emitted


@pytest.fixture(scope="module")
def mlflow_right(tmp_path_factory):
    root = tmp_path_factory.mktemp("webhook-check")
    with mlflow_server(root, root / "mlflow.db", RIGHT) as uri:
        yield uri


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("IPA_WEBHOOK_SECRET", SECRET)  # what the Airflow API server has


def check(capsys, uri: str, url: str, *args: str) -> tuple[int, dict[str, tuple[str, str]], dict]:
    """Run `ipa webhook check --json`: (exit status, {step: (state, detail)}, the whole answer)."""
    from ipa_airflow.cli import main

    rc = main(["webhook", "check", "--json", "--tracking-uri", uri, "--url", url, *args])
    doc = json.loads(capsys.readouterr().out)
    return rc, {s["step"]: (s["state"], s["detail"]) for s in doc["steps"]}, doc


def test_everything_right_passes_and_the_test_delivery_starts_nothing(mlflow_right, receiver, capsys):
    url, guard, emitted = receiver
    before = len(guard.seen)
    rc, steps, doc = check(capsys, mlflow_right, url, "--register")
    assert rc == 0, steps
    assert {state for state, _ in steps.values()} == {"ok"}
    assert doc["action"] in ("registered", "updated") and doc["webhook_id"]
    assert "verified MLflow's test delivery and started nothing" in steps["receiver"][1]
    assert len(guard.seen) == before + 1  # the receiver verified MLflow's signed delivery ...
    assert emitted == []  # ... and emitted no asset event: no profiling run for example_model

    rc, steps, doc = check(capsys, mlflow_right, url)  # verifying only: found, and delivered again
    assert rc == 0 and doc["action"] == "found", steps
    assert len(guard.seen) == before + 2 and emitted == []


def test_mlflow_refusing_http_urls_and_private_addresses_is_named(tmp_path, receiver, capsys):
    url, guard, emitted = receiver
    before = len(guard.seen)
    default_schemes = {k: v for k, v in RIGHT.items() if k != "MLFLOW_WEBHOOK_ALLOWED_SCHEMES"}
    with mlflow_server(tmp_path, tmp_path / "mlflow.db", default_schemes) as uri:
        rc, steps, _ = check(capsys, uri, url, "--register")
    assert rc == 1
    assert steps["reachable"][0] == "ok"
    assert steps["url"] == (
        "fail",
        "MLflow refuses http:// webhook URLs: set MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https on the MLflow "
        "server (its default is https only), or serve the receiver over https",
    )
    assert steps["receiver"][0] == "skipped"  # nothing registered, nothing delivered

    public_only = {k: v for k, v in RIGHT.items() if k != "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"}
    with mlflow_server(tmp_path, tmp_path / "mlflow.db", public_only) as uri:
        rc, steps, _ = check(capsys, uri, url, "--register")
    assert rc == 1
    assert steps["url"] == (
        "fail",
        "MLflow refuses webhook URLs on private addresses (127.0.0.1 resolves to 127.0.0.1): set "
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true on the MLflow server, as a receiver inside your network needs",
    )
    assert len(guard.seen) == before and emitted == []


def test_another_encryption_key_on_the_same_store_is_named_and_the_documented_recovery_works(
    tmp_path, receiver, capsys
):
    """Two MLflow processes on one database with different keys: a worker, or a restart, without the
    shared MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY. Then the recovery docs/airflow.md gives: clear the
    secrets MLflow cannot read, and register again."""
    import sqlite3

    url, guard, emitted = receiver
    db = tmp_path / "mlflow.db"
    with mlflow_server(tmp_path, db, RIGHT) as first:
        assert check(capsys, first, url, "--register")[0] == 0  # stored under KEY
        before = len(guard.seen)
        other_key = {**RIGHT, "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": fernet_key()}
        with mlflow_server(tmp_path, db, other_key) as second:
            for args in ((), ("--register",)):
                rc, steps, _ = check(capsys, second, url, *args)
                assert rc == 1
                assert steps["reachable"][0] == "ok"
                assert steps["decrypt"] == ("fail", DECRYPT_FAILED)
                assert steps["receiver"][0] == "skipped"
            assert len(guard.seen) == before and emitted == []
            assert check(capsys, first, url)[0] == 0  # the process with the webhook's key still delivers

            with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                conn.execute("UPDATE webhooks SET secret = NULL WHERE deleted_timestamp IS NULL")
            rc, steps, doc = check(capsys, second, url, "--register")
            assert rc == 0 and doc["action"] == "updated", steps
            # Now stored under the second key, which the first process does not have: the same failure.
            assert check(capsys, first, url)[1]["decrypt"] == ("fail", DECRYPT_FAILED)
    assert emitted == []


def test_the_receivers_side_is_named(mlflow_right, receiver, capsys):
    url, guard, emitted = receiver
    rc, steps, _ = check(capsys, mlflow_right, url, "--register", "--secret", "not-the-receivers")
    assert rc == 1 and steps["decrypt"][0] == "ok" and steps["url"][0] == "ok"
    assert steps["receiver"] == ("fail", SECRETS_DIFFER)

    wrong_path = url.replace("/mlflow", "/mlflw")
    rc, steps, _ = check(capsys, mlflow_right, wrong_path, "--register")
    assert rc == 1 and steps["receiver"][0] == "fail"
    assert "nothing receives webhooks at /mlflw (HTTP 404)" in steps["receiver"][1]

    nobody = f"http://127.0.0.1:{free_port()}/ipa/mlflow"
    rc, steps, _ = check(capsys, mlflow_right, nobody, "--register")
    assert rc == 1 and steps["receiver"][0] == "fail"
    assert "not reachable from MLflow: connection refused at 127.0.0.1:" in steps["receiver"][1]

    rc, steps, _ = check(capsys, mlflow_right, f"http://127.0.0.1:{free_port()}/other")
    assert rc == 1 and steps["registered"][0] == "fail"
    assert "no webhook in MLflow posts to" in steps["registered"][1] and url in steps["registered"][1]
    assert "run again with --register" in steps["registered"][1]
    assert emitted == []
