"""Several pipelines replayed at once under one quota: a fleet (docs/fleet.md), each pipeline on its
own window of the trace (so their peaks do not coincide), decided together or each alone.

- joint: at each decision time every pipeline's context is built by its own `Simulator`, and
  `control.decide_fleet` decides them together (the one program, what is kept held to the quota);
- independent: each pipeline decides alone (`control.decide`, as if it owned the cluster); when the
  plans together ask for more of a pool than its quota, every pipeline's replicas are cut by the same
  factor (at least one per stage), as a quota admission scaling requests down would.

Each pipeline runs in an unchanged `Simulator` whose policy hands its context to this driver and waits
for the decision (`_Relay`). The simulators run one at a time, each in its own thread until it next
needs a decision: one decision round sees every pipeline's context, the program is solved in the
driver's thread, and the run is as deterministic as a single pipeline's. The decisions follow a common
grid (every `interval_s`); a pipeline whose reconcile outlasted an interval decides at the next grid
point after it, and is then decided in that round (the others' contexts of the round are used).

The fast path (`control.burst`) is off in both modes: it adds replicas without asking the quota.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import control
from ..cluster.desired import ANN_SHAPE
from ..control import Context, Decision
from ..control.fleet import plan_usage
from ..fleet import Fleet
from ..optimizer import score_config
from ..plans import Plan
from .controllers import EPOCH, PlannedPolicy
from .experiments import HISTORY_S, random_test_windows
from .results import SimResult
from .simulator import Simulator

Mode = Literal["joint", "independent"]
MODES: tuple[Mode, ...] = ("joint", "independent")
_TOL = 1e-9


# ---- the independent baseline: plans made alone, cut to fit ----------------------------------------------
def cut_factors(requested: Mapping[str, float], quota: Mapping[str, float]) -> dict[str, float]:
    """Per pool over quota, the share of the request it can admit (pools within quota: none)."""
    return {p: quota[p] / requested[p] for p in quota if requested[p] > quota[p] + _TOL * max(1.0, quota[p])}


def cut_config(plan: Plan, factors: Mapping[str, float]) -> tuple[tuple[Any, ...], ...]:
    """`plan`'s configuration with each stage's replicas scaled by the smallest factor of the pools it
    draws from, rounded down, at least one (a stage at zero would drop every request)."""
    config = []
    for s in plan.stages:
        kind = s.resources.partition("=")[0]
        f = min((v for p, v in factors.items() if p in (kind, s.hardware)), default=1.0)
        replicas = max(1, math.floor(s.replicas * f + 1e-9)) if f < 1.0 else s.replicas
        config.append((*s.config_key[:6], replicas))
    return tuple(config)


def decide_independent(contexts: Mapping[str, Context], fleet: Fleet) -> dict[str, Decision]:
    """Every pipeline decided alone, then cut to the quota by proportional scaling. Each decision's
    `load_basis["quota_cut"]` says what it asked for, what the pool had and what it got."""
    alone = {n: control.decide(contexts[n])[0] for n in fleet.pipeline_names}
    pools = tuple(fleet.quota)
    requested = {p: math.fsum(plan_usage(d.plan, pools)[p] for d in alone.values()) for p in pools}
    factors = cut_factors(requested, fleet.quota)
    if not factors:
        return alone
    out = {}
    for n, d in alone.items():
        ctx = contexts[n]
        config = cut_config(d.plan, factors)
        if config == tuple(s.config_key for s in d.plan.stages):
            out[n] = d
            continue
        plan = score_config(ctx.spec, ctx.pipeline.profiles, d.load_rps, config, policy=ctx.policy)
        said = ", ".join(f"{requested[p]:g} {p} asked of {fleet.quota[p]:g}" for p in factors)
        out[n] = dataclasses.replace(
            d,
            plan=plan,
            reason=f"{d.reason}; cut to fit the quota ({said}: replicas scaled down)",
            load_basis={
                **d.load_basis,
                "quota_cut": {"asked": plan_usage(d.plan, pools), "got": plan_usage(plan, pools)},
            },
        )
    return out


def decide_joint(contexts: Mapping[str, Context], fleet: Fleet) -> dict[str, Decision]:
    return control.decide_fleet(contexts, fleet)


DECIDERS: dict[Mode, Callable[[Mapping[str, Context], Fleet], dict[str, Decision]]] = {
    "joint": decide_joint,
    "independent": decide_independent,
}


# ---- one simulator per pipeline, decided by the driver ---------------------------------------------------
class _Aborted(Exception):
    """The driver stopped (an error elsewhere): the simulator's thread unwinds."""


class _Relay:
    """A simulator's policy: its forecast is the planner's; its decision comes from the fleet driver.
    After each decision `interval_s` points at the next grid time, so the pipelines decide in step."""

    fast_path = False  # the fast path adds replicas without asking the quota

    def __init__(self, base: PlannedPolicy, grid_s: float, ask: Callable[[Context], Decision]):
        self.base, self.grid_s, self._ask = base, grid_s, ask
        self.name, self.quantile, self.start_s = base.name, base.quantile, base.start_s
        self.interval_s = grid_s

    def forecast(self, now: float, observed: np.ndarray):
        return self.base.forecast(now, observed)

    def decide(self, ctx: Context) -> tuple[Decision, Any]:
        decision = self._ask(ctx)
        now = sim_second(ctx, self.start_s)
        self.interval_s = (math.floor(now / self.grid_s + 1e-6) + 1) * self.grid_s - now
        return decision, ctx.state


def sim_second(ctx: Context, start_s: int) -> float:
    """The simulated second a context was built at (the simulator dates it `trace_time(start + now)`)."""
    return (ctx.now - EPOCH).total_seconds() - start_s


@dataclass
class _Member:
    name: str
    sim: Simulator
    relay: _Relay
    inbox: queue.Queue = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None
    units: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (second, pods' units)


@dataclass(frozen=True)
class Round:
    """One decision round: when, who was decided, and what the plans asked of each pool."""

    second: float  # the grid time of the round
    decided: tuple[str, ...]  # the pipelines whose decision was applied this round
    asked: Mapping[str, float]  # per pool, what the plans asked together (before any cut)
    planned: Mapping[str, float]  # per pool, what the plans decided take together
    quota_binds: bool  # joint: some pipeline's objective is below its own optimum because of the quota
    objective: float  # the fleet's weighted objective of the plans decided (what the joint program maximises)
    spread_s: float  # how far apart the contexts' times were
    short: tuple[str, ...] = ()  # the pipelines whose plan decided cannot carry its load within the SLA


@dataclass
class FleetRun:
    mode: Mode
    fleet: str
    starts: Mapping[str, int]  # each pipeline's window
    results: dict[str, SimResult]
    rounds: list[Round]
    quota: Mapping[str, float]
    use: dict[str, np.ndarray]  # per pool, per second: the units the pods of every pipeline hold
    wall_s: float

    def summary(self) -> dict[str, Any]:
        return summarise(self)


class _Driver:
    def __init__(self, fleet: Fleet, members: dict[str, _Member], decide, grid_s: float):
        self.fleet, self.members, self.decide, self.grid_s = fleet, members, decide, grid_s
        self.outbox: queue.Queue = queue.Queue()
        self.rounds: list[Round] = []

    def ask(self, name: str) -> Callable[[Context], Decision]:
        def ask(ctx: Context) -> Decision:
            self.outbox.put((name, "decide", ctx))
            answer = self.members[name].inbox.get()
            if isinstance(answer, _Aborted):
                raise answer
            return answer

        return ask

    def _body(self, m: _Member) -> None:
        start = m.inbox.get()
        if isinstance(start, _Aborted):
            return
        try:
            self.outbox.put((m.name, "done", m.sim.run()))
        except _Aborted:
            self.outbox.put((m.name, "aborted", None))
        except BaseException as exc:  # handed to the driver, which raises it
            self.outbox.put((m.name, "error", exc))

    def _resume(self, name: str, answer: Any) -> tuple[str, Any]:
        """Let one simulator run until it needs a decision or ends; nothing else runs meanwhile."""
        self.members[name].inbox.put(answer)
        who, kind, payload = self.outbox.get()
        assert who == name, (who, name)
        if kind == "error":
            raise payload
        return kind, payload

    def _round_of(self, name: str, ctx: Context) -> int:
        return math.floor(sim_second(ctx, self.members[name].relay.start_s) / self.grid_s + 1e-6)

    def run(self) -> dict[str, SimResult]:
        names = list(self.members)
        for m in self.members.values():
            m.thread = threading.Thread(target=self._body, args=(m,), name=f"fleet-sim-{m.name}", daemon=True)
            m.thread.start()
        pending: dict[str, Context] = {}
        last: dict[str, Context] = {}
        results: dict[str, SimResult] = {}
        try:
            for n in names:
                self._take(n, self._resume(n, None), pending, results)
            while pending:
                for n, c in pending.items():
                    last[n] = c
                r = min(self._round_of(n, c) for n, c in pending.items())
                # A pipeline already done is still in the program, as its last context: its pods hold
                # their share until the end of the window.
                decisions = self.decide({n: last[n] for n in names}, self.fleet)
                due = [n for n in names if n in pending and self._round_of(n, pending[n]) == r]
                self._record(r, decisions, due, pending)
                for n in due:
                    del pending[n]
                    self._take(n, self._resume(n, decisions[n]), pending, results)
        finally:
            for n, m in self.members.items():
                if m.thread is not None and m.thread.is_alive():
                    m.inbox.put(_Aborted(f"fleet simulation of {n} stopped"))
                    m.thread.join(timeout=5)
        return {n: results[n] for n in names}

    def _take(self, name: str, message, pending: dict[str, Context], results: dict[str, SimResult]) -> None:
        kind, payload = message
        if kind == "decide":
            pending[name] = payload
        elif kind == "done":
            results[name] = payload

    def _record(self, r: int, decisions: Mapping[str, Decision], due: list[str], pending) -> None:
        pools = tuple(self.fleet.quota)
        asked = {p: 0.0 for p in pools}
        planned = {p: 0.0 for p in pools}
        binds = False
        objective = 0.0
        for n, d in decisions.items():
            objective += self.fleet.member(n).weight * d.plan.objective
            got = plan_usage(d.plan, pools)
            cut = d.load_basis.get("quota_cut")
            wanted = cut["asked"] if cut else got
            for p in pools:
                asked[p] += wanted[p]
                planned[p] += got[p]
            binds = binds or bool(d.load_basis.get("fleet", {}).get("quota_binds"))
        times = [sim_second(c, self.members[n].relay.start_s) for n, c in pending.items()]
        spread = max(times) - min(times)
        short = tuple(n for n, d in decisions.items() if not d.plan.feasible)
        rd = Round(r * self.grid_s, tuple(due), asked, planned, binds, objective, spread, short)
        self.rounds.append(rd)


def _pod_units(sim: Simulator, pools: Sequence[str]) -> dict[str, float]:
    """What the pipeline's pods hold of each pool now: starting and old ones too, as a quota counts."""
    out = dict.fromkeys(pools, 0.0)
    for pods in sim.cluster.pods.values():
        for pod in pods:
            hardware, resources, _ = pod.source["metadata"]["annotations"][ANN_SHAPE].split(" ")
            kind, _, units = resources.partition("=")
            for p in pools:
                if p in (kind, hardware):
                    out[p] += float(units)
    return out


def _watch_pods(m: _Member, pools: Sequence[str]) -> None:
    """Record the pods' units whenever the simulated cluster changes them (after the simulator's own
    follow-up), as a step function of simulated time."""
    cluster = m.sim.cluster
    follow = cluster.on_change

    def on_change(key, created, deleted) -> None:
        if follow is not None:
            follow(key, created, deleted)
        m.units.append((cluster.clock(), _pod_units(m.sim, pools)))

    cluster.on_change = on_change


def per_second(steps: Sequence[tuple[float, Mapping[str, float]]], pool: str, seconds: int) -> np.ndarray:
    """A step function sampled in the middle of each second (as the simulator samples its series)."""
    if not steps:
        return np.zeros(seconds)
    at = np.array([t for t, _ in steps])
    values = np.array([u[pool] for _, u in steps])
    idx = np.searchsorted(at, np.arange(seconds) + 0.5, side="right") - 1
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], 0.0)


def run_fleet(
    fleet: Fleet,
    trace: np.ndarray,
    starts: Mapping[str, int],
    duration: int,
    mode: Mode,
    *,
    fitted,
    policy: str = "ipa",
    seed: int = 0,
    interval_s: float | None = None,
) -> FleetRun:
    """The fleet replayed once in `mode`: pipeline p on trace[starts[p] : starts[p] + duration]."""
    t0 = time.perf_counter()
    grid = interval_s or min(m.pipeline.spec.adaptation.interval_s for m in fleet.members)
    pools = tuple(fleet.quota)
    driver = _Driver(fleet, {}, DECIDERS[mode], grid)
    for k, member in enumerate(fleet.members):
        p, start = member.pipeline, int(starts[member.name])
        base = PlannedPolicy(policy, p.spec, fitted, start_s=start)
        relay = _Relay(base, grid, driver.ask(member.name))
        sim = Simulator(
            p.spec,
            p.profiles,
            trace[start : start + duration],
            relay,
            history=trace[max(0, start - HISTORY_S) : start],
            seed=seed + k,
            source=p.source,
        )
        m = _Member(member.name, sim, relay)
        _watch_pods(m, pools)
        driver.members[member.name] = m
    results = driver.run()
    use = {
        pool: sum((per_second(m.units, pool, duration) for m in driver.members.values()), np.zeros(duration))
        for pool in pools
    }
    return FleetRun(
        mode, fleet.name, dict(starts), results, driver.rounds, fleet.quota, use, time.perf_counter() - t0
    )


# ---- the comparison ---------------------------------------------------------------------------------
def fleet_windows(
    trace: np.ndarray, fleet: Fleet, runs: int, duration: int, *, seed: int = 0
) -> list[dict[str, int]]:
    """Per run, a window of the test days for each pipeline, drawn at random (none across an outage), so
    the pipelines' peaks fall where they fall, not all at once."""
    n = len(fleet.members)
    starts = random_test_windows(trace, runs * n, seed=seed, window_s=duration)
    if len(starts) < runs * n:
        raise ValueError(
            f"found only {len(starts)} windows of {duration} s without an outage in the test days; want "
            f"{runs * n} ({runs} set(s) of one per pipeline): shorten --duration or ask fewer --windows"
        )
    order = np.random.default_rng(seed).permutation(len(starts))
    shuffled = [starts[i] for i in order]
    return [{m.name: shuffled[r * n + i] for i, m in enumerate(fleet.members)} for r in range(runs)]


def summarise(run: FleetRun) -> dict[str, Any]:
    """Per pipeline and overall: accuracy, SLA violations, cost; the quota's use per pool."""
    pipelines = {n: r.summary() for n, r in run.results.items()}
    sent = sum(r.sent for r in run.results.values())
    missed = sum(r.late + r.dropped for r in run.results.values())
    rounds = len(run.rounds)
    over = [rd for rd in run.rounds if _exceeds(rd.asked, run.quota)]
    still = [rd for rd in run.rounds if _exceeds(rd.planned, run.quota)]
    pools = {}
    for p, q in run.quota.items():
        use = run.use[p]
        pools[p] = {
            "quota": q,
            "use_mean": round(float(use.mean()), 2),
            "use_max": round(float(use.max()), 2),
            "asked_max": round(max((rd.asked[p] for rd in run.rounds), default=0.0), 2),
            "seconds_pods_over_quota": int((use > q + _TOL * max(1.0, q)).sum()),
        }
    return {
        "mode": run.mode,
        "starts": dict(run.starts),
        "pipelines": {
            n: {
                k: s[k]
                for k in (
                    "sent",
                    "late",
                    "dropped",
                    "sla_violation_rate",
                    "mean_accuracy",
                    "mean_cost",
                    "reconfigurations",
                    "failed_reconciles",
                )
            }
            for n, s in pipelines.items()
        },
        "sent": sent,
        "violations": missed,
        "sla_violation_rate": round(missed / sent, 5) if sent else 0.0,
        "mean_accuracy": round(float(np.mean([s["mean_accuracy"] for s in pipelines.values()])), 5),
        "cost": round(sum(s["mean_cost"] for s in pipelines.values()), 3),
        # Scored at the planned load: a plan cut below what the load needs costs less and so may score
        # more, which is why the plans that cannot carry their load are counted beside it.
        "objective_mean": round(float(np.mean([rd.objective for rd in run.rounds])), 4) if rounds else 0.0,
        "plans_short": sum(len(rd.short) for rd in run.rounds),
        "rounds": rounds,
        # The decision rounds whose plans together asked more of some pool than its quota.
        "rounds_over_quota": len(over),
        "share_over_quota": round(len(over) / rounds, 4) if rounds else 0.0,
        # ... and whose plans as decided (after the cut, at least one replica per stage) still did.
        "rounds_decided_over_quota": len(still),
        "rounds_quota_binds": sum(rd.quota_binds for rd in run.rounds),
        "max_round_spread_s": round(max((rd.spread_s for rd in run.rounds), default=0.0), 2),
        "pools": pools,
        "wall_s": round(run.wall_s, 1),
    }


def _exceeds(use: Mapping[str, float], quota: Mapping[str, float]) -> bool:
    return any(use[p] > q + _TOL * max(1.0, q) for p, q in quota.items())


def aggregate(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One mode over every window: totals, and means of the per-window means."""
    sent = sum(s["sent"] for s in summaries)
    missed = sum(s["violations"] for s in summaries)
    rounds = sum(s["rounds"] for s in summaries)
    over = sum(s["rounds_over_quota"] for s in summaries)
    names = list(summaries[0]["pipelines"])
    per = {}
    for n in names:
        rows = [s["pipelines"][n] for s in summaries]
        n_sent = sum(r["sent"] for r in rows)
        per[n] = {
            "sent": n_sent,
            "violations": sum(r["late"] + r["dropped"] for r in rows),
            "sla_violation_rate": round(sum(r["late"] + r["dropped"] for r in rows) / n_sent, 5)
            if n_sent
            else 0.0,
            "mean_accuracy": round(float(np.mean([r["mean_accuracy"] for r in rows])), 5),
            "mean_cost": round(float(np.mean([r["mean_cost"] for r in rows])), 3),
        }
    pools = {
        p: {
            "quota": summaries[0]["pools"][p]["quota"],
            "use_mean": round(float(np.mean([s["pools"][p]["use_mean"] for s in summaries])), 2),
            "use_max": max(s["pools"][p]["use_max"] for s in summaries),
            "asked_max": max(s["pools"][p]["asked_max"] for s in summaries),
            "seconds_pods_over_quota": sum(s["pools"][p]["seconds_pods_over_quota"] for s in summaries),
        }
        for p in summaries[0]["pools"]
    }
    return {
        "windows": len(summaries),
        "pipelines": per,
        "sent": sent,
        "violations": missed,
        "sla_violation_rate": round(missed / sent, 5) if sent else 0.0,
        "mean_accuracy": round(float(np.mean([s["mean_accuracy"] for s in summaries])), 5),
        "cost": round(float(np.mean([s["cost"] for s in summaries])), 3),
        "objective_mean": round(float(np.mean([s["objective_mean"] for s in summaries])), 4),
        "plans_short": sum(s["plans_short"] for s in summaries),
        "rounds": rounds,
        "rounds_over_quota": over,
        "share_over_quota": round(over / rounds, 4) if rounds else 0.0,
        "rounds_decided_over_quota": sum(s["rounds_decided_over_quota"] for s in summaries),
        "rounds_quota_binds": sum(s["rounds_quota_binds"] for s in summaries),
        "pools": pools,
    }


def compare(
    fleet: Fleet,
    trace: np.ndarray,
    *,
    fitted,
    windows: int = 1,
    duration: int = 1200,
    seed: int = 0,
    policy: str = "ipa",
    interval_s: float | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Joint against independent planning of `fleet` on `windows` sets of windows of the trace: per run
    and over all, per pipeline and for the fleet. With `out`, a plot per run is written there."""
    runs: list[dict[str, Any]] = []
    for k, starts in enumerate(fleet_windows(trace, fleet, windows, duration, seed=seed)):
        pair: dict[Mode, FleetRun] = {}
        for mode in MODES:
            if progress:
                progress(f"{fleet.name}: window set {k + 1}/{windows}, {mode}")
            pair[mode] = run_fleet(
                fleet,
                trace,
                starts,
                duration,
                mode,
                fitted=fitted,
                policy=policy,
                seed=seed,
                interval_s=interval_s,
            )
        if out is not None:
            plot_run(pair, out / f"fleet-{fleet.name}-{k + 1}.png")
        runs.append({mode: r.summary() for mode, r in pair.items()})
    overall = {mode: aggregate([r[mode] for r in runs]) for mode in MODES}
    j, i = overall["joint"], overall["independent"]
    return {
        "fleet": fleet.name,
        "quota": fleet.quota,
        "pipelines": fleet.pipeline_names,
        "weights": {m.name: m.weight for m in fleet.members},
        "windows": windows,
        "duration_s": duration,
        "policy": policy,
        "seed": seed,
        "overall": overall,
        "joint_minus_independent": {
            "mean_accuracy": round(j["mean_accuracy"] - i["mean_accuracy"], 5),
            "sla_violation_rate": round(j["sla_violation_rate"] - i["sla_violation_rate"], 5),
            "cost": round(j["cost"] - i["cost"], 3),
            "objective_mean": round(j["objective_mean"] - i["objective_mean"], 4),
        },
        "runs": runs,
    }


def plot_run(pair: Mapping[Mode, FleetRun], path: Path) -> Path:
    """Accuracy (mean over the pipelines), cost (sum) and the quota's use over time, per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    any_run = next(iter(pair.values()))
    pools = list(any_run.quota)
    fig, axes = plt.subplots(2 + len(pools), 1, figsize=(12, 3 + 2.2 * len(pools) + 4), sharex=True)
    for k, (mode, run) in enumerate(pair.items()):
        style = {"color": f"C{k}", "lw": 1.1, "label": mode}
        t = np.arange(len(next(iter(run.results.values())).per_second["accuracy"]))
        axes[0].plot(t, np.mean([r.per_second["accuracy"] for r in run.results.values()], axis=0), **style)
        axes[1].plot(t, np.sum([r.per_second["cost"] for r in run.results.values()], axis=0), **style)
        for ax, p in zip(axes[2:], pools, strict=True):
            ax.plot(t, run.use[p], **style)
            rounds = run.rounds
            ax.step(
                [rd.second for rd in rounds],
                [rd.asked[p] for rd in rounds],
                where="post",
                ls=":",
                color=f"C{k}",
                lw=0.9,
                label=f"{mode}: asked",
            )
    for ax, p in zip(axes[2:], pools, strict=True):
        ax.axhline(any_run.quota[p], color="red", ls="--", lw=1, label="quota")
        ax.set_ylabel(f"{p} held")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("accuracy (mean PAS)")
    axes[1].set_ylabel("cost (sum)")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("second of each pipeline's window")
    fig.suptitle(f"fleet {any_run.fleet}: joint vs independent planning")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def markdown(report: Mapping[str, Any]) -> str:
    """The comparison as a short markdown table: overall, then per pipeline."""
    j, i = report["overall"]["joint"], report["overall"]["independent"]
    lines = [
        f"# Fleet {report['fleet']}: joint vs independent planning",
        "",
        f"{report['windows']} set(s) of windows of {report['duration_s']} s, quota "
        + ", ".join(f"{p} {q:g}" for p, q in report["quota"].items()),
        "",
        "| | joint | independent, cut to fit |",
        "| --- | ---: | ---: |",
        f"| SLA violations | {j['sla_violation_rate']:.2%} ({j['violations']}) | "
        f"{i['sla_violation_rate']:.2%} ({i['violations']}) |",
        f"| accuracy (mean PAS) | {j['mean_accuracy']:.4f} | {i['mean_accuracy']:.4f} |",
        f"| cost (sum, mean over time) | {j['cost']:.2f} | {i['cost']:.2f} |",
        f"| objective of the plans decided (weighted sum, mean over rounds) | {j['objective_mean']:.3f} | "
        f"{i['objective_mean']:.3f} |",
        f"| plans decided that cannot carry their load (pipeline x round) | {j['plans_short']} | "
        f"{i['plans_short']} |",
        f"| decision rounds over the quota | {j['rounds_over_quota']}/{j['rounds']} | "
        f"{i['rounds_over_quota']}/{i['rounds']} ({i['share_over_quota']:.1%}) |",
        f"| ... still over once cut (at least one replica per stage) | {j['rounds_decided_over_quota']} | "
        f"{i['rounds_decided_over_quota']} |",
        f"| rounds where the quota binds (joint) | {j['rounds_quota_binds']}/{j['rounds']} | |",
    ]
    for p in report["quota"]:
        a, b = j["pools"][p], i["pools"][p]
        lines.append(
            f"| {p}: held mean / max, asked max | {a['use_mean']:g} / {a['use_max']:g}, {a['asked_max']:g} "
            f"| {b['use_mean']:g} / {b['use_max']:g}, {b['asked_max']:g} |"
        )
        lines.append(
            f"| {p}: seconds the pods held more than the quota | {j['pools'][p]['seconds_pods_over_quota']} "
            f"| {i['pools'][p]['seconds_pods_over_quota']} |"
        )
    lines += [
        "",
        "| pipeline | violations joint | independent | accuracy joint | independent | cost joint | "
        "independent |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in report["pipelines"]:
        a, b = j["pipelines"][n], i["pipelines"][n]
        lines.append(
            f"| {n} | {a['sla_violation_rate']:.2%} | {b['sla_violation_rate']:.2%} "
            f"| {a['mean_accuracy']:.4f} | {b['mean_accuracy']:.4f} "
            f"| {a['mean_cost']:.2f} | {b['mean_cost']:.2f} |"
        )
    return "\n".join(lines) + "\n"
