"""The simulated cluster backend: Deployments in memory whose rollouts complete after a start-up delay on
an injected clock. Used by the demo and the simulator, and by the same reconcile tests as Kubernetes.

With a state file the cluster outlives the process, and several processes may share it (two `ipa
reconcile`, DAG runs of different pipelines): every write re-reads the file under an exclusive file lock,
changes one object and writes it back atomically, so no writer loses another's Deployments. One writer
per pipeline is a second lock file, as the Kubernetes backend's Lease is.
"""

from __future__ import annotations

import copy
import fcntl
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .backends import ClusterBusy, ClusterError


class SimulatedBackend:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        startup_s: float = 10.0,
        hold: set[str] | None = None,
        state_file: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.clock = clock
        self.sleep = sleep
        self.startup_s = startup_s
        self.hold = hold or set()  # names whose rollouts never become available (to test deadlines)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._changed_at: dict[tuple[str, str], float] = {}
        self.applies: list[tuple[str, str, bool]] = []  # (namespace, name, dry_run), for inspection
        self._writers: dict[
            tuple[str, str], str
        ] = {}  # in-memory writer locks: (namespace, pipeline) -> holder
        self._writers_lock = threading.Lock()
        self.state_file = Path(state_file) if state_file else None
        if self.state_file is not None:
            self._check_state_path()
            self._load()

    # ---- the state file ---------------------------------------------------------------------------------
    def _check_state_path(self) -> None:
        assert self.state_file is not None
        if self.state_file.is_dir():
            raise ClusterError(
                f"simulated cluster state {self.state_file} is a directory; pass a file path "
                "(--state-file), e.g. .ipa/cluster/simulated.json"
            )

    def _load(self) -> None:
        assert self.state_file is not None
        try:
            text = self.state_file.read_text()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ClusterError(f"cannot read simulated cluster state {self.state_file}: {exc}") from None
        objects, changed_at = _decode_state(self.state_file, text)
        self.objects, self._changed_at = objects, changed_at

    def _save(self) -> None:
        if self.state_file is None:
            return
        items = [
            {"namespace": k[0], "name": k[1], "object": v, "changed_at": self._changed_at.get(k, 0.0)}
            for k, v in sorted(self.objects.items())
        ]
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"objects": items}, indent=1))
            tmp.replace(self.state_file)
        except OSError as exc:
            raise ClusterError(f"cannot write simulated cluster state {self.state_file}: {exc}") from None

    @contextmanager
    def _file_locked(self) -> Iterator[None]:
        assert self.state_file is not None
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.state_file.with_name(self.state_file.name + ".lock"), "a+")  # noqa: SIM115
        except OSError as exc:
            raise ClusterError(f"cannot lock simulated cluster state {self.state_file}: {exc}") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
        finally:
            f.close()  # closing releases the lock

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Re-read, change, write back: under the file lock when the state is shared through a file."""
        if self.state_file is None:
            yield
            return
        with self._file_locked():
            self._load()
            yield
            self._save()

    # ---- the backend ------------------------------------------------------------------------------------
    def list(self, namespace: str) -> list[dict[str, Any]]:
        if self.state_file is not None:
            self._load()
        return [o for k in sorted(self.objects) if k[0] == namespace if (o := self._get(k)) is not None]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.state_file is not None:
            self._load()  # another process may have written since
        return self._get((namespace, name))

    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        obj = self.objects.get(key)
        if obj is None:
            return None
        self._progress(key, obj)
        return copy.deepcopy(obj)

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        meta = manifest.get("metadata", {})
        if not meta.get("name") or not meta.get("namespace"):
            raise ClusterError("a Deployment needs metadata.name and metadata.namespace")
        key = (meta["namespace"], meta["name"])
        self.applies.append((*key, dry_run))
        if dry_run:
            return self._applied(key, manifest, self.objects.get(key))
        with self._transaction():
            new = self._applied(key, manifest, self.objects.get(key))
            if new["metadata"]["generation"] != (self.objects.get(key) or {}).get("metadata", {}).get(
                "generation"
            ):
                self._changed_at[key] = self.clock()
            self.objects[key] = new
            self._progress(key, new)
        return copy.deepcopy(new)

    def _applied(self, key, manifest, current) -> dict[str, Any]:
        new = copy.deepcopy(manifest)
        meta = new["metadata"]
        old_meta = (current or {}).get("metadata", {})
        gen = old_meta.get("generation", 0)
        spec_changed = current is None or current.get("spec") != new.get("spec")
        meta["generation"] = gen + 1 if spec_changed else gen
        meta["uid"] = old_meta.get("uid") or f"sim-{key[0]}-{key[1]}-{self.clock():.6f}"
        new["status"] = copy.deepcopy((current or {}).get("status", {}))
        return new

    def delete(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        key = (namespace, name)
        with self._transaction():
            current = self.objects.get(key)
            if current is None:
                return
            if uid and current["metadata"].get("uid") != uid:
                raise ClusterError(
                    f"deployment {namespace}/{name} was replaced by someone else (uid changed): not deleted"
                )
            del self.objects[key]
            self._changed_at.pop(key, None)

    def _progress(self, key, obj) -> None:
        status = obj.setdefault("status", {})
        replicas = obj["spec"].get("replicas", 1)
        done = key[1] not in self.hold and self.clock() - self._changed_at.get(key, -1e18) >= self.startup_s
        if done:
            status.update(
                observedGeneration=obj["metadata"]["generation"],
                replicas=replicas,
                updatedReplicas=replicas,
                availableReplicas=replicas,
                readyReplicas=replicas,
            )
        else:
            # Make-before-break: the old pods keep serving while new ones start.
            status["observedGeneration"] = obj["metadata"]["generation"]
            status["updatedReplicas"] = 0

    # ---- one writer per pipeline ------------------------------------------------------------------------
    @contextmanager
    def writer_lock(
        self,
        namespace: str,
        pipeline: str,
        *,
        holder: str,
        wait_s: float,
        poll_s: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> Iterator[_NoRenew]:
        clock = clock or time.monotonic
        deadline = clock() + wait_s
        if self.state_file is None:
            key = (namespace, pipeline)
            while True:
                with self._writers_lock:
                    other = self._writers.get(key)
                    if other is None:
                        self._writers[key] = holder
                        break
                if clock() >= deadline:
                    raise _busy(namespace, pipeline, other, wait_s)
                self.sleep(poll_s)
            try:
                yield _NoRenew()
            finally:
                with self._writers_lock:
                    self._writers.pop(key, None)
            return
        path = self.state_file.with_name(f"{self.state_file.name}.{namespace}.{pipeline}.writer")
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                f = open(path, "a+")  # noqa: SIM115 (held until the reconcile ends)
            except OSError as exc:
                raise ClusterError(f"cannot lock simulated cluster state {self.state_file}: {exc}") from None
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.close()
                if clock() >= deadline:
                    raise _busy(
                        namespace, pipeline, path.read_text().strip() or "another process", wait_s
                    ) from None
                self.sleep(poll_s)
        try:
            f.truncate(0)
            f.write(holder)
            f.flush()
            yield _NoRenew()
        finally:
            f.close()  # closing releases the lock


class _NoRenew:
    """Locks held by this process (or its file descriptor) do not expire."""

    def renew(self) -> None:
        pass


def _busy(namespace: str, pipeline: str, other: str | None, wait_s: float) -> ClusterBusy:
    return ClusterBusy(
        f"pipeline {namespace}/{pipeline} is being reconciled by {other}; waited {wait_s:g} s. "
        "Let that reconcile finish, then run again."
    )


def _decode_state(path: Path, text: str) -> tuple[dict, dict]:
    hint = "move it away (the simulated cluster then starts empty) or pass another --state-file"
    try:
        saved = json.loads(text)
    except ValueError as exc:
        raise ClusterError(f"simulated cluster state {path} is not JSON ({exc}); {hint}") from None
    items = saved.get("objects") if isinstance(saved, dict) else None
    if not isinstance(items, list):
        raise ClusterError(
            f"simulated cluster state {path}: expected an object with an 'objects' list; {hint}"
        )
    objects, changed_at = {}, {}
    for i, item in enumerate(items):
        try:
            key = (str(item["namespace"]), str(item["name"]))
            obj = item["object"]
            when = float(item.get("changed_at", 0.0))
            if not isinstance(obj, dict) or not isinstance(obj.get("spec"), dict):
                raise TypeError("object.spec is not a mapping")
            if not isinstance(obj.get("metadata"), dict):
                raise TypeError("object.metadata is not a mapping")
        except (KeyError, TypeError, ValueError) as exc:
            raise ClusterError(
                f"simulated cluster state {path}: objects[{i}] is malformed ({exc}); {hint}"
            ) from None
        objects[key], changed_at[key] = obj, when
    return objects, changed_at


def simulated_cluster(state_file: str | Path | None = None, *, startup_s: float = 10.0) -> SimulatedBackend:
    """The simulated cluster that outlives a process: state under IPA_HOME unless a file is given."""
    from ..settings import load_settings

    return SimulatedBackend(
        state_file=state_file or load_settings().home / "cluster" / "simulated.json", startup_s=startup_s
    )
