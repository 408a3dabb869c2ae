"""Discrete-event simulation of a pipeline chain: arrivals from a per-second trace, per stage a batching
queue and replicas whose batch latency is drawn from the variant's measured profile, and
reconfiguration as Kubernetes does it (new replicas ready after the variant's start-up time, old ones
drained only then). Deterministic for a given seed.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..plans import Plan, StagePlan
from ..profiles import ProfileSet
from ..spec import PipelineSpec

Z99 = 2.3263  # the 99th percentile of a standard normal


@dataclass
class Server:
    sid: int
    stage: int
    variant: str
    batch: int
    timeout_s: float
    mu: float  # lognormal batch latency: log of the p50 (s)
    sigma: float  # from the p50..p99 spread
    unit_cost: float
    accuracy: float
    generation: int
    ready_at: float
    busy: bool = False
    retiring: bool = False


@dataclass
class SimResult:
    policy: str
    seconds: int
    sent: int
    completed: int
    late: int
    dropped: int
    latencies: np.ndarray  # end-to-end, completed requests
    per_second: dict[str, np.ndarray]  # load, planned, p99_s, accuracy, cost (each one value per second)
    reconfigurations: int
    solver_s: float
    wall_s: float
    sla_s: float
    plans: list[tuple[float, str]] = field(default_factory=list)

    @property
    def violation_rate(self) -> float:
        return (self.late + self.dropped) / self.sent if self.sent else 0.0

    def summary(self) -> dict:
        ps = self.per_second
        return {
            "policy": self.policy,
            "seconds": self.seconds,
            "sent": self.sent,
            "completed": self.completed,
            "late": self.late,
            "dropped": self.dropped,
            "sla_violation_rate": round(self.violation_rate, 5),
            "p99_latency_s": round(float(np.percentile(self.latencies, 99)), 4)
            if len(self.latencies)
            else None,
            "seconds_p99_within_sla": round(
                float(np.mean(np.nan_to_num(ps["p99_s"], nan=0.0) <= self.sla_s)), 4
            ),
            "mean_accuracy": round(float(np.mean(ps["accuracy"])), 5),
            "mean_cost": round(float(np.mean(ps["cost"])), 4),
            # The load the plans were sized for, over the load that came: what the forecasts (and the
            # stabilisation holding the highest) asked for. Cost follows it only in part, because the
            # planner also spends headroom on more accurate variants.
            "planned_over_load": round(float(np.mean(ps["planned"]) / max(np.mean(ps["load"]), 1e-9)), 4),
            "reconfigurations": self.reconfigurations,
            "solver_s": round(self.solver_s, 3),
            "wall_s": round(self.wall_s, 3),
            "solver_share": round(self.solver_s / self.wall_s, 3) if self.wall_s else 0,
        }


class Simulator:
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
    ):
        self.spec, self.profiles, self.policy = spec, profiles, policy
        self.counts = np.asarray(counts, dtype=float)
        self.history = np.asarray(history, dtype=float)
        self.rng = np.random.default_rng(seed)
        self.drop_after_s = drop_after_s if drop_after_s is not None else 2 * spec.sla_s
        self.n_stages = len(spec.stages)
        self.events: list = []
        self.seq = itertools.count()
        self.queues = [deque() for _ in range(self.n_stages)]
        self.servers: list[list[Server]] = [[] for _ in range(self.n_stages)]
        self.generation = [0] * self.n_stages
        self.timeout_pending = [math.inf] * self.n_stages
        self.sid = itertools.count()
        self.startup = {s.name: {v.name: v.startup_s for v in s.variants} for s in spec.stages}

    # ---- configuration ---------------------------------------------------------------------------------
    def _server(self, k: int, sp: StagePlan, ready_at: float, gen: int) -> Server:
        stage = self.spec.stages[k]
        variant = next(v for v in stage.variants if v.name == sp.variant)
        shape = next(
            s for s in variant.shapes if s.resources.key == sp.resources and s.hardware == sp.hardware
        )
        prof = self.profiles.get(variant.profile_id(shape))
        p50 = prof.latency_ms(sp.batch, "p50") / 1000
        p99 = max(prof.latency_ms(sp.batch, "p99") / 1000, p50 * 1.0001)
        return Server(
            next(self.sid),
            k,
            sp.variant,
            sp.batch,
            max(sp.queue_s, 0.0),
            math.log(p50),
            math.log(p99 / p50) / Z99,
            sp.cost / sp.replicas,
            sp.accuracy,
            gen,
            ready_at,
        )

    def apply(self, now: float, plan: Plan, initial: bool = False) -> int:
        changed = 0
        for k, sp in enumerate(plan.stages):
            live = [s for s in self.servers[k] if not s.retiring]
            current = [s for s in live if s.generation == self.generation[k]]
            same = current and current[0].variant == sp.variant and current[0].batch == sp.batch
            if same:
                n = len(current)
                if sp.replicas > n:
                    up = now if initial else now + self.startup[sp.stage][sp.variant]
                    for _ in range(sp.replicas - n):
                        self.servers[k].append(self._server(k, sp, up, self.generation[k]))
                        self._push(up, "up", k)
                    changed += 1
                elif sp.replicas < n:
                    # Scale down: drop pending pods first, then idle ones, then let busy ones drain.
                    order = sorted(current, key=lambda s: (s.ready_at <= now, s.busy))
                    for s in order[: n - sp.replicas]:
                        self._retire(k, s)
                    changed += 1
                continue
            # A switch of variant or batch: a new generation, old replicas serve until it is ready.
            self.generation[k] += 1
            gen = self.generation[k]
            for s in live:
                if s.ready_at > now and s.generation != gen:
                    self._retire(k, s)  # superseded before it ever started serving
            up = now if initial else now + self.startup[sp.stage][sp.variant]
            for _ in range(sp.replicas):
                self.servers[k].append(self._server(k, sp, up, gen))
            self._push(up, "up", k)
            changed += 1
        return changed

    def _retire(self, k: int, s: Server) -> None:
        s.retiring = True
        if not s.busy:
            self.servers[k].remove(s)

    def _on_up(self, now: float, k: int) -> None:
        gen = self.generation[k]
        newest = [s for s in self.servers[k] if s.generation == gen and not s.retiring]
        if newest and all(s.ready_at <= now for s in newest):
            for s in list(self.servers[k]):
                if s.generation != gen and not s.retiring:
                    self._retire(k, s)
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
            self._push(now + float(np.exp(self.rng.normal(s.mu, s.sigma))), "done", k, s, items)

    def run(self) -> SimResult:
        t_start = time.perf_counter()
        seconds = len(self.counts)
        whole = np.floor(self.counts).astype(int)
        n_per_second = whole + (self.rng.random(seconds) < self.counts - whole)
        arrivals = np.concatenate([i + np.sort(self.rng.random(n)) for i, n in enumerate(n_per_second)])
        self.arrival = arrivals
        self.enqueued = [dict() for _ in range(self.n_stages)]
        self.dropped_ids: set[int] = set()
        latency = np.full(len(arrivals), np.nan)
        for rid, t in enumerate(arrivals):
            self._push(float(t), "arrive", rid)
        interval = self.policy.interval_s
        observed = self.history.copy()
        decision = self.policy.decide(0.0, observed)
        solver_s = decision.solve_s
        self.apply(0.0, decision.plan, initial=True)
        plans = [(0.0, decision.plan.plan_id)]
        reconfig = 0
        planned = np.zeros(seconds)
        planned_now = decision.planned_load
        for t in np.arange(interval, seconds, interval):
            self._push(float(t), "adapt")
        per_cost = np.zeros(seconds)
        per_acc = np.zeros(seconds)
        for t in range(seconds):
            self._push(float(t) + 0.5, "sample", t)
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
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
                    if k + 1 < self.n_stages:
                        self.queues[k + 1].append(rid)
                        self.enqueued[k + 1][rid] = now
                    else:
                        latency[rid] = now - arrivals[rid]
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
                upto = int(now)
                observed = np.concatenate([self.history, self.counts[:upto]])
                decision = self.policy.decide(now, observed)
                solver_s += decision.solve_s
                planned_now = decision.planned_load
                if decision.plan.plan_id != plans[-1][1]:
                    reconfig += self.apply(now, decision.plan) > 0
                    plans.append((now, decision.plan.plan_id))
            elif kind == "sample":
                t = payload[0]
                planned[t] = planned_now
                per_cost[t] = sum(s.unit_cost for stage in self.servers for s in stage)
                per_acc[t] = self._accuracy(now)
        done = ~np.isnan(latency)
        dropped = len(arrivals) - int(done.sum())
        late = int((latency[done] > self.spec.sla_s).sum())
        p99 = np.full(seconds, np.nan)
        sec = np.floor(arrivals).astype(int)
        lat_or_inf = np.where(done, latency, np.inf)
        order = np.argsort(sec, kind="stable")
        bounds = np.searchsorted(sec[order], np.arange(seconds + 1))
        with np.errstate(invalid="ignore"):  # dropped requests count as infinitely late
            for t in range(seconds):
                chunk = lat_or_inf[order[bounds[t] : bounds[t + 1]]]
                if len(chunk):
                    p99[t] = np.percentile(chunk, 99)
        wall = time.perf_counter() - t_start
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
                "planned": planned,
                "p99_s": p99,
                "accuracy": per_acc,
                "cost": per_cost,
            },
            reconfigurations=reconfig,
            solver_s=solver_s,
            wall_s=wall,
            sla_s=self.spec.sla_s,
            plans=plans,
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
