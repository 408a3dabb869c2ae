"""One policy on real servers: a window of the trace replayed as real requests, with their arrival
times, through the router to MLServer replicas on this machine (`LocalCluster`), while the loop
operator's code (`control_loop.run_loop`) forecasts from a real Prometheus scraping those replicas,
plans and reconciles them. Measured as the simulator measures (a `SimResult`), so the two compare
field by field.

What the loop reads: for the seconds before the replay started, the trace (as the simulator's history);
from then on, Prometheus (MLServer's request counter on the first stage, the default load query)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import control
from ..cluster.desired import ANN_SHAPE, ANN_VARIANT, LABEL_STAGE
from ..control_loop import run_loop
from ..forecasting.base import FittedForecaster
from ..forecasting.sources import LoadSourceError, PrometheusSource
from ..pipelines import Pipeline
from ..simulation.controllers import trace_time
from ..simulation.results import DecisionLog, SimResult
from ..simulation.simulator import arrival_times, per_second_p99, stage_percentiles_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveRun:
    """A policy's measured run: the simulator's figures, plus what only real servers show."""

    result: SimResult
    startup_s: list[float]  # each replica, from its process starting to its model answering ready
    oversubscribed: bool  # the replicas asked for more cores than the machine has
    loop: dict  # the adaptation loop's own account: decisions, changes, ticks skipped and why

    @property
    def stage_latency_ms(self) -> dict[str, dict]:
        """Per stage: one hop (the router's pick to the answer) at p50, p99 and HOP_LEVELS."""
        return self.result.stage_latency_ms

    def summary(self) -> dict:
        starts = sorted(self.startup_s)
        return {
            **self.result.summary(),
            "stage_latency_ms": self.stage_latency_ms,
            "startup_s": {
                "n": len(starts),
                "median": round(float(np.median(starts)), 2) if starts else None,
                "max": round(starts[-1], 2) if starts else None,
            },
            "oversubscribed": self.oversubscribed,
            "loop": self.loop,
        }


@dataclass(frozen=True)
class LiveWindow:
    counts: np.ndarray  # requests per second to replay (damped)
    history: np.ndarray  # the seconds before it, what the forecaster sees first
    start_s: int  # the trace second the window starts at (the forecaster's clock)


class Prometheus:
    """A real Prometheus scraping the targets a file_sd file lists, every second, on a free port."""

    def __init__(self, binary: str, root: Path, targets_file: Path):
        from ..serving.server import free_port

        self.root, self.port = root, free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: ipa-live\n"
            f"    file_sd_configs: [{{files: ['{targets_file}'], refresh_interval: 1s}}]\n"
        )
        self.log_path = root / "prometheus.log"
        with open(self.log_path, "w") as fh:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)  # polling a starting server
        raise RuntimeError(f"Prometheus at {self.url} was not ready within {timeout_s:g} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _Sampler:
    """Once a second: the cost of every replica that exists (starting ones too, as the simulator counts
    them) and the accuracy of what serves (per stage, the variant most ready replicas run)."""

    def __init__(self, pipeline: Pipeline, cluster, clock: Callable[[], float]):
        self.spec, self.cluster, self.clock = pipeline.spec, cluster, clock
        self.cost: list[float] = []
        self.accuracy: list[float] = []
        self.oversubscribed = False  # at any second: the replicas asked for more cores than there are

    def sample(self) -> None:
        now = self.clock()
        cost, scores = 0.0, []
        self.oversubscribed = self.oversubscribed or bool(self.cluster.oversubscribed)
        pods = self.cluster.pods_now()
        for stage in self.spec.stages:
            mine = [p for p in pods if p.source["metadata"]["labels"].get(LABEL_STAGE) == stage.name]
            ready: dict[str, int] = {}
            for pod in mine:
                ann = pod.source["metadata"]["annotations"]
                variant = next((v for v in stage.variants if v.name == ann[ANN_VARIANT]), None)
                if variant is None:
                    continue
                hardware, resources, dtype = ann[ANN_SHAPE].split(" ")
                shape = next(
                    (s for s in variant.shapes if (s.hardware, s.resources.key) == (hardware, resources)),
                    None,
                )
                if shape is not None:
                    cost += self.spec.replica_cost(shape.resources)
                if pod.ready_at <= now:
                    ready[variant.name] = ready.get(variant.name, 0) + 1
            if not ready:
                scores.append(0.0)
                continue
            top = max(ready, key=lambda name: ready[name])
            scores.append(next(v.accuracy for v in stage.variants if v.name == top) / 100)
        self.cost.append(cost)
        self.accuracy.append(math.prod(scores))


def run_policy(
    pipeline: Pipeline,
    window: LiveWindow,
    policy: str,
    *,
    fitted: FittedForecaster,
    tracking_uri: str,
    prometheus_binary: str,
    workdir: Path | None = None,
    seed: int = 0,
    say: Callable[[str], None] = lambda message: None,
) -> LiveRun:
    """Replay `window` under `policy` on real replicas; the replicas are stopped before it returns."""
    from ..cluster.local_backend import LocalCluster

    spec = pipeline.spec
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="ipa-live-")
    root = Path(workdir or tmp.name)  # type: ignore[union-attr]
    targets = root / "targets.json"
    decisions = DecisionLog()
    lock = threading.Lock()

    def record(rec: control.DecisionRecord) -> None:
        with lock:
            if rec.extra.get("fast_path"):  # a scale-up between decisions: no forecast was planned for
                if rec.reconcile is not None and rec.reconcile.ok:
                    decisions.burst(rec.decision)
            else:
                decisions.decided(rec.decision)
            if rec.reconcile is not None:
                decisions.reconciled(time.monotonic() - t0, rec.decision, rec.reconcile)

    cluster = LocalCluster(tracking_uri=tracking_uri)
    prom = None
    stop = threading.Event()
    adapter: threading.Thread | None = None
    try:
        cluster.prometheus_targets(targets)
        prom = Prometheus(prometheus_binary, root / "prometheus", targets)
        prom.wait_ready()
        source = PrometheusSource(prom.url).for_pipeline(spec)
        t0 = time.monotonic()  # reset when the replay starts
        started = [False]

        def read_rates(window_s: int) -> np.ndarray:
            elapsed = int(time.monotonic() - t0) if started[0] else 0
            seen = np.zeros(0)
            if elapsed >= 3:  # Prometheus needs two scrapes of the replay before its rate() answers
                seen = source.rates(end=time.time(), window_s=elapsed)
            past = np.concatenate([window.history, seen])
            return past[-window_s:]

        def trace_now() -> dt.datetime:
            elapsed = time.monotonic() - t0 if started[0] else 0.0
            return trace_time(window.start_s + elapsed)

        loop_args: dict[str, Any] = dict(
            read_rates=read_rates, fitted=fitted, backend=cluster, record=record, policy=policy, now=trace_now
        )
        say(f"{policy}: the first plan, its replicas starting (the simulator starts with them ready)")
        first = run_loop(str(pipeline.source), duration_s=0, load=lambda at: pipeline, **loop_args)
        if first.skipped or first.failed_reconciles:
            raise RuntimeError(f"{policy}: the first plan was not applied: {'; '.join(first.skipped)}")
        # Every first replica ready before the replay starts, as the simulator's warm start.
        deadline = time.monotonic() + 300
        while not all(cluster.endpoints(s.name, spec.name) for s in spec.stages):
            if time.monotonic() > deadline:
                logs = "\n".join(srv.log_tail(1500) for srv in cluster.servers().values())
                raise RuntimeError(
                    f"the first plan's replicas were not ready within 300 s; their logs end:\n{logs}"
                )
            time.sleep(0.25)  # polling the replicas' readiness
        with lock:
            decisions.reconfigurations, decisions.plans = 0, decisions.plans[-1:]
            decisions.solver_s = 0.0
        seconds = len(window.counts)
        arrivals = arrival_times(window.counts, np.random.default_rng(seed))
        sampler = _Sampler(pipeline, cluster, time.monotonic)
        planned = np.zeros(seconds)
        say(f"{policy}: replaying {len(arrivals)} requests over {seconds} s")
        t0 = time.monotonic()
        started[0] = True
        interval = spec.adaptation.interval_s

        def _sleep(seconds_: float) -> None:
            # Cut short when the replay ends, but not a rollout wait then (it would poll without pause).
            if stop.is_set():
                time.sleep(seconds_)
            else:
                stop.wait(seconds_)

        loop_summary: dict = {}
        failure: list[BaseException] = []

        def adapt() -> None:
            try:
                adapt_until_stopped()
            except BaseException as exc:  # re-raised by the main thread once the replay is over
                failure.append(exc)

        def adapt_until_stopped() -> None:
            if stop.wait(interval):  # the first decision after one interval, as the simulator's
                return
            loop_summary.update(
                run_loop(
                    str(pipeline.source),
                    duration_s=max(0.0, seconds - interval),
                    load=lambda at: pipeline,
                    sleep=_sleep,
                    **loop_args,
                ).to_dict()
            )

        adapter = threading.Thread(target=adapt, name="ipa-live-loop", daemon=True)
        adapter.start()
        results = asyncio.run(
            _replay(cluster, spec, arrivals, t0, seconds, sampler, planned, decisions, lock, say, policy)
        )
        wall = time.monotonic() - t0
        stop.set()
        adapter.join()  # its last reconcile, if any, ends before the cluster closes
        adapter = None
        if failure:
            raise RuntimeError(f"{policy}: the adaptation loop failed: {failure[0]!r}") from failure[0]
        startup = _startups(cluster.events)
        oversubscribed = sampler.oversubscribed
    finally:
        stop.set()
        if adapter is not None:
            adapter.join()
        cluster.close()
        if prom is not None:
            prom.stop()
        if tmp is not None:
            tmp.cleanup()
    latency = np.full(len(arrivals), np.nan)
    late = dropped = 0
    for i, r in enumerate(results):
        if r is not None and r.ok:
            latency[i] = r.latency_s
            late += r.latency_s > spec.sla_s
        else:
            dropped += 1  # dropped, failed, or never answered: a violation, as a drop is in the simulator
    done = ~np.isnan(latency)
    n = min(len(sampler.cost), seconds)
    hops: dict[str, list[float]] = {st.name: [] for st in spec.stages}
    for r in results:
        for name, seconds_ in zip(spec.stage_names, getattr(r, "stage_latency_s", ()) or (), strict=False):
            hops[name].append(seconds_)
    result = SimResult(
        policy=policy,
        seconds=seconds,
        sent=len(arrivals),
        completed=int(done.sum()),
        late=int(late),
        dropped=int(dropped),
        latencies=latency[done],
        per_second={
            "load": window.counts.copy(),
            "planned": planned,
            "p99_s": per_second_p99(arrivals, latency, seconds),
            "accuracy": np.asarray(sampler.accuracy[:n]),
            "cost": np.asarray(sampler.cost[:n]),
        },
        reconfigurations=decisions.reconfigurations,
        bursts=decisions.bursts,
        failed_reconciles=decisions.failed_reconciles,
        solver_s=decisions.solver_s,
        wall_s=wall,
        sla_s=spec.sla_s,
        plans=decisions.plans,
        stage_latency_ms=stage_percentiles_ms(hops),
    )
    return LiveRun(result, startup, oversubscribed, loop_summary)


def _startups(events) -> list[float]:
    """Seconds from each server's start to its ready, from the cluster's event log."""
    started = {e.uid: e.t for e in events if e.kind == "start"}
    return [e.t - started[e.uid] for e in events if e.kind == "ready" and e.uid in started]


async def _replay(cluster, spec, arrivals, t0, seconds, sampler, planned, decisions, lock, say, policy):
    """Send each request at its arrival time and wait for every answer; sample cost, accuracy and the
    planned load in the middle of every second, as the simulator does."""
    from ..serving.router import Router

    results: list = [None] * len(arrivals)

    async def sample_every_second() -> None:
        for k in range(seconds):
            await _until(t0 + k + 0.5)
            sampler.sample()
            with lock:
                planned[k] = decisions.planned_now
            if k and k % 60 == 0:
                say(f"{policy}: {k} s of {seconds}")

    async def one(i: int) -> None:
        # Latency from the scheduled arrival, not from when the event loop got round to sending it.
        results[i] = await router.send(i, arrived=t0 + float(arrivals[i]))

    async with Router(cluster, spec) as router:
        sampling = asyncio.create_task(sample_every_second())
        tasks = []
        for i, at in enumerate(arrivals):
            await _until(t0 + float(at))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(sampling, *tasks)
    return results


async def _until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def quiet_harness() -> None:
    """The harness (router, loop, forecaster) shares the machine's cores with the replicas it measures,
    which in a cluster it would not: keep the forecaster's torch on one thread, so a forecast cannot take
    both cores from the replicas, and hand the GIL between the loop's thread and the router's event loop
    every 0.5 ms instead of 5, so a decision being computed does not hold requests in the router."""
    import sys

    import torch

    torch.set_num_threads(1)
    sys.setswitchinterval(0.0005)


def window_of(trace: np.ndarray, start: int, duration: int, history_s: int = 6 * 3600) -> LiveWindow:
    return LiveWindow(trace[start : start + duration].copy(), trace[max(0, start - history_s) : start], start)


__all__ = ["LiveWindow", "LoadSourceError", "run_policy", "window_of"]
