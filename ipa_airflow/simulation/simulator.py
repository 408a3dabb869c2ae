"""Discrete-event simulation of a pipeline chain: arrivals from a per-second trace, per stage a batching
queue and replicas whose batch latency is drawn from the variant's measured profile. Deterministic for a
given seed.

There is one simulated cluster: a `cluster.pods.PodCluster` on the simulation's clock. Each decision
goes through `control.apply`, the production reconciler: capacity first, guardrails, the rollout wait,
rollback. Pods become ready after the variant's start-up time and the old ones are drained only then;
the servers follow the pods. While the reconciler waits for a rollout (its `sleep`), the simulation
runs on, and no other decision starts until it returns, as in the loop operator.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import control
from ..cluster.backends import ClusterError
from ..cluster.desired import (
    ANN_BATCH,
    ANN_SHAPE,
    ANN_VARIANT,
    LABEL_STAGE,
    deployment_name,
    max_batch_time_s,
)
from ..cluster.pods import Pod, PodCluster
from ..cluster.reconcile import GuardrailError
from ..pipelines import Pipeline
from ..profiles import ProfileSet
from ..spec import PipelineSpec
from .controllers import trace_time
from .results import DecisionLog, SimResult

Z99 = 2.3263  # the 99th percentile of a standard normal


def arrival_times(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """When requests arrive (seconds from the window's start): each second's count (a fraction rounds up
    with that probability), spread uniformly within the second. `ipa live` sends real requests at the
    same times."""
    seconds = len(counts)
    whole = np.floor(counts).astype(int)
    n_per_second = whole + (rng.random(seconds) < counts - whole)
    return np.concatenate([i + np.sort(rng.random(n)) for i, n in enumerate(n_per_second)] or [np.zeros(0)])


# The percentiles a stage's hop latencies are reported at, and a calibrated overhead is given at.
HOP_LEVELS = (1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)


def stage_percentiles_ms(hops: Mapping[str, Sequence[float]]) -> dict[str, dict[str, Any]]:
    """Each stage's hop (from reaching the stage to its answer) in ms, from seconds: p50, p99, and every
    percentile of HOP_LEVELS (`levels_ms`), which a calibration compares level by level."""
    out: dict[str, dict[str, Any]] = {}
    for name, v in hops.items():
        if len(v):
            at = np.percentile(np.asarray(v, float) * 1000, HOP_LEVELS)
            out[name] = {
                "p50": round(float(np.percentile(v, 50)) * 1000, 2),
                "p99": round(float(np.percentile(v, 99)) * 1000, 2),
                "levels_ms": [round(float(x), 2) for x in at],
            }
    return out


def per_second_p99(arrivals: np.ndarray, latency: np.ndarray, seconds: int) -> np.ndarray:
    """The p99 latency of the requests that arrived in each second; a request without a latency (NaN:
    dropped or failed) counts as infinitely late; NaN for a second without requests."""
    p99 = np.full(seconds, np.nan)
    sec = np.floor(arrivals).astype(int)
    lat_or_inf = np.where(np.isnan(latency), np.inf, latency)
    order = np.argsort(sec, kind="stable")
    bounds = np.searchsorted(sec[order], np.arange(seconds + 1))
    with np.errstate(invalid="ignore"):
        for t in range(seconds):
            chunk = lat_or_inf[order[bounds[t] : bounds[t + 1]]]
            if len(chunk):
                # Interpolating towards an infinite latency gives NaN, which would read as "no requests".
                value = np.percentile(chunk, 99)
                p99[t] = np.inf if np.isnan(value) else value
    return p99


@dataclass
class Server:
    sid: int  # its pod's uid
    stage: int
    variant: str
    batch: int
    timeout_s: float  # how long a partial batch waits: the Deployment's MLSERVER_MODEL_MAX_BATCH_TIME
    mu: float  # lognormal batch latency: log of the p50 (s)
    sigma: float  # from the p50..p99 spread
    unit_cost: float
    ready_at: float
    throughput_rps: float  # one replica at its batch size, from the profile
    busy: bool = False
    retiring: bool = False


class Simulator:
    """Replays `counts` through the pipeline under `policy`. The cluster is a `PodCluster` on the
    simulation's clock: every decision goes through `control.apply`, i.e. the production reconciler
    (ordering, guardrails, rollback), and the servers follow the pods that cluster runs."""

    def __init__(
        self,
        spec: PipelineSpec,
        profiles: ProfileSet,
        counts: np.ndarray,
        policy,
        *,
        history: np.ndarray,
        seed: int = 0,
        drop_after_s: float | None = None,
        source: Path | None = None,  # the spec's file: a template_file is read relative to it
        # per stage, added to every batch (calibration): seconds, or its distribution as the seconds at
        # each of HOP_LEVELS, drawn from per batch
        overhead_s: Mapping[str, float | Sequence[float]] | None = None,
    ):
        self.spec, self.profiles, self.policy = spec, profiles, policy
        self.pipeline = Pipeline(spec, profiles, source or Path(f"{spec.name}.yaml"))
        self.counts = np.asarray(counts, dtype=float)
        self.history = np.asarray(history, dtype=float)
        self.rng = np.random.default_rng(seed)
        self.drop_after_s = drop_after_s if drop_after_s is not None else 2 * spec.sla_s
        # What the profiles leave out of a batch on real servers (the router's hop, the host's other
        # work), measured by `ipa live run` as each stage's hop p50 over the simulator's: see docs/live.md.
        given = overhead_s or {}
        self.overhead = [np.atleast_1d(np.asarray(given.get(st.name, 0.0), float)) for st in spec.stages]
        self.n_stages = len(spec.stages)
        self.events: list = []
        self.seq = itertools.count()
        self.queues: list[deque[int]] = [deque() for _ in range(self.n_stages)]
        self.servers: list[list[Server]] = [[] for _ in range(self.n_stages)]
        self.by_pod: dict[int, Server] = {}
        self.timeout_pending = [math.inf] * self.n_stages
        self.startup = {s.name: {v.name: v.startup_s for v in s.variants} for s in spec.stages}
        self.stage_of = {deployment_name(spec.name, s.name): k for k, s in enumerate(spec.stages)}
        self.now = 0.0
        self.cluster = PodCluster(clock=lambda: self.now, startup_s=self._startup_of, on_change=self._follow)
        self.state = None  # the policy's, handed back by each decision
        self.forecast = None  # the last decision's: the fast path's context carries it
        self.log = DecisionLog()
        # One reconcile at a time: while one waits for its rollout, a decision that comes due waits for it
        # and the fast path does not look.
        self.reconciling = False
        self.adapt_due = False
        self.fast_path = bool(getattr(policy, "fast_path", False))

    # ---- the cluster: decisions go through the reconciler, servers follow its pods ---------------------
    def _startup_of(self, deployment: dict) -> float:
        stage = deployment["metadata"]["labels"][LABEL_STAGE]
        return self.startup[stage][deployment["metadata"]["annotations"][ANN_VARIANT]]

    def _follow(self, key, created: list[Pod], deleted: list[Pod]) -> None:
        k = self.stage_of[key[1]]
        for pod in created:
            server = self._server(k, pod)
            self.servers[k].append(server)
            self.by_pod[pod.uid] = server
            if pod.ready_at > self.now:
                self._push(pod.ready_at, "up", k)
        for pod in deleted:
            if pod.uid in self.by_pod:
                self._retire(k, self.by_pod.pop(pod.uid))

    def _server(self, k: int, pod: Pod) -> Server:
        """A server running what its pod's Deployment said when the pod was created."""
        d = pod.source
        ann = d["metadata"]["annotations"]
        hardware, resources, dtype = ann[ANN_SHAPE].split(" ")
        batch = int(ann[ANN_BATCH])
        variant = next(v for v in self.spec.stages[k].variants if v.name == ann[ANN_VARIANT])
        shape = next(
            s
            for s in variant.shapes
            if (s.hardware, s.resources.key, s.dtype) == (hardware, resources, dtype)
        )
        prof = self.profiles.get(variant.profile_id(shape))
        p50 = prof.latency_ms(batch, "p50") / 1000
        p99 = max(prof.latency_ms(batch, "p99") / 1000, p50 * 1.0001)
        return Server(
            pod.uid,
            k,
            variant.name,
            batch,
            max(max_batch_time_s(d), 0.0),
            math.log(p50),
            math.log(p99 / p50) / Z99,
            self.spec.replica_cost(shape.resources),
            pod.ready_at,
            prof.throughput_rps(batch),
        )

    def _decide(self, now: float) -> None:
        """One adaptation step, as the loop operator takes it: decide on what the cluster runs, then
        reconcile; the reconciler's waits run the simulation on (`_advance`)."""
        observed = np.concatenate([self.history, self.counts[: int(now)]])
        forecast = self.policy.forecast(now, observed)
        ctx = self._context(now, forecast)
        decision, self.state = self.policy.decide(ctx)
        self.forecast = forecast
        self.log.decided(decision)
        self._apply(now, decision)

    def _context(self, now: float, forecast) -> control.Context:
        return control.context(
            self.pipeline,
            forecast,
            self.cluster,
            now=trace_time(self.policy.start_s + now),
            policy=self.policy.name,
            quantile=self.policy.quantile,
            state=self.state,
            measured_rps=self._measured_rate(now) if self.fast_path else None,
            measured_peak_rps=self._measured_peak(now) if self.fast_path else None,
        )

    def _apply(self, now: float, decision: control.Decision):
        """Reconcile `decision`; the result (None when nothing changed or the guardrails refused it)."""
        self.reconciling = True
        try:
            result = control.apply(
                decision,
                self.spec,
                self.cluster,
                base=self.pipeline.source.parent,
                clock=lambda: self.now,
                sleep=self._advance,
                holder="simulator",
            )
        except (ClusterError, GuardrailError) as exc:  # refused before anything was applied
            self.log.failed(now, decision, str(exc))
            return None
        finally:
            self.reconciling = False
        if result is not None:
            self.log.reconciled(now, decision, result)
        return result

    def _measured_rate(self, now: float) -> float | None:
        """Arrivals per second over the last `burst_window_s` (as a rate metric reports it)."""
        window = self.spec.adaptation.burst_window_s
        if now < window or window == 0:
            return None
        arrived = np.searchsorted(self.arrival, [now - window, now], side="right")
        return float(arrived[1] - arrived[0]) / window

    def _measured_peak(self, now: float) -> float | None:
        """The highest `burst_window_s` rate over the capacity hold (`stabilisation` intervals), from the
        whole seconds before `now`."""
        a = self.spec.adaptation
        window, end = a.burst_window_s, int(now)
        first = max(0, end - int(a.stabilisation * a.spacing_s))
        if window == 0 or end - first < window:
            return None
        sums = np.convolve(self.arrived_per_s[first:end], np.ones(window), mode="valid")
        return float(sums.max()) / window

    def _burst(self, now: float) -> None:
        """The fast path between decisions: the rate measured over the burst window and each stage's
        queue; more replicas of what runs (`control.burst`) when they overload it."""
        rate = self._measured_rate(now)
        if rate is None or self.forecast is None:
            return
        rho = self.spec.limits.max_utilisation
        if not any(self.queues) and all(
            rate <= rho * sum(s.throughput_rps for s in stage if not s.retiring) for stage in self.servers
        ):
            return  # what runs and starts carries it, no backlog: the common case, decided cheaply
        measured = control.Measured(
            rate, {st.name: len(q) for st, q in zip(self.spec.stages, self.queues, strict=True)}
        )
        decision = control.burst(self._context(now, self.forecast), measured)
        if decision is None:
            return
        result = self._apply(now, decision)
        if result is not None and result.ok:
            self.log.burst(decision)
        if self.adapt_due:  # a decision came due while the scale-up waited for its pods
            self.adapt_due = False
            self._adapt(self.now)

    def _advance(self, seconds: float) -> None:
        """The reconciler's sleep: simulated time goes on, requests are served, pods become ready."""
        until = self.now + seconds
        while self.events and self.events[0][0] <= until:
            self._handle(*heapq.heappop(self.events))
        self.now = until

    def _overhead(self, k: int) -> float:
        o = self.overhead[k]
        if len(o) == 1:
            return float(o[0])
        return float(np.interp(self.rng.random() * 100, HOP_LEVELS, o))  # the measured distribution

    def _retire(self, k: int, s: Server) -> None:
        s.retiring = True
        if not s.busy:
            self.servers[k].remove(s)

    def _on_up(self, now: float, k: int) -> None:
        self.cluster.settle()  # a rollout whose pods are all ready now retires the old ones
        self._dispatch(now, k)

    # ---- events ------------------------------------------------------------------------------------------
    def _push(self, t: float, kind: str, *payload) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, payload))

    def _dispatch(self, now: float, k: int) -> None:
        q = self.queues[k]
        while q and now - self.arrival[q[0]] > self.drop_after_s:
            self.dropped_ids.add(q.popleft())
        if not q:
            return
        for s in self.servers[k]:
            if not q:
                return
            if s.busy or s.retiring or s.ready_at > now:
                continue
            oldest_wait = now - self.enqueued[k][q[0]]
            if len(q) < s.batch and oldest_wait < s.timeout_s - 1e-12:
                due = self.enqueued[k][q[0]] + s.timeout_s
                if due < self.timeout_pending[k]:
                    self.timeout_pending[k] = due
                    self._push(due, "timeout", k)
                return
            items = [q.popleft() for _ in range(min(s.batch, len(q)))]
            s.busy = True
            service = float(np.exp(self.rng.normal(s.mu, s.sigma))) + self._overhead(k)
            self._push(now + service, "done", k, s, items)

    def run(self) -> SimResult:
        t_start = time.perf_counter()
        seconds = len(self.counts)
        arrivals = arrival_times(self.counts, self.rng)
        self.arrival = arrivals
        self.arrived_per_s = np.bincount(np.floor(arrivals).astype(int), minlength=seconds)[:seconds]
        self.enqueued: list[dict[int, float]] = [{} for _ in range(self.n_stages)]
        self.dropped_ids: set[int] = set()
        self.hops: list[list[float]] = [[] for _ in range(self.n_stages)]  # per stage: queue + batch, s
        self.latency = np.full(len(arrivals), np.nan)
        for rid, t in enumerate(arrivals):
            self._push(float(t), "arrive", rid)
        self.per_planned = np.zeros(seconds)
        self.per_cost = np.zeros(seconds)
        self.per_acc = np.zeros(seconds)
        self.per_capacity = np.zeros(seconds)
        for t in range(seconds):
            self._push(float(t) + 0.5, "sample", t)
        # The first decision's plan runs from the start: its pods are ready at once.
        self.cluster.warm = True
        self._decide(0.0)
        self.cluster.warm = False
        interval = self.policy.interval_s
        if interval < seconds:
            self._push(interval, "adapt")
        while self.events:
            self._handle(*heapq.heappop(self.events))
        return self._result(seconds, arrivals, time.perf_counter() - t_start)

    def _handle(self, now: float, _seq: int, kind: str, payload: tuple) -> None:
        self.now = now
        if kind == "arrive":
            rid = payload[0]
            self.queues[0].append(rid)
            self.enqueued[0][rid] = now
            self._dispatch(now, 0)
        elif kind == "done":
            k, s, items = payload
            s.busy = False
            if s.retiring:
                self.servers[k].remove(s)
            for rid in items:
                self.hops[k].append(now - self.enqueued[k][rid])
                if k + 1 < self.n_stages:
                    self.queues[k + 1].append(rid)
                    self.enqueued[k + 1][rid] = now
                else:
                    self.latency[rid] = now - self.arrival[rid]
            self._dispatch(now, k)
            if k + 1 < self.n_stages:
                self._dispatch(now, k + 1)
        elif kind == "timeout":
            k = payload[0]
            self.timeout_pending[k] = math.inf
            self._dispatch(now, k)
        elif kind == "up":
            self._on_up(now, payload[0])
        elif kind == "adapt":
            if self.reconciling:  # the fast path's scale-up is waiting for its pods: decide after it
                self.adapt_due = True
            else:
                self._adapt(now)
        elif kind == "sample":
            t = payload[0]
            self.per_planned[t] = self.log.planned_now
            self.per_cost[t] = sum(s.unit_cost for stage in self.servers for s in stage)
            self.per_acc[t] = self._accuracy(now)
            self.per_capacity[t] = self._carried(now)
            if self.fast_path and not self.reconciling:
                self._burst(now)

    def _adapt(self, now: float) -> None:
        # One decision at a time: the next is pushed only once this one's reconcile has returned.
        self._decide(now)
        nxt = control.next_tick(now, self.policy.interval_s, self.now)
        if nxt < len(self.counts):
            self._push(nxt, "adapt")

    def _carried(self, now: float) -> float:
        """The load the ready replicas carry: the narrowest stage's capacity at `max_utilisation`."""
        return self.spec.limits.max_utilisation * min(
            sum(s.throughput_rps for s in stage if s.ready_at <= now and not s.retiring)
            for stage in self.servers
        )

    def _result(self, seconds: int, arrivals: np.ndarray, wall: float) -> SimResult:
        latency = self.latency
        done = ~np.isnan(latency)
        dropped = len(arrivals) - int(done.sum())
        late = int((latency[done] > self.spec.sla_s).sum())
        p99 = per_second_p99(arrivals, latency, seconds)
        return SimResult(
            policy=self.policy.name,
            seconds=seconds,
            sent=len(arrivals),
            completed=int(done.sum()),
            late=late,
            dropped=dropped,
            latencies=latency[done],
            per_second={
                "load": self.counts.copy(),
                "planned": self.per_planned,
                "p99_s": p99,
                "accuracy": self.per_acc,
                "cost": self.per_cost,
                "carried": self.per_capacity,
            },
            reconfigurations=self.log.reconfigurations,
            failed_reconciles=self.log.failed_reconciles,
            bursts=self.log.bursts,
            solver_s=self.log.solver_s,
            wall_s=wall,
            sla_s=self.spec.sla_s,
            plans=self.log.plans,
            stage_latency_ms=stage_percentiles_ms(
                {st.name: hops for st, hops in zip(self.spec.stages, self.hops, strict=True)}
            ),
        )

    def _accuracy(self, now: float) -> float:
        """PAS of what serves now: per stage, the variant most of the ready replicas run."""
        scores = []
        for k in range(self.n_stages):
            ready = [s for s in self.servers[k] if s.ready_at <= now and not s.retiring] or [
                s for s in self.servers[k] if s.ready_at <= now
            ]
            if not ready:
                return 0.0
            by: dict[str, list[Server]] = {}
            for s in ready:
                by.setdefault(s.variant, []).append(s)
            top = max(by.values(), key=len)[0]
            acc = next(v.accuracy for v in self.spec.stages[k].variants if v.name == top.variant) / 100
            scores.append(acc)
        return math.prod(scores)
