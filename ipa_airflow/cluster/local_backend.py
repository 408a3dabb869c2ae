"""The local cluster: every pod a real MLServer process on this machine, driven by the same `reconcile()`.

`LocalCluster` is `PodCluster` (the Deployment and ReplicaSet controllers the simulator follows:
make-before-break, youngest first on scale-down, availableReplicas from ready pods) on the real clock, with
the pods made real:
- a pod created starts a model server with its Deployment's container env (`container_env`), on the
  cores its shape asks for (CPU affinity, least-loaded cores first; replicas share cores when the plan
  asks for more than the machine has, as a 2-core box must);
- a pod is ready (`ready_at`) only once its server answers `/v2/models/<name>/ready`, the Deployment's
  readiness probe; the controllers then run again, so old pods are retired only once new ones serve;
- a pod deleted leaves the router's endpoints at once and its server stops once the requests the router
  sent it have finished (or after `drain_s`);
- a server that exits is logged with its log's tail and its pod replaced, as a ReplicaSet replaces a
  crashed pod, after a back-off that doubles per crash of the same template (CrashLoopBackOff); the
  reconciler's rollout deadline bounds a rollout that never becomes ready.
Readiness is polled in one background thread; `get()` polls the Deployment's starting pods itself, so the
reconciler sees a pod ready as soon as it is. One lock guards the controllers, shared by that thread, the
reconciler's thread and the router.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..serving.server import ModelServer, container_env
from ..whole_files import write_whole
from .backends import ClusterError
from .desired import ANN_SHAPE, ANN_VARIANT, LABEL_PIPELINE, LABEL_STAGE
from .pods import Key, Pod, PodCluster

log = logging.getLogger(__name__)

# The model URIs MLServer's MLflow runtime loads (ModelServer refuses the others, e.g. a zoo model).
_SERVABLE_URI = ("models:/", "runs:/", "/", "file:")


class Server(Protocol):
    """What the cluster needs of one replica's process; `ModelServer` is one, tests pass fakes."""

    @property
    def url(self) -> str: ...

    @property
    def metrics_target(self) -> str: ...

    def start(self) -> Any: ...

    def is_ready(self) -> bool: ...

    def exited(self) -> int | None: ...

    def stop(self, grace_s: float = ...) -> None: ...

    def log_tail(self, chars: int = ...) -> str: ...


# (the pod's container env, the cores it runs on) -> a server, not yet started
ServerFactory = Callable[[Mapping[str, str], tuple[int, ...]], Server]


@dataclass(frozen=True)
class Replica:
    """A ready replica, as the router sees it."""

    pipeline: str
    stage: str
    variant: str
    model: str  # the V2 model name it serves (MLSERVER_MODEL_NAME: the stage's name)
    url: str
    uid: int
    max_batch: int = 1  # MLSERVER_MODEL_MAX_BATCH_SIZE: the router keeps at most this many at it


@dataclass(frozen=True)
class Event:
    """What happened to a pod's server, for logs and tests: start, ready, crash, retire, stop."""

    t: float
    kind: str
    deployment: str
    uid: int
    template: str


# ---- pure decisions -----------------------------------------------------------------------------------
def cpu_quantity(text: str) -> float:
    """A Kubernetes CPU quantity ('2', '0.5', '500m') in cores."""
    text = str(text).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def replica_cores(deployment: Mapping[str, Any]) -> int:
    """Whole cores one replica of the Deployment runs on: its container's cpu request (or limit), else
    the cpu=N of its `ipa.io/shape` annotation; at least one (a GPU replica still needs a core)."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    resources = containers[0].get("resources") or {}
    amount = (resources.get("requests") or {}).get("cpu") or (resources.get("limits") or {}).get("cpu")
    if amount is None:
        shape = ((deployment.get("metadata") or {}).get("annotations") or {}).get(ANN_SHAPE, "")
        amount = next((p[4:] for p in shape.split() if p.startswith("cpu=")), None)
    try:
        cores = cpu_quantity(amount) if amount is not None else 1.0
    except ValueError:
        cores = 1.0
    return max(1, math.ceil(cores - 1e-9))


def assign_cores(want: int, machine: Sequence[int], load: Mapping[int, int]) -> tuple[int, ...]:
    """`want` of the machine's cores, the least loaded first (then the lowest number); all of them, shared,
    when it has fewer."""
    ranked = sorted(machine, key=lambda c: (load.get(c, 0), c))
    return tuple(sorted(ranked[: max(1, min(want, len(ranked)))]))


def servable_problem(env: Mapping[str, str]) -> str:
    """Why a Deployment's container env cannot be run by a local model server ('' when it can)."""
    if not env.get("MLSERVER_MODEL_NAME"):
        return "its container sets no MLSERVER_MODEL_NAME"
    uri = env.get("MLSERVER_MODEL_URI", "")
    if not uri.startswith(_SERVABLE_URI):
        return (
            f"MLSERVER_MODEL_URI {uri!r} is not a model MLServer can load: each variant must name a "
            "registered MLflow model (model_uri: models:/NAME/VERSION, or a stage with registered_model)"
        )
    return ""


def file_sd(targets: Iterable[tuple[str, Mapping[str, str]]]) -> list[dict[str, Any]]:
    """Prometheus file_sd entries: one per metrics target, with its labels."""
    return [{"targets": [t], "labels": dict(labels)} for t, labels in targets]


# ---- the cluster --------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Proc:
    """A pod's server and what the cluster keeps about it."""

    pod: Pod
    server: Server
    cores: tuple[int, ...]
    want: int  # cores the shape asked for (more than `cores` when shared)
    labels: dict[str, str]  # pipeline, stage, variant
    model: str
    start_at: float  # when it may start (later than its creation after a crash: the back-off)
    max_batch: int = 1
    started: bool = False
    ready: bool = False
    retiring: bool = False
    stopping: bool = False  # drained: its process is being stopped
    inflight: int = 0  # requests the router sent it and has not had answered
    stopper: threading.Thread | None = field(default=None, repr=False)


class LocalCluster(PodCluster):
    """A cluster of real model servers on this machine (see the module's docstring).

    `tracking_uri`: the MLflow the servers resolve `models:/` URIs against. `server_factory` replaces the
    MLServer processes (tests); `cores` the machine's cores (default: this process's CPU affinity).
    `poll_s`: how often the background thread checks readiness and crashes (None: no thread, call
    `poll()`). `drain_s`: longest a retired server waits for the requests it was sent. `clock`: the clock
    pods are ready on (time.monotonic; tests pass a fake one)."""

    def __init__(
        self,
        *,
        tracking_uri: str = "",
        server_factory: ServerFactory | None = None,
        cores: Sequence[int] | None = None,
        poll_s: float | None = 0.25,
        drain_s: float = 30.0,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        stop_grace_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        mlserver: Path | None = None,
    ):
        super().__init__(clock=clock, startup_s=lambda d: math.inf, on_change=self._pods_changed)
        self.sleep = time.sleep  # writer_lock waits for real (PodCluster's simulation never waits)
        if server_factory is None:
            if not tracking_uri:
                raise ValueError("LocalCluster needs the tracking_uri its model servers load models from")
            server_factory = _model_servers(tracking_uri, mlserver)
        self.factory = server_factory
        self.machine = tuple(sorted(cores if cores is not None else os.sched_getaffinity(0)))
        if not self.machine:
            raise ValueError("LocalCluster needs at least one core to run model servers on")
        self.drain_s, self.backoff_s, self.stop_grace_s = drain_s, backoff_s, stop_grace_s
        self.events: list[Event] = []
        self.version = 0  # bumped whenever the set of ready replicas changes: the router's cue to re-read
        self._lock = threading.RLock()
        self._drained = threading.Condition(self._lock)
        self._procs: dict[int, _Proc] = {}  # pod uid -> its server, for the pods that exist
        self._retiring: list[_Proc] = []  # deleted pods whose servers drain and stop
        self._crashes: dict[tuple[Key, str], int] = {}  # (Deployment, template) -> crashes since ready
        self._sd_path: Path | None = None
        self._said_shared = False
        self._closed = False
        self._closing = threading.Event()
        self._poller: threading.Thread | None = None
        if poll_s is not None:
            self._poller = threading.Thread(
                target=self._poll_forever, args=(poll_s,), name="local-cluster-readiness", daemon=True
            )
            self._poller.start()

    # ---- the backend interface, under the lock ----------------------------------------------------------
    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.poll({(namespace, name)})  # the reconciler sees a pod ready as soon as it answers
        with self._lock:
            return super().get(namespace, name)

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        if self._closed:
            raise ClusterError("the local cluster is closed: start another to apply Deployments")
        try:
            problem = servable_problem(container_env(manifest))
        except (KeyError, IndexError, TypeError):
            problem = "it has no container (spec.template.spec.containers)"
        if problem:  # refused like an admission webhook: the reconciler's preflight writes nothing
            name = (manifest.get("metadata") or {}).get("name")
            raise ClusterError(f"the local cluster cannot run Deployment {name}: {problem}")
        with self._lock:
            if self._closed:  # again under the lock: close() may have run since
                raise ClusterError("the local cluster is closed: start another to apply Deployments")
            return super().apply(manifest, dry_run=dry_run, force=force)

    def delete(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        with self._lock:
            super().delete(namespace, name, uid=uid)

    def settle(self) -> None:
        with self._lock:
            super().settle()

    # ---- pods to servers --------------------------------------------------------------------------------
    def _pods_changed(self, key: Key, created: list[Pod], deleted: list[Pod]) -> None:
        """PodCluster's hook, called under the lock: start the new pods' servers, retire the old ones."""
        now = self.clock()
        for pod in created:
            self._procs[pod.uid] = proc = self._new_proc(pod, now)
            if proc.start_at <= now:
                self._start(proc)
        for pod in deleted:
            gone = self._procs.pop(pod.uid, None)
            if gone is not None:
                self._retire(gone)
        self._targets_changed()

    def _new_proc(self, pod: Pod, now: float) -> _Proc:
        d = pod.source
        meta = d.get("metadata") or {}
        pod_labels = ((d["spec"]["template"].get("metadata") or {}).get("labels")) or {}
        labels = {
            "pipeline": (meta.get("labels") or {}).get(LABEL_PIPELINE, meta.get("name", "")),
            "stage": (meta.get("labels") or {}).get(LABEL_STAGE, meta.get("name", "")),
            "variant": pod_labels.get(ANN_VARIANT) or (meta.get("annotations") or {}).get(ANN_VARIANT, ""),
        }
        env = container_env(d)
        want = replica_cores(d)
        cores = assign_cores(want, self.machine, self._core_load())
        crashes = self._crashes.get((pod.deployment, pod.template), 0)
        delay = min(self.backoff_s[0] * 2 ** (crashes - 1), self.backoff_s[1]) if crashes else 0.0
        try:
            server = self.factory(env, cores)
        except Exception as exc:  # e.g. MLServer gone since: a pod that cannot start, replaced with back-off
            server = _Unstartable(f"{type(exc).__name__}: {exc}")
        proc = _Proc(pod, server, cores, want, labels, env.get("MLSERVER_MODEL_NAME", ""), now + delay)
        proc.max_batch = max(1, int(env.get("MLSERVER_MODEL_MAX_BATCH_SIZE") or 1))
        self._check_shared(extra=want)
        return proc

    def _start(self, proc: _Proc) -> None:
        proc.started = True
        try:
            proc.server.start()
        except Exception as exc:  # an unstartable pod: seen as exited by the next poll
            proc.server = _Unstartable(f"{type(exc).__name__}: {exc}")
        self._event("start", proc)

    def _retire(self, proc: _Proc) -> None:
        """Out of the endpoints now; stopped once the router's requests to it are answered."""
        proc.retiring = True
        if proc.ready:
            self.version += 1
        self._retiring.append(proc)
        self._event("retire", proc)
        proc.stopper = threading.Thread(target=self._drain_and_stop, args=(proc,), daemon=True)
        proc.stopper.start()

    def _drain_and_stop(self, proc: _Proc) -> None:
        with self._drained:
            if not self._drained.wait_for(lambda: proc.inflight == 0, timeout=self.drain_s):
                log.warning(
                    "%s: stopping replica %s with %d requests still unanswered after %g s",
                    proc.pod.deployment[1],
                    proc.server.url,
                    proc.inflight,
                    self.drain_s,
                )
            proc.stopping = True
            self._targets_changed()  # a stopping server answers no scrape: no longer a target
        try:
            proc.server.stop(self.stop_grace_s)
        except Exception:
            log.exception("%s: stopping replica %s failed", proc.pod.deployment[1], proc.server.url)
        with self._lock:
            self._retiring.remove(proc)
            self._event("stop", proc)
            self._targets_changed()

    # ---- readiness and crashes --------------------------------------------------------------------------
    def poll(self, keys: set[Key] | None = None) -> None:
        """Start servers whose back-off is over, mark ready the ones that answer their readiness probe,
        replace the ones that exited; then run the controllers. HTTP happens outside the lock."""
        with self._lock:
            now = self.clock()
            for proc in list(self._procs.values()):
                if not proc.started and proc.start_at <= now:
                    self._start(proc)
            watched = [
                p for p in self._procs.values() if p.started and (keys is None or p.pod.deployment in keys)
            ]
        seen: list[tuple[_Proc, int | None, bool]] = []
        for proc in watched:
            code = proc.server.exited()
            seen.append((proc, code, code is None and not proc.ready and proc.server.is_ready()))
        changed = False
        with self._lock:
            for proc, code, ready in seen:
                if self._procs.get(proc.pod.uid) is not proc:
                    continue  # deleted meanwhile
                if code is not None:
                    self._crashed(proc, code)
                    changed = True
                elif ready and not proc.ready:  # another poll (get's, the thread's) may have seen it first
                    proc.ready = True
                    proc.pod.ready_at = self.clock()
                    self._crashes.pop((proc.pod.deployment, proc.pod.template), None)
                    self.version += 1
                    self._event("ready", proc)
                    changed = True
            if changed:
                self.settle()  # a ready pod may complete a rollout: the old pods go now
                self._targets_changed()

    def _crashed(self, proc: _Proc, code: int) -> None:
        pod = proc.pod
        when = "while serving" if proc.ready else "before it was ready"
        log.warning(
            "%s: the model server of pod %d (%s) exited with %s %s; it is replaced. Its log ends:\n%s",
            pod.deployment[1],
            pod.uid,
            proc.server.url,
            code,
            when,
            proc.server.log_tail(),
        )
        key = (pod.deployment, pod.template)
        self._crashes[key] = self._crashes.get(key, 0) + 1
        self.pods[pod.deployment] = [p for p in self.pods.get(pod.deployment, []) if p is not pod]
        del self._procs[pod.uid]
        self._event("crash", proc)
        self._retire(proc)  # nothing to drain: the stop cleans its working directory

    def _poll_forever(self, poll_s: float) -> None:
        while not self._closing.wait(poll_s):
            try:
                self.poll()
            except Exception:  # the thread must outlive one bad poll
                log.exception("local cluster: polling the model servers failed")

    # ---- cores ------------------------------------------------------------------------------------------
    def _live(self) -> list[_Proc]:
        return [*self._procs.values(), *self._retiring]

    def _core_load(self) -> dict[int, int]:
        load: dict[int, int] = {}
        for proc in self._live():
            for c in proc.cores:
                load[c] = load.get(c, 0) + 1
        return load

    @property
    def oversubscribed(self) -> bool:
        """Whether the live servers asked for more cores than the machine has (they share cores)."""
        with self._lock:
            return sum(p.want for p in self._live()) > len(self.machine)

    def _check_shared(self, extra: int) -> None:
        asked = sum(p.want for p in self._live()) + extra
        if asked > len(self.machine) and not self._said_shared:
            self._said_shared = True
            log.warning(
                "local cluster: the replicas ask for %d cores and this machine has %d: they share cores "
                "(latencies are then higher than their profiles say)",
                asked,
                len(self.machine),
            )

    # ---- what the router and Prometheus read ------------------------------------------------------------
    def replicas(self, stage: str, pipeline: str | None = None) -> list[Replica]:
        """The ready, not retiring replicas of a stage, oldest first."""
        with self._lock:
            return [
                Replica(
                    p.labels["pipeline"],
                    p.labels["stage"],
                    p.labels["variant"],
                    p.model,
                    p.server.url,
                    uid,
                    p.max_batch,
                )
                for uid, p in sorted(self._procs.items())
                if p.ready
                and p.labels["stage"] == stage
                and (pipeline is None or p.labels["pipeline"] == pipeline)
            ]

    def pods_now(self) -> list[Pod]:
        """Every pod that exists (starting ones too; `ready_at` is inf until its server answers)."""
        with self._lock:
            return [p for pods in self.pods.values() for p in pods]

    def servers(self) -> dict[int, Server]:
        """Every pod's server (starting, ready; not the retired ones), by pod uid: for logs and checks."""
        with self._lock:
            return {uid: p.server for uid, p in sorted(self._procs.items())}

    def endpoints(self, stage: str, pipeline: str | None = None) -> list[str]:
        """Base URLs of the ready, not retiring replicas of a stage."""
        return [r.url for r in self.replicas(stage, pipeline)]

    def acquire(self, url: str) -> bool:
        """Count a request the router is about to send to `url`; False when that replica is no longer an
        endpoint (retired or gone), so the router picks another."""
        with self._lock:
            proc = next((p for p in self._procs.values() if p.server.url == url), None)
            if proc is None or not proc.ready:
                return False
            proc.inflight += 1
            return True

    def release(self, url: str) -> None:
        """The request `acquire` counted is answered (or failed): a retired replica may stop."""
        with self._drained:
            for proc in self._live():
                if proc.server.url == url and proc.inflight > 0:
                    proc.inflight -= 1
                    self._drained.notify_all()
                    return

    def prometheus_targets(self, path: str | Path) -> Path:
        """Keep `path` a Prometheus file_sd JSON of every live server's metrics target, labelled pipeline,
        stage and variant (as docker/prometheus/prometheus-kubernetes.yml labels pods); rewritten whole
        whenever servers start or stop."""
        with self._lock:
            self._sd_path = Path(path)
            self._targets_changed()
            return self._sd_path

    def _targets_changed(self) -> None:
        if self._sd_path is None:
            return
        live = sorted(self._live(), key=lambda p: p.pod.uid)
        entries = file_sd(
            (p.server.metrics_target, p.labels)
            for p in live
            if p.started and not p.stopping and p.server.metrics_target
        )
        write_whole(self._sd_path, json.dumps(entries, indent=1) + "\n")

    def _event(self, kind: str, proc: _Proc) -> None:
        self.events.append(Event(self.clock(), kind, proc.pod.deployment[1], proc.pod.uid, proc.pod.template))

    # ---- closing ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every server (each after its in-flight requests, or `drain_s`) and the polling thread."""
        self._closed = True
        self._closing.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join()
        with self._lock:
            for proc in list(self._procs.values()):
                del self._procs[proc.pod.uid]
                self._retire(proc)
            self.pods.clear()
            stoppers = [p.stopper for p in self._retiring if p.stopper is not None]
        for t in stoppers:
            t.join()

    def wait_stopped(self) -> None:
        """Wait until every retired server has stopped (tests; `close` does it too)."""
        with self._lock:
            stoppers = [p.stopper for p in self._retiring if p.stopper is not None]
        for t in stoppers:
            t.join()

    def list(self, namespace: str) -> list[dict[str, Any]]:  # last: in the class body it shadows list
        with self._lock:
            return super().list(namespace)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Unstartable:
    """A pod whose server could not be made or started: exited at once, its error as its log."""

    url = "(not started)"
    metrics_target = ""

    def __init__(self, error: str):
        self.error = error

    def start(self) -> None:
        pass

    def is_ready(self) -> bool:
        return False

    def exited(self) -> int:
        return 1

    def stop(self, grace_s: float = 0.0) -> None:
        pass

    def log_tail(self, chars: int = 3000) -> str:
        return self.error[-chars:]


def _model_servers(tracking_uri: str, mlserver: Path | None) -> ServerFactory:
    from ..serving.environment import mlserver_executable

    executable = mlserver or mlserver_executable()  # ServingEnvError now, not at the first pod

    def make(env: Mapping[str, str], cores: tuple[int, ...]) -> Server:
        return ModelServer(env, tracking_uri=tracking_uri, cores=cores, mlserver=executable)

    return make
