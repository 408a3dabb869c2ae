"""Served profiling: a registered model version measured through the real model server, as Triton Model
Analyzer measures Triton with perf_analyzer.

For one shape (the replica's cores, pinned) and each batch size b of the sweep, an MLServer with the MLflow
runtime is started with MLSERVER_MODEL_MAX_BATCH_SIZE=b (the env a Deployment renders) and driven in a
closed loop: b concurrent one-row V2 requests at a time, so MLServer's adaptive batching forms batches of b,
for as many rounds as the in-process sweep times calls (`TimingSettings`). Recorded per b:
- client side: each request's latency (p50/p95/p99/mean: what a request served in a batch of b costs end
  to end: HTTP, JSON, batching, inference) and the throughput (requests per second of the timed rounds);
- server side, from the server's own /metrics over the timed rounds: the mean time MLServer spent on a
  request (model_infer_request_duration sum/count) and the batches it formed (parallel_request_queue_count:
  one per batch sent to the inference worker), so the mean batch actually served, with a warning when it
  falls short of b.

The result is an ordinary `Profile` (the planner can read it) whose provenance says `method: served`, with
the MLServer version, batch time and cores. Profiles timed with a bare `model(x)` call (`sweep.py`) are
`in-process`: every profile without `method: served` is one, as were all before this module.

Which the planner uses when both exist for a model version and shape: the in-process one, as before. A
served profile is filed beside it (its staleness key's runtime is `mlserver==V,torch==V`, its run has the
param `method` and the tag `ipa.profile.method` = served, its model-version tags go under
`ipa.profile_served.`, its profile id ends in '/served'), never in its place; a reader asks for it by
name (`MlflowProfileRegistry.latest(..., method="served")`, a shape's `profile:` naming the id).
Served profiles are what a pipeline of real MLServer replicas should be planned and simulated on: on the
2-core test machine, with 3x64x64 inputs, a one-core replica serves 2-5x fewer requests per second than
the bare model call, most of it V2 JSON decoding (about 250 kB and 5 ms a one-row request) and the
hand-off to the inference worker, which batching does not amortise. The processes and the client that
drive them are in served_driver.py.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..profiles import BatchPoint, Profile, ProfileError, ProfileSet
from ..registry.keys import runtime_of
from .timing import Timing, TimingSettings

Method = Literal["in-process", "served"]
IN_PROCESS: Method = "in-process"
SERVED: Method = "served"
METHODS: tuple[Method, ...] = (IN_PROCESS, SERVED)
METHOD_TAG = "ipa.profile.method"
SERVED_TAG_PREFIX = "ipa.profile_served"  # model-version tags: not 'ipa.profile.', which the in-process own
# How long MLServer waits to fill a batch. Generous: a closed loop sends the b requests together, and the
# batcher sends a batch as soon as it is full, so the wait only shows when requests are missing.
DEFAULT_BATCH_TIME_S = 0.05
SHORT_BATCH_SHARE = 0.9  # a mean batch served below this share of b is reported: batching did not fill


class ServedError(RuntimeError):
    """The model server answered a request with an error; the message carries its answer."""


# ---- what a profile is ----------------------------------------------------------------------------------
def profile_method(profile: Profile) -> Method:
    """'served' for a profile measured through the model server, else 'in-process' (every profile filed
    before served profiling existed, and every reference import)."""
    return SERVED if profile.provenance.get("method") == SERVED else IN_PROCESS


def served_runtime(environment: Mapping[str, Any]) -> str:
    """The runtime part of a served profile's staleness key: the server's release and its torch's."""
    return f"mlserver=={environment.get('mlserver', 'unknown')},{runtime_of(environment)}"


def check_served_args(*, zoo: str | None, device: str, dtype: str) -> None:
    """Refuse what a served profile cannot be, before anything starts."""
    if zoo:
        raise ValueError(
            "--served measures a registered MLflow model version through MLServer: give --model-uri "
            "models:/NAME/VERSION (a zoo model is no MLflow model the server can load)"
        )
    if device == "cuda":
        raise ValueError(
            "--served runs the model server on CPU cores (--threads of them, pinned); drop --device cuda "
            "(serving on a GPU is not measured yet)"
        )
    if dtype != "fp32":
        raise ValueError(
            f"--served measures the model as it was logged (MLServer does not cast it); drop --dtype {dtype}"
        )


def split_cores(threads: int, available: Iterable[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the server's cores, the client's): the server gets the last `threads` of the cores this process may
    use, the load-generating client the rest (all of them when none is left, sharing the server's)."""
    cores = sorted(set(available))
    if threads > len(cores):
        raise ValueError(
            f"--threads {threads} asks for {threads} cores for the server, but this process may use "
            f"{len(cores)} ({','.join(map(str, cores))}); give --threads {len(cores)} or fewer"
        )
    server = tuple(cores[len(cores) - threads :])
    client = tuple(cores[: len(cores) - threads]) or tuple(cores)
    return server, client


# ---- the server's /metrics ------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` in a Prometheus text exposition whose labels include `labels`
    (0 when there is none: a counter MLServer has not created yet has counted nothing)."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m[1] != name:
            continue
        found = dict(_LABEL.findall(m[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m[3])
    return total


@dataclass(frozen=True)
class ServerCounters:
    """MLServer's counters for one model: requests it answered, the seconds it spent on them, the batches
    its adaptive batcher sent to the inference worker."""

    requests: float = 0.0
    seconds: float = 0.0
    timed: float = 0.0  # requests in `seconds` (model_infer_request_duration_count)
    batches: float = 0.0

    @classmethod
    def read(cls, text: str, model: str) -> ServerCounters:
        return cls(
            requests=metric_value(text, "model_infer_request_success_total", model=model),
            seconds=metric_value(text, "model_infer_request_duration_sum", model=model),
            timed=metric_value(text, "model_infer_request_duration_count", model=model),
            # one worker per server (IMAGE_ENV), one model: every batch in it is this model's
            batches=metric_value(text, "parallel_request_queue_count"),
        )

    def __sub__(self, before: ServerCounters) -> ServerCounters:
        return ServerCounters(
            self.requests - before.requests,
            self.seconds - before.seconds,
            self.timed - before.timed,
            self.batches - before.batches,
        )

    @property
    def mean_ms(self) -> float | None:
        return self.seconds / self.timed * 1000.0 if self.timed > 0 else None

    @property
    def mean_batch(self) -> float | None:
        return self.requests / self.batches if self.batches > 0 else None


# ---- one batch size: rounds of b concurrent requests ------------------------------------------------------
@dataclass(frozen=True)
class Rounds:
    warmup: int  # rounds before timing
    latencies_ms: tuple[float, ...]  # every request of the timed rounds, at the client
    rounds: int
    seconds: float  # wall time of the timed rounds


def run_rounds(
    one_round: Callable[[], Sequence[float]],
    settings: TimingSettings,
    *,
    clock: Callable[[], float] = time.perf_counter,
    after_warmup: Callable[[], None] = lambda: None,
) -> Rounds:
    """Warm up, then time rounds, by the rules `timing.measure` times calls with: warm-up until the last
    `min_warmup` rounds vary by less than `settle_cv`; then rounds until `min_iters` of them and
    `min_seconds` are spent, at most `max_iters`, and no longer than `max_seconds` once 5 are in. No
    second pass for a noisy cell: a server shared with its client is noisy by nature, and the spread is
    what is recorded. `after_warmup` runs between the two (the server's counters are read there)."""
    warm: list[float] = []
    while len(warm) < settings.max_warmup:
        t0 = clock()
        one_round()
        warm.append(clock() - t0)
        tail = warm[-settings.min_warmup :]
        if len(warm) >= settings.min_warmup and np.std(tail) / np.mean(tail) < settings.settle_cv:
            break
    after_warmup()
    latencies: list[float] = []
    rounds = 0
    start = clock()
    while rounds < settings.max_iters:
        latencies += one_round()
        rounds += 1
        spent = clock() - start
        if rounds >= settings.min_iters and spent >= settings.min_seconds:
            break
        if spent >= settings.max_seconds and rounds >= min(5, settings.min_iters):
            break
    return Rounds(len(warm), tuple(latencies), rounds, clock() - start)


@dataclass(frozen=True)
class ServedCell:
    """One batch size measured through the server."""

    batch: int
    rounds: Rounds
    server: ServerCounters  # over the timed rounds
    ready_s: float  # the server's start-up: process start to the model's readiness
    peak_memory_mb: float | None = None

    @property
    def throughput_rps(self) -> float:
        return len(self.rounds.latencies_ms) / self.rounds.seconds

    @property
    def timing(self) -> Timing:
        """The client's latencies as a `Timing` (what progress callbacks and summaries take)."""
        return Timing(self.batch, self.rounds.latencies_ms, self.rounds.warmup)

    def point(self) -> BatchPoint:
        t = self.timing
        return BatchPoint(
            self.batch,
            t.p50_ms,
            t.p95_ms,
            t.p99_ms,
            t.mean_ms,
            self.throughput_rps,
            cv=round(t.cv, 5),
            peak_memory_mb=None if self.peak_memory_mb is None else round(self.peak_memory_mb, 1),
        )

    def warning(self) -> str | None:
        """Said when MLServer did not form batches of b: the profile's batch b is then smaller batches."""
        served = self.server.mean_batch
        if self.batch == 1 or served is None or served >= SHORT_BATCH_SHARE * self.batch:
            return None
        return (
            f"batch {self.batch}: MLServer formed batches of {served:.2f} requests on average, not "
            f"{self.batch}: the requests did not arrive within the batch time; the latency of batch "
            f"{self.batch} is that of smaller batches (raise --batch-time)"
        )


def served_profile(
    cells: Sequence[ServedCell],
    *,
    model: str,
    model_ref: str,
    hardware: str,
    threads: int,
    environment: Mapping[str, Any],
    batch_time_s: float,
    server_cores: Sequence[int],
    client_cores: Sequence[int],
    input_desc: str,
) -> Profile:
    """The Profile of a served sweep: an ordinary profile (BatchPoints the planner reads), its provenance
    saying how it was served."""
    by_b = {str(c.batch): c for c in cells}
    return Profile(
        model=model,
        hardware=hardware,
        dtype="fp32",
        resources=f"cpu={threads:g}",
        task="pyfunc",  # what MLServer's MLflow runtime runs
        points=tuple(c.point() for c in sorted(cells, key=lambda c: c.batch)),
        provenance={
            "source": "ipa profile --served",
            "method": SERVED,
            "model_ref": model_ref,
            "environment": dict(environment),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "input": input_desc,
            "how": "MLServer with the MLflow runtime pinned to the shape's cores; per batch size b, "
            "MLSERVER_MODEL_MAX_BATCH_SIZE=b and a closed loop of b concurrent one-row V2 REST requests "
            "(keep-alive), so its adaptive batching forms batches of b; latency per request at the client, "
            "throughput = requests per second of the timed rounds",
            "server": {
                "mlserver": environment.get("mlserver"),
                "batch_time_s": batch_time_s,
                "cores": list(server_cores),
                "client_cores": list(client_cores),
                "ready_s": {b: round(c.ready_s, 2) for b, c in by_b.items()},
                "mean_ms": {b: _rounded(c.server.mean_ms) for b, c in by_b.items()},
                "mean_batch": {b: _rounded(c.server.mean_batch) for b, c in by_b.items()},
            },
            "iters": {b: c.rounds.rounds for b, c in by_b.items()},
            "warmup_calls": {b: c.rounds.warmup for b, c in by_b.items()},
        },
    )


def _rounded(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


# ---- served versus in-process ------------------------------------------------------------------------
def served_vs_inprocess(served: Profile, inprocess: Profile) -> list[dict[str, Any]]:
    """Per batch size both measured: served and in-process p50, p99 and throughput, and their ratios
    (served / in-process: above 1, serving costs that much more latency, or gives that much more
    throughput)."""
    rows = []
    for b in served.measured_batches:
        if b not in inprocess.measured_batches:
            continue
        s50, i50 = served.latency_ms(b, "p50"), inprocess.latency_ms(b, "p50")
        s99, i99 = served.latency_ms(b, "p99"), inprocess.latency_ms(b, "p99")
        srps, irps = served.throughput_rps(b), inprocess.throughput_rps(b)
        rows.append(
            {
                "batch": b,
                "served_p50_ms": round(s50, 3),
                "in_process_p50_ms": round(i50, 3),
                "p50_ratio": round(s50 / i50, 3),
                "served_p99_ms": round(s99, 3),
                "in_process_p99_ms": round(i99, 3),
                "p99_ratio": round(s99 / i99, 3),
                "served_rps": round(srps, 2),
                "in_process_rps": round(irps, 2),
                "throughput_ratio": round(srps / irps, 3),
            }
        )
    return rows


def compare_served(served: ProfileSet, inprocess: ProfileSet) -> dict[str, Any]:
    """`served_vs_inprocess` for every served profile with an in-process one of the same model, dtype and
    resources (the hardware name is not matched, as `ipa profiles compare` does not). A served profile
    among the in-process ones, or the other way round, is refused: the ratios would mean nothing."""
    wrong = [f"{p.id} (in the served files)" for p in served if profile_method(p) != SERVED] + [
        f"{p.id} (in the reference)" for p in inprocess if profile_method(p) != IN_PROCESS
    ]
    if wrong:
        raise ProfileError(
            f"--served compares served profiles (`ipa profile --served --out`) with in-process ones "
            f"(--reference); these are the other kind: {', '.join(wrong)}"
        )
    ref_by = {(p.model, p.dtype, p.resources): p for p in inprocess}
    rows: list[dict[str, Any]] = []
    for p in served:
        ref = ref_by.get((p.model, p.dtype, p.resources))
        if ref is not None:
            for row in served_vs_inprocess(p, ref):
                rows.append({"model": p.model, "dtype": p.dtype, "resources": p.resources, **row})

    def median(key: str) -> float | None:
        return round(statistics.median(r[key] for r in rows), 3) if rows else None

    return {
        "rows": rows,
        "matched_cells": len(rows),
        "median_p50_ratio": median("p50_ratio"),
        "median_p99_ratio": median("p99_ratio"),
        "median_throughput_ratio": median("throughput_ratio"),
    }


def summarise(result, cells: Sequence[ServedCell]) -> dict[str, Any]:
    """`ipa profile --served --json`: the in-process summary's fields (cells with the served throughput)
    and, per batch size, what the server says: its mean time per request, the mean batch it formed, its
    start-up; `warnings` when batches fell short."""
    from .sweep import summarise as sweep_summary

    summary = sweep_summary(result)
    by_b = {c.batch: c for c in cells}
    for cell in summary["cells"]:
        c = by_b[cell["batch"]]
        cell["throughput_rps"] = round(c.throughput_rps, 2)
        cell["requests"] = len(c.rounds.latencies_ms)  # timed, at the client
        cell["server_requests"] = c.server.requests  # the same ones, as the server counted them
        cell["server_mean_ms"] = _rounded(c.server.mean_ms)
        cell["mean_batch_served"] = _rounded(c.server.mean_batch)
        cell["ready_s"] = round(c.ready_s, 2)
    summary["method"] = SERVED
    server = result.profile.provenance["server"]
    summary["server"] = {k: server[k] for k in ("mlserver", "batch_time_s", "cores", "client_cores")}
    summary["warnings"] = [w for w in (c.warning() for c in cells) if w]
    return summary
