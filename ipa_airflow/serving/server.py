"""One MLServer process: a replica of a stage, started from the environment its Deployment renders.

The Deployment's container env (MLSERVER_MODEL_NAME, _URI, _IMPLEMENTATION, _MAX_BATCH_SIZE,
_MAX_BATCH_TIME) is passed as it is; this module adds only what Kubernetes would give the pod instead:
loopback ports, the MLflow the model URI resolves against, the image's own settings (IMAGE_ENV, kept
equal to docker/model-server/Dockerfile by a test) and the cores the replica may run on (CPU affinity,
inherited by MLServer's inference worker; torch's threads follow OMP_NUM_THREADS)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import mlserver_executable

# What docker/model-server/Dockerfile sets with ENV (besides the metrics port, which is per process here).
IMAGE_ENV = {"MLSERVER_PARALLEL_WORKERS": "1"}
# MLServer logs a line per request at INFO; a replica under load would fill its log with them.
QUIET_ENV = {"MLSERVER_LOGGING_LEVEL": "WARNING"}


class ServerError(RuntimeError):
    """A model server that exited or did not become ready; the message carries its log's tail."""


_GIVEN: set[int] = set()  # ports handed out by this process: never twice, though each is free only now
_GIVEN_LOCK = threading.Lock()


def free_port() -> int:
    with _GIVEN_LOCK:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port


def container_env(deployment: Mapping[str, Any]) -> dict[str, str]:
    """The env of a rendered Deployment's model container (its first), as plain strings."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: str(e.get("value", "")) for e in containers[0].get("env", []) if "name" in e}


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


class ModelServer:
    """An MLServer process serving one model on loopback. `start()` returns at once; `wait_ready()` polls
    `/v2/models/<name>/ready` (the Deployment's readiness probe) until the model is loaded."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        tracking_uri: str,
        cores: Sequence[int] | None = None,
        workdir: Path | None = None,
        ports: Ports | None = None,
        mlserver: Path | None = None,
    ):
        if not env.get("MLSERVER_MODEL_NAME"):
            raise ValueError("the model server's env has no MLSERVER_MODEL_NAME")
        uri = env.get("MLSERVER_MODEL_URI", "")
        if not uri.startswith(("models:/", "runs:/", "/", "file:")):
            raise ValueError(
                f"MLSERVER_MODEL_URI {uri!r} is not a model MLServer can load: a variant must name a "
                "registered MLflow model (model_uri: models:/NAME/VERSION or a registered_model stage), "
                "not a zoo model"
            )
        self.name = env["MLSERVER_MODEL_NAME"]
        self.model_uri = uri
        self.cores = tuple(cores) if cores else None
        self.ports = ports or Ports.free()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix=f"ipa-mlserver-{self.name}-")
        self.workdir = Path(workdir) if workdir else Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "mlserver.log"
        self.mlserver = mlserver or mlserver_executable()
        self.env = {
            **IMAGE_ENV,
            **QUIET_ENV,
            **dict(env),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(self.ports.http),
            "MLSERVER_GRPC_PORT": str(self.ports.grpc),
            "MLSERVER_METRICS_PORT": str(self.ports.metrics),
        }
        if self.cores:
            self.env.setdefault("OMP_NUM_THREADS", str(len(self.cores)))
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.ports.metrics}"

    def start(self) -> ModelServer:
        cores = self.cores
        # The parent's PATH and HOME (MLflow caches downloads), nothing else of the caller's environment:
        # Airflow's or the test's settings must not leak into the server.
        base = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "LANG") if k in os.environ}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            self.proc = subprocess.Popen(
                [str(self.mlserver), "start", str(self.workdir)],
                cwd=self.workdir,
                env={**base, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its inference workers are stopped with it
            )
        finally:
            log.close()
        if cores:
            # Set from here, not in a preexec_fn (unsafe in a process with threads, as LocalCluster is):
            # MLServer starts its inference worker seconds later, which inherits the affinity.
            os.sched_setaffinity(self.proc.pid, cores)
        self.started_at = time.monotonic()
        return self

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/models/{self.name}/ready", timeout=2) as r:
                ready = r.status == 200
        except (urllib.error.URLError, OSError):
            return False
        if ready and self.ready_at is None:
            self.ready_at = time.monotonic()
        return ready

    def wait_ready(self, timeout_s: float = 120.0, poll_s: float = 0.25) -> float:
        """Seconds from start to ready; ServerError (with the log's tail) if it exits or times out."""
        if self.proc is None:
            self.start()
        assert self.started_at is not None
        deadline = self.started_at + timeout_s
        while time.monotonic() < deadline:
            if self.exited() is not None:
                raise ServerError(
                    f"the model server for {self.name} ({self.model_uri}) exited with {self.proc.returncode} "  # type: ignore[union-attr]
                    f"before it was ready; its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            if self.is_ready():
                assert self.ready_at is not None
                return self.ready_at - self.started_at
            time.sleep(poll_s)  # polling a starting process
        raise ServerError(
            f"the model server for {self.name} ({self.model_uri}) was not ready within {timeout_s:g} s; its "
            f"log ({self.log_path}) ends:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_target}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the server and its workers, SIGKILL after `grace_s`."""
        if self.proc is not None:
            # The whole process group, even when the server itself has exited: its inference worker may not.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ModelServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
