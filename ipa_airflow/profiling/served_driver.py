"""The served profiling driver: the MLServer processes (one per batch size, pinned to the replica's cores)
and the closed-loop client that drives them. What a served profile is, and the pure parts of measuring
one, are in served.py."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry.keys import ProfileKey
from .served import (
    DEFAULT_BATCH_TIME_S,
    ServedCell,
    ServedError,
    ServerCounters,
    run_rounds,
    served_profile,
    served_runtime,
    split_cores,
)
from .timing import Timing, TimingSettings


# ---- the driver: servers, the closed-loop client ------------------------------------------------------
class ClosedLoopClient:
    """Sends rounds of concurrent requests over kept-alive connections: one event loop, one httpx client."""

    def __init__(self, url: str, body: bytes, *, timeout_s: float = 60.0):
        import httpx

        self.url = url
        self.body = body
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            timeout=timeout_s, limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)
        )

    async def _one(self) -> float:
        t0 = time.perf_counter()
        r = await self.client.post(self.url, content=self.body, headers={"Content-Type": "application/json"})
        ms = (time.perf_counter() - t0) * 1000.0
        if r.status_code != 200:
            raise ServedError(f"the model server answered {r.status_code} to {self.url}: {r.text[:300]}")
        return ms

    async def _round(self, n: int) -> list[float]:
        return list(await asyncio.gather(*(self._one() for _ in range(n))))

    def round(self, n: int) -> list[float]:
        """`n` requests sent together; each one's latency in ms."""
        return self.loop.run_until_complete(self._round(n))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def server_python(mlserver: Path) -> Path:
    """The Python of the environment `mlserver` belongs to: its script's interpreter line."""
    try:
        first = mlserver.read_bytes()[:400].split(b"\n", 1)[0].decode()
    except OSError:
        first = ""
    return Path(first[2:].strip().split()[0]) if first.startswith("#!") else mlserver.parent / "python"


_VERSIONS = """
import json, platform
from importlib.metadata import PackageNotFoundError, version
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "none"
names = {"mlserver": "mlserver", "mlserver_mlflow": "mlserver-mlflow", "mlflow": "mlflow", "torch": "torch"}
print(json.dumps({**{k: v(n) for k, n in names.items()}, "python": platform.python_version()}))
"""


def server_environment(mlserver: Path) -> dict[str, str]:
    """Versions of the serving environment's packages (read from its metadata, nothing imported)."""
    import json

    python = server_python(mlserver)
    try:
        out = subprocess.run(
            [str(python), "-c", _VERSIONS], capture_output=True, text=True, timeout=60, check=True
        )
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise RuntimeError(
            f"cannot read the versions of the serving environment with {python}: {exc}; "
            "is IPA_MLSERVER the `mlserver` of a virtual environment?"
        ) from None


def group_peak_rss_mb(pgid: int) -> float | None:
    """The resident-set high-water marks (VmHWM) of every process in process group `pgid`, summed: the
    server and its inference worker. None where /proc cannot tell."""
    total_kb, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # after the name: state, ppid, pgrp
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, flags=re.M)
        if m:
            total_kb, found = total_kb + int(m[1]), True
    return total_kb / 1024.0 if found else None


@dataclass
class ServedRun:
    """A served sweep: the cells and the SweepResult `job.profile_and_register` files."""

    result: Any  # sweep.SweepResult
    cells: list[ServedCell] = field(default_factory=list)


def profile_served(
    model_ref: str,
    name: str,
    request,
    *,
    tracking_uri: str,
    batch_time_s: float = DEFAULT_BATCH_TIME_S,
    settings: TimingSettings | None = None,
    on_cell: Callable[[Timing], None] | None = None,
    say: Callable[[str], None] = lambda message: None,
    mlserver: Path | None = None,
    ready_timeout_s: float = 300.0,
) -> ServedRun:
    """Measure registered version `model_ref` through MLServer at each of `request.batch_sizes` (a
    sweep.SweepRequest: its threads are the server's cores). One server per batch size, stopped after
    it; the client runs on the cores the server does not (`split_cores`)."""
    from ..serving.environment import mlserver_executable
    from ..serving.server import ModelServer
    from .sweep import SweepResult
    from .torch_runner import environment

    t0 = time.perf_counter()
    settings = settings or TimingSettings()
    mlserver = mlserver or mlserver_executable()
    server_cores, client_cores = split_cores(request.threads, os.sched_getaffinity(0))
    env = {
        **environment("cpu", request.threads, "fp32"),  # the machine's CPU name, device, threads
        **server_environment(mlserver),  # the server's torch and python, not ours
        "cores": list(server_cores),
    }
    model_name = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "model"
    server_env = {
        "MLSERVER_MODEL_NAME": model_name,
        "MLSERVER_MODEL_URI": model_ref,
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime",
        "MLSERVER_MODEL_MAX_BATCH_TIME": f"{batch_time_s:.4f}",
    }
    cells: list[ServedCell] = []
    inputs: list[str] = []
    mine = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, client_cores)  # the client off the server's cores where there are others
        for b in sorted(request.batch_sizes):
            say(
                f"batch {b}: starting MLServer for {model_ref} on core(s) {','.join(map(str, server_cores))} "
                f"(max batch {b}, batch time {batch_time_s:g} s)"
            )
            server = ModelServer(
                {**server_env, "MLSERVER_MODEL_MAX_BATCH_SIZE": str(b)},
                tracking_uri=tracking_uri,
                cores=server_cores,
                mlserver=mlserver,
            )
            with server:
                cell = _measure_batch(server, b, settings, ready_timeout_s, say, inputs)
            cells.append(cell)
            t = cell.timing
            say(
                f"batch {b}: p50 {t.p50_ms:.1f} ms, p99 {t.p99_ms:.1f} ms, {cell.throughput_rps:.1f} req/s "
                f"over {cell.rounds.rounds} rounds; server {_ms(cell.server.mean_ms)} a request, mean batch "
                f"formed {_n(cell.server.mean_batch)}"
            )
            if cell.warning():
                say(f"warning: {cell.warning()}")
            if on_cell:
                on_cell(t)
    finally:
        os.sched_setaffinity(0, mine)
    profile = served_profile(
        cells,
        model=name,
        model_ref=model_ref,
        hardware=request.hardware,
        threads=request.threads,
        environment=env,
        batch_time_s=batch_time_s,
        server_cores=server_cores,
        client_cores=client_cores,
        input_desc=inputs[-1] if inputs else "",
    )
    key = ProfileKey(model_ref, request.hardware, "fp32", profile.resources, served_runtime(env))
    result = SweepResult(profile, key, tuple(c.timing for c in cells), time.perf_counter() - t0)
    return ServedRun(result, cells)


def _measure_batch(
    server, b: int, settings: TimingSettings, ready_timeout_s: float, say, inputs: list[str]
) -> ServedCell:
    """One batch size on a started server: wait for it, warm it up, time rounds of `b` requests, read its
    counters around the timed rounds. `inputs` gets what a request carries."""
    from ..serving import v2

    ready_s = server.wait_ready(timeout_s=ready_timeout_s)
    inp = v2.model_input(server.url, server.name)
    inputs.append(f"V2 JSON, one row of {list(inp.shape)} {inp.datatype} per request")
    url = f"{server.url}/v2/models/{server.name}/infer"
    client = ClosedLoopClient(url, v2.request_body(inp, inp.sample(1)))
    say(f"batch {b}: ready in {ready_s:.1f} s; {b} concurrent request(s) a round")
    marks: list[ServerCounters] = []
    try:
        rounds = run_rounds(
            lambda: client.round(b),
            settings,
            after_warmup=lambda: marks.append(ServerCounters.read(server.metrics_text(), server.name)),
        )
    finally:
        client.close()
    delta = ServerCounters.read(server.metrics_text(), server.name) - marks[0]
    peak = group_peak_rss_mb(server.proc.pid) if server.proc else None
    return ServedCell(b, rounds, delta, ready_s, peak)


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} ms"


def _n(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"
