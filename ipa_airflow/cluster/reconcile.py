"""The reconciler: compute desired state, diff it against the cluster, and apply it as a transaction that
never dips capacity and never leaves a pipeline half on one plan and half on another.

1. One writer per pipeline: the backend's writer lock (a Lease on Kubernetes, a file lock for the
   simulated cluster). A second writer waits, then says who holds it.
2. Preflight: every change is sent as a server-side dry run first, so what the API server refuses
   (schema, admission, quota, a missing namespace, another manager's fields) changes nothing.
3. Stages that are created, switch variant, scale up or otherwise change are applied first and waited
   for; only when all are available do stages scale down.
4. Any failure after the first write (an API error, no answer, a rollout past its deadline, a
   Deployment deleted by someone else, the lock lost) rolls back every stage this run touched: restored
   to what it was, or deleted when this run created it. The result names the failure that caused it
   and, per stage, which plan it is on now: the new one, the old one, or unknown when the rollback
   itself could not reach the cluster. The next run reads what runs and converges from there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..plans import Plan
from ..spec import PipelineSpec
from .backends import (
    ClusterBackend,
    ClusterBusy,
    ClusterError,
    ClusterUnreachable,
    FieldConflict,
    RolloutStatus,
    WriterLock,
    writer_identity,
)
from .desired import ANN_PLAN, LABEL_PIPELINE, desired_state, keep_running_batch_time
from .diff import CREATE, UNCHANGED, StageChange, diff
from .result import ON_BOTH, ON_NEW, ON_OLD, ON_UNKNOWN, ReconcileResult, StageOutcome


class GuardrailError(ValueError):
    """The plan breaks the spec's guardrails; nothing was applied."""


def check_guardrails(plan: Plan, spec: PipelineSpec) -> None:
    problems = []
    for s in plan.stages:
        if s.replicas < 1:
            problems.append(
                f"stage '{s.stage}' would run {s.replicas} replicas (a stage is never scaled to zero)"
            )
        if s.replicas > spec.limits.max_replicas:
            problems.append(
                f"stage '{s.stage}' wants {s.replicas} replicas, over limits.max_replicas "
                f"({spec.limits.max_replicas})"
            )
    if {s.stage for s in plan.stages} != set(spec.stage_names):
        problems.append(
            f"the plan's stages {[s.stage for s in plan.stages]} are not the spec's {spec.stage_names}"
        )
    if spec.limits.max_cost is not None and plan.cost > spec.limits.max_cost + 1e-9:
        problems.append(f"the plan costs {plan.cost:g}, over limits.max_cost ({spec.limits.max_cost:g})")
    if problems:
        raise GuardrailError("plan refused: " + "; ".join(problems))


def _restorable(observed: dict[str, Any]) -> dict[str, Any]:
    """The applyable part of an object as it was before this run."""
    meta = observed["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": observed["spec"],
    }


def reconcile(
    plan: Plan,
    spec: PipelineSpec,
    backend: ClusterBackend,
    *,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 2.0,
    base: Path | None = None,
    holder: str | None = None,
    lock_wait_s: float = 30.0,
) -> ReconcileResult:
    if not (math.isfinite(lock_wait_s) and lock_wait_s >= 0):
        raise ValueError(f"lock wait must be a finite number of seconds >= 0, not {lock_wait_s!r}")
    check_guardrails(plan, spec)
    manifests = desired_state(plan, spec, base=base)  # invalid templates fail here, before any request
    run = _Run(plan, spec, backend, manifests, clock, sleep, poll_s)
    if dry_run:  # writes nothing, so takes no lock
        return run.preview()
    with backend.writer_lock(
        spec.namespace, spec.name, holder=holder or writer_identity(), wait_s=lock_wait_s, clock=clock
    ) as lock:
        return run.apply(lock)


class _Run:
    """One reconcile: what was observed, what this run wrote, and each stage's outcome."""

    def __init__(self, plan, spec, backend, manifests, clock, sleep, poll_s):
        self.plan, self.spec, self.backend = plan, spec, backend
        self.clock, self.sleep, self.poll_s = clock, sleep, poll_s
        self.by_name = {m["metadata"]["name"]: m for m in manifests}
        self.manifests = manifests
        self.force = spec.deployment.force_conflicts
        self.outcomes: dict[str, StageOutcome] = {}
        self.cause = ""
        self.touched: list[StageChange] = []  # written, or maybe written (no answer), in order
        self.landed: set[str] = set()  # names whose write the server confirmed
        self.created_uid: dict[str, str] = {}
        self.lease_lost = ""  # why this run no longer holds the pipeline's lock, once it does not
        self.lock: WriterLock

    def _observe(self) -> None:
        ns = self.spec.namespace
        self.observed = {name: self.backend.get(ns, name) for name in self.by_name}
        for name, obj in self.observed.items():
            owner = ((obj or {}).get("metadata", {}).get("labels") or {}).get(LABEL_PIPELINE)
            if owner is not None and owner != self.spec.name:
                # Names are '<pipeline>-<stage>': pipeline 'a-b' stage 'c' and pipeline 'a' stage 'b-c' meet.
                raise ClusterError(
                    f"Deployment {ns}/{name} belongs to pipeline '{owner}' (label {LABEL_PIPELINE}), not "
                    f"'{self.spec.name}': nothing was applied. Rename a stage or a pipeline so their "
                    "Deployment names differ, or give them different namespaces."
                )
        self.by_name = {n: keep_running_batch_time(m, self.observed[n]) for n, m in self.by_name.items()}
        self.manifests = [self.by_name[m["metadata"]["name"]] for m in self.manifests]
        self.changes = diff(self.manifests, self.observed)
        for c in self.changes:
            if c.action == UNCHANGED:
                self._record(c, "unchanged", on=ON_BOTH)
        self.pending = [c for c in self.changes if c.action != UNCHANGED]

    def _record(self, c: StageChange, status: str, message: str = "", *, on: str) -> None:
        self.outcomes[c.name] = StageOutcome(
            c.stage, c.name, c.action, status, message, {k: [b, a] for k, (b, a) in c.changes.items()}, on
        )

    def _fail(
        self, c: StageChange | None, exc_or_text: Exception | str, *, status: str = "failed", prefix: str = ""
    ) -> None:
        text = prefix + str(exc_or_text)
        if c is not None and status:
            self._record(c, "conflict" if isinstance(exc_or_text, FieldConflict) else status, text, on=ON_OLD)
        if not self.cause:
            self.cause = text

    def _result(self, dry_run: bool) -> ReconcileResult:
        return ReconcileResult(
            self.plan.pipeline,
            self.plan.plan_id,
            dry_run,
            tuple(self.outcomes[c.name] for c in self.changes),
            self.cause,
        )

    def preview(self) -> ReconcileResult:
        self._observe()
        for c in self.pending:
            try:
                self.backend.apply(self.by_name[c.name], dry_run=True, force=self.force)
            except ClusterError as exc:
                self._fail(c, exc)
                continue
            self._record(c, "dry-run", c.describe(), on=ON_OLD)
        return self._result(True)

    def apply(self, lock: WriterLock) -> ReconcileResult:
        self.lock = lock
        self._observe()  # a failure here has written nothing: it propagates as the ClusterError it is
        try:
            if self._preflight() and self._write([c for c in self.pending if c.adds_capacity]):
                if self._wait_all():
                    self._write([c for c in self.pending if not c.adds_capacity])
        except BaseException as exc:  # Ctrl-C, or Airflow stopping the task: restore what we can, re-raise
            if self.touched and not self.cause:
                self._fail(None, f"interrupted ({type(exc).__name__}) after writing")
                try:
                    self._roll_back()
                except BaseException:  # noqa: S110 (the first interruption is the one to report)
                    pass
            raise
        if self.cause:
            self._roll_back()
        for c in self.pending:
            if c.name not in self.outcomes:
                self._record(c, "skipped", f"not applied: {self.cause}", on=ON_OLD)
        return self._result(False)

    def _renew(self) -> bool:
        """Before every write: still the one writer? A lost lease stops all writing, the rollback's too."""
        try:
            self.lock.renew()
        except ClusterBusy as exc:
            self.lease_lost = str(exc)
            self._fail(None, exc)
            return False
        except ClusterError as exc:
            self._fail(None, exc, prefix="cannot renew the pipeline's lock: ")
            return False
        return True

    def _preflight(self) -> bool:
        """Server-side dry runs of every change: what the server refuses changes nothing."""
        for c in self.pending:
            try:
                self.backend.apply(self.by_name[c.name], dry_run=True, force=self.force)
            except ClusterError as exc:
                self._fail(c, exc, prefix="refused before anything was written: ")
                return False
        return True

    def _write(self, changes: list[StageChange]) -> bool:
        for c in changes:
            if not self._renew():
                return False
            self.touched.append(c)
            try:
                obj = self.backend.apply(self.by_name[c.name], force=self.force)
            except ClusterUnreachable as exc:  # it may have landed: the rollback restores it either way
                self._fail(c, exc, status="")
                return False
            except ClusterError as exc:
                self.touched.pop()
                self._fail(c, exc)
                return False
            self.landed.add(c.name)
            uid = (obj.get("metadata") or {}).get("uid")
            if c.action == CREATE and uid:
                self.created_uid[c.name] = uid
            self._record(c, "applied", c.describe(), on=ON_NEW)
        return True

    def _wait_all(self) -> bool:
        deadline = self.clock() + self.spec.deployment.rollout_deadline_s
        for c in list(self.touched):
            problem = self._wait(c, deadline)
            if problem:
                self._fail(c, problem)
                return False
        return True

    def _wait(self, c: StageChange, deadline: float) -> str:
        while True:
            try:
                self.lock.renew()
            except ClusterBusy as exc:
                self.lease_lost = str(exc)
                return str(exc)
            except ClusterError as exc:
                return f"cannot renew the pipeline's lock while waiting for the rollout of {c.name}: {exc}"
            try:
                obj = self.backend.get(self.spec.namespace, c.name)
            except ClusterError as exc:
                return f"lost the cluster while waiting for the rollout of {c.name}: {exc}"
            if obj is None:
                return f"{c.name} was deleted by someone else during its rollout"
            if RolloutStatus.of(obj).complete:
                return ""
            if self.clock() >= deadline:
                return (
                    f"rollout of {c.name} did not become available within "
                    f"{self.spec.deployment.rollout_deadline_s:g} s"
                )
            self.sleep(self.poll_s)

    def _roll_back(self) -> None:
        """Every stage this run touched back to what it was, newest first; each failure is said per stage.
        Without the pipeline's lock nothing is written: another writer may own the stages now."""
        for c in reversed(self.touched):
            if not self.lease_lost:
                self._renew_for_rollback()
            if self.lease_lost:
                self._record(
                    c,
                    "abandoned",
                    f"not restored: {self.lease_lost}; another writer may have changed it",
                    on=ON_UNKNOWN,
                )
                continue
            before = self.observed[c.name]
            try:
                if before is None:
                    done = (
                        f"deleted {c.name}, which this run created"
                        if self._delete_created(c)
                        else f"{c.name}, which this run tried to create, is absent"
                    )
                else:
                    self.backend.apply(_restorable(before), force=True)
                    done = f"restored {c.name} to its previous state"
            except ClusterError as exc:
                # Unknown when the restore may have landed, or a created Deployment may be someone else's.
                unknown = isinstance(exc, ClusterUnreachable) or c.name not in self.landed or before is None
                self._record(
                    c,
                    "rollback-failed",
                    f"could not be restored after '{self.cause}': {exc}",
                    on=ON_UNKNOWN if unknown else ON_NEW,
                )
                continue
            self._record(c, "rolled-back", f"{done} after: {self.cause}", on=ON_OLD)

    def _renew_for_rollback(self) -> bool:
        try:
            self.lock.renew()
        except ClusterBusy as exc:
            self.lease_lost = str(exc)
            return False
        except ClusterError:
            return False  # the restore will meet the same cluster and say so per stage
        return True

    def _delete_created(self, c: StageChange) -> bool:
        """Delete what this run created; False when there was nothing to delete."""
        uid = self.created_uid.get(c.name)
        if uid is None:  # the create got no answer: delete it only if it is ours, from this plan
            obj = self.backend.get(self.spec.namespace, c.name)
            if obj is None:
                return False
            meta = obj.get("metadata") or {}
            if (meta.get("annotations") or {}).get(ANN_PLAN) != self.plan.plan_id:
                raise ClusterError(f"{c.name} now holds another plan's Deployment: left as it is")
            uid = meta.get("uid")
        self.backend.delete(self.spec.namespace, c.name, uid=uid)
        return True


__all__ = ["CREATE", "GuardrailError", "ReconcileResult", "StageOutcome", "check_guardrails", "reconcile"]
