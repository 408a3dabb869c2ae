"""The router: each request through the pipeline's stages in order, over the V2 protocol, to the ready
replicas the local cluster runs.

Each stage gets one fixed-size input built once per (stage, variant) from the model's own metadata
(`v2.model_input`, one row): it stands in for what a real pipeline passes on (the crop a detector found,
the transcript a recogniser wrote), so a stage's work does not depend on the previous stage's answer.
Per stage the request goes to the ready replica with the fewest requests outstanding from this router
(round robin among equals, or plain round robin), and a replica gets at most its batch size
(MLSERVER_MODEL_MAX_BATCH_SIZE) at a time: the rest wait here, in one queue per stage, as they wait in the
simulator's (MLServer would queue them without bound, and a backlog would make every later request late
where the simulator drops). A request that finds no free replica until `drop_after_s` after its arrival
(the simulator's drop rule) is dropped. A refused or
failed HTTP exchange makes it failed. `send` never raises for either: every request gets a result.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from . import v2


class Replica(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def variant(self) -> str: ...

    @property
    def model(self) -> str: ...


class Replicas(Protocol):
    """What the router needs of a cluster (`cluster.local_backend.LocalCluster` is one)."""

    version: int  # changes whenever the set of ready replicas does

    def replicas(self, stage: str, pipeline: str | None = None) -> Sequence[Replica]: ...

    def acquire(self, url: str) -> bool: ...

    def release(self, url: str) -> None: ...


@dataclass(frozen=True)
class RequestResult:
    request_id: Any
    arrived: float  # on the router's clock (time.monotonic)
    done: float
    latency_s: float  # done - arrived
    ok: bool
    dropped: bool  # waited past drop_after_s for a stage with no ready replica
    error: str  # why it failed or was dropped ('' when ok)
    stage_latency_s: tuple[float, ...]  # per stage reached: from handing it to the stage to its answer
    stage: str = ""  # the stage it failed or was dropped at


ROUND_ROBIN = "round-robin"
LEAST_OUTSTANDING = "least-outstanding"


class Router:
    """`Router(cluster, spec)` (or a list of stage names) routes `await router.send(i)`; use it as an
    async context manager, or `await router.aclose()`. `drop_after_s` defaults to twice the spec's SLA,
    as in the simulator."""

    def __init__(
        self,
        cluster: Replicas,
        stages: Any,  # a PipelineSpec, or the stage names in order
        *,
        pipeline: str | None = None,
        drop_after_s: float | None = None,
        timeout_s: float = 30.0,
        policy: str = LEAST_OUTSTANDING,
        wait_poll_s: float = 0.05,
        max_connections: int = 256,
        clock: Callable[[], float] = time.monotonic,
        inputs: Callable[[str, str], v2.ModelInput] = v2.model_input,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        names = getattr(stages, "stage_names", None)
        if names is not None:  # a PipelineSpec
            pipeline = pipeline or stages.name
            drop_after_s = drop_after_s if drop_after_s is not None else 2 * stages.sla_s
        elif isinstance(stages, str) or not isinstance(stages, Sequence):
            raise TypeError(f"Router needs a PipelineSpec or a list of stage names, not {stages!r}")
        self.stages = [str(s) for s in (names if names is not None else stages)]
        if not self.stages:
            raise ValueError("Router needs at least one stage")
        if policy not in (ROUND_ROBIN, LEAST_OUTSTANDING):
            raise ValueError(f"routing policy {policy!r}: use '{LEAST_OUTSTANDING}' or '{ROUND_ROBIN}'")
        self.cluster, self.pipeline, self.policy = cluster, pipeline, policy
        self.drop_after_s = 10.0 if drop_after_s is None else drop_after_s
        self.timeout_s, self.wait_poll_s, self.clock = timeout_s, wait_poll_s, clock
        self._inputs = inputs
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,  # loopback replicas: never through a proxy the environment names
            transport=transport,
        )
        self._seen = -1  # the cluster's version the cache below was read at
        self._ready: dict[str, list[Replica]] = {}
        self.outstanding: dict[str, int] = {}  # per replica URL: sent by this router, not yet answered
        self._turn = itertools.count()
        self._bodies: dict[tuple[str, str], bytes] = {}
        self._building: dict[tuple[str, str], asyncio.Lock] = {}
        self._freed: dict[str, asyncio.Condition] = {}  # per stage: a replica has room again

    # ---- replicas ---------------------------------------------------------------------------------------
    def _candidates(self, stage: str) -> list[Replica]:
        version = self.cluster.version
        if version != self._seen:  # re-read only when the cluster's ready set changed
            self._seen = version
            self._ready = {s: list(self.cluster.replicas(s, self.pipeline)) for s in self.stages}
        reps = self._ready.get(stage, [])
        if not reps:
            return []
        k = next(self._turn) % len(reps)
        rotated = reps[k:] + reps[:k]
        if self.policy == LEAST_OUTSTANDING:  # stable: equals stay in round-robin order
            rotated.sort(key=lambda r: self.outstanding.get(r.url, 0))
        return rotated

    async def _pick(self, stage: str, deadline: float) -> Replica | None:
        """A ready replica with room (fewer outstanding than its batch size), waiting for one until
        `deadline`; woken at once when a request of this stage is answered."""
        freed = self._freed.setdefault(stage, asyncio.Condition())
        async with freed:
            while True:
                for rep in self._candidates(stage):
                    if self.outstanding.get(rep.url, 0) >= getattr(rep, "max_batch", math.inf):
                        continue
                    if self.cluster.acquire(rep.url):
                        self.outstanding[rep.url] = self.outstanding.get(rep.url, 0) + 1
                        return rep
                    self._seen = -1  # it left since the cache was read
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return None
                try:  # a slot freed (notified), or a replica became ready (seen on the next look)
                    await asyncio.wait_for(freed.wait(), timeout=min(remaining, self.wait_poll_s))
                except TimeoutError:
                    pass

    async def _wake(self, stage: str) -> None:
        freed = self._freed.get(stage)
        if freed is not None:
            async with freed:
                freed.notify()

    def _release(self, rep: Replica) -> None:
        self.outstanding[rep.url] -= 1
        if not self.outstanding[rep.url]:
            del self.outstanding[rep.url]
        self.cluster.release(rep.url)

    async def _body(self, stage: str, rep: Replica) -> bytes:
        key = (stage, rep.variant)
        body = self._bodies.get(key)
        if body is not None:
            return body
        lock = self._building.setdefault(key, asyncio.Lock())
        async with lock:  # one metadata read per (stage, variant), however many requests wait for it
            if key not in self._bodies:
                inp = await asyncio.to_thread(self._inputs, rep.url, rep.model)
                self._bodies[key] = await asyncio.to_thread(v2.request_body, inp, inp.sample(1))
            return self._bodies[key]

    # ---- requests -----------------------------------------------------------------------------------------
    async def send(self, request_id: Any, arrived: float | None = None) -> RequestResult:
        """One request through every stage; `arrived` (on `clock`) defaults to now."""
        arrived = self.clock() if arrived is None else arrived
        deadline = arrived + self.drop_after_s
        latencies: list[float] = []

        def result(ok: bool, error: str = "", stage: str = "", dropped: bool = False) -> RequestResult:
            done = self.clock()
            return RequestResult(
                request_id, arrived, done, done - arrived, ok, dropped, error, tuple(latencies), stage
            )

        for stage in self.stages:
            t0 = self.clock()
            rep = await self._pick(stage, deadline)
            if rep is None:
                return result(
                    False,
                    f"dropped: stage '{stage}' had no ready replica "
                    f"within {self.drop_after_s:g} s of arrival",
                    stage,
                    dropped=True,
                )
            try:
                body = await self._body(stage, rep)
                r = await self._client.post(
                    f"{rep.url}/v2/models/{rep.model}/infer",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                error = "" if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:300]}"
            except Exception as exc:  # HTTP, the metadata read, a body: a failed request, never a crash
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self._release(rep)
                await self._wake(stage)
            if error:
                return result(False, f"stage '{stage}' at {rep.url}: {error}", stage)
            latencies.append(self.clock() - t0)
        return result(True)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
